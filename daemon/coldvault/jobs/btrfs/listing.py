"""``coldvault list`` for btrfs jobs: both sides' snapshots, their pairing and sizes."""

from __future__ import annotations

import os
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import ColdvaultError
from coldvault.jobs.btrfs import snapshots, subvol
from coldvault.jobs.btrfs.sources import Source, job_sources
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import human_bytes

HEADER = f"  {'NAME':<34} {'SOURCE':<7} {'BACKUP':<11} {'PAIRED':<7} {'SIZE (total/exclusive)':<24}"


def listing(job: BtrfsJob, job_dir: Path) -> str:
    """A table per source: snapshot name, on source, on backup, paired, size, links."""
    out = []
    for src in job_sources(job):
        out += _source_table(src, src.backup_dir(job_dir))
    return "\n".join(out)


def _scan(folder: Path, name: str) -> tuple[dict[str, Subvolume], str | None]:
    try:
        return {s.path.name: s for s in snapshots.scan(folder, name)}, None
    except (ColdvaultError, OSError) as exc:
        return {}, str(exc)


def _links(folder: Path) -> dict[str, list[str]]:
    targets: dict[str, list[str]] = {}
    for link in snapshots.LINKS:
        if (folder / link).is_symlink():
            targets.setdefault(os.readlink(folder / link), []).append(link)
    return targets


def _source_table(src: Source, backup_dir: Path) -> list[str]:
    local, local_err = _scan(src.snapshot_dir, src.name)
    remote, remote_err = _scan(backup_dir, src.name)
    lines = [f"{src.name}: source {src.path}", f"  snapshots: {src.snapshot_dir}"]
    if local_err:
        lines.append(f"  (cannot read source snapshots: {local_err})")
    lines.append(f"  backups:   {backup_dir}")
    if remote_err:
        lines.append(f"  (cannot read backups: {remote_err})")
    sizes = subvol.du(s.path for s in remote.values())
    links = {**_links(src.snapshot_dir), **_links(backup_dir)}
    names = sorted(set(local) | set(remote), key=_order, reverse=True)
    if not names:
        lines.append("  no snapshots yet")
        return lines
    lines.append(HEADER)
    for name in names:
        here, there = local.get(name), remote.get(name)
        backup = "-" if there is None else ("complete" if there.complete else "INCOMPLETE")
        paired = "yes" if here and there and there.received_uuid == here.uuid else "no"
        size = sizes.get(there.path) if there else None
        size_text = f"{human_bytes(size[0])} / {human_bytes(size[1])}" if size else "-"
        marks = ", ".join(links.get(name, []))
        lines.append(
            f"  {name:<34} {'yes' if here else '-':<7} {backup:<11} {paired:<7} "
            f"{size_text:<24} {marks}".rstrip()
        )
    return lines


def _order(name: str) -> tuple[str, int]:
    parsed = snapshots.parse_name(name)
    return (parsed.when.isoformat(), parsed.seq) if parsed else (name, 0)
