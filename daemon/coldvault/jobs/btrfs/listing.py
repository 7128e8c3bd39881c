"""``coldvault list`` for btrfs jobs: both sides' snapshots, their pairing and sizes.

With several disks, each snapshot also says which disks hold it (this one as read,
the others as the host remembers their newest) and why each side keeps it: the
retention rule's reasons, or being some disk's next incremental parent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import ColdvaultError, JobError
from coldvault.jobs import retention
from coldvault.jobs.base import RunContext
from coldvault.jobs.btrfs import diskdir, diskstate, prune, snapshots, subvol
from coldvault.jobs.btrfs.sources import Source, job_sources
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import human_bytes
from coldvault.system.beneath import SafeDir

HEADER = (
    f"  {'NAME':<34} {'SOURCE':<7} {'BACKUP':<11} {'PAIRED':<7} {'SIZE (total/exclusive)':<24} "
    f"{'DISKS':<18} WHY KEPT / LINKS"
)


def listing(job: BtrfsJob, job_dir: Path, context: RunContext) -> str:
    """A table per source: name, on source, on backup, paired, size, disks, why kept, links."""
    out = []
    with contextlib.ExitStack() as stack:
        try:
            job_folder: SafeDir | None = stack.enter_context(
                diskdir.open_job_folder(job_dir, job.target, create=False)
            )
        except JobError:
            job_folder = None  # no backup yet: the source side is still worth listing
        for src in job_sources(job):
            out += _source_table(job, src, job_folder, job_dir, context)
    return "\n".join(out)


Sizes = dict[str, tuple[int, int]]  # subvolume uuid -> (total, exclusive) bytes
Found = tuple[dict[str, Subvolume], dict[str, list[str]], list[str], Sizes]


def _read_side(open_folder: Callable[[], SafeDir | None], source: str) -> Found:
    """(name -> subvolume, target -> link names, problems, sizes) of one side's folder."""
    try:
        folder = open_folder()
        if folder is None:
            return {}, {}, [], {}
        with folder:
            found = snapshots.scan(folder, source)
            links: dict[str, list[str]] = {}
            for link in snapshots.LINKS:
                target = folder.readlink(link)
                if target is not None:
                    links.setdefault(target, []).append(link)
            sizes = subvol.du(snapshots.as_path(folder, s) for s in found.complete())
            by_uuid = {
                s.uuid: sizes[p]
                for s in found.complete()
                if (p := snapshots.as_path(folder, s)) in sizes
            }
            named = {s.path.name: s for s in found.snapshots}
            damaged = diskstate.load(folder).damaged if folder.lstat(diskstate.FILE) else {}
            problems = list(found.unexpected)
            problems += [
                f"{d.name}: marked damaged by verify on {d.found}" for d in damaged.values()
            ]
            return named, links, problems, by_uuid
    except (ColdvaultError, OSError) as exc:
        return {}, {}, [str(exc)], {}


def _source_table(
    job: BtrfsJob, src: Source, job_folder: SafeDir | None, job_dir: Path, context: RunContext
) -> list[str]:
    def local_folder() -> SafeDir | None:
        return SafeDir.open_root(src.snapshot_dir) if src.snapshot_dir.is_dir() else None

    def backup_folder() -> SafeDir | None:
        if job_folder is None:
            return None
        return diskdir.open_source_folder(job_folder, src.name, create=False)

    local, local_links, local_err, _ = _read_side(local_folder, src.name)
    remote, remote_links, remote_err, sizes = _read_side(backup_folder, src.name)
    lines = [f"{src.name}: source {src.path}", f"  snapshots: {src.snapshot_dir}"]
    lines += [f"  (source side: {e})" for e in local_err]
    lines.append(f"  backups:   {src.backup_dir(job_dir)}")
    lines += [f"  (backup side: {e})" for e in remote_err]
    links = {**local_links, **remote_links}
    names = sorted(set(local) | set(remote), key=_order, reverse=True)
    if not names:
        lines.append("  no snapshots yet")
        return lines
    paired = {n for n in names if _paired(local.get(n), remote.get(n))}
    elsewhere = context.held_by(src.name)
    holders: dict[str, list[str]] = {n: [context.disk] for n, s in remote.items() if s.complete}
    for snap, others in elsewhere.items():
        holders.setdefault(snap, []).extend(f"{d} (newest)" for d in others)
    why = _why_kept(job, src.name, (local, remote), paired, elsewhere, context)
    lines.append(HEADER)
    for name in names:
        here, there = local.get(name), remote.get(name)
        backup = "-" if there is None else ("complete" if there.complete else "INCOMPLETE")
        size = sizes.get(there.uuid) if there else None
        size_text = f"{human_bytes(size[0])} / {human_bytes(size[1])}" if size else "-"
        disks = ", ".join(holders.get(name, [])) or "-"
        notes = "; ".join([*why.get(name, []), *(f"link {k}" for k in links.get(name, []))])
        lines.append(
            f"  {name:<34} {'yes' if here else '-':<7} {backup:<11} "
            f"{'yes' if name in paired else 'no':<7} {size_text:<24} {disks:<18} {notes}".rstrip()
        )
    return lines


def _paired(here: Subvolume | None, there: Subvolume | None) -> bool:
    return bool(here and there and there.received_uuid == here.uuid)


def _why_kept(
    job: BtrfsJob,
    source: str,
    sides: tuple[dict[str, Subvolume], dict[str, Subvolume]],
    paired: set[str],
    elsewhere: dict[str, list[str]],
    context: RunContext,
) -> dict[str, list[str]]:
    """Per name, why the source side and the disk side keep it (as the next run would)."""
    local, remote = sides
    parent = max(paired, key=_order) if paired else None
    needed_by: dict[str, list[str]] = {parent: [context.disk]} if parent else {}
    for name, disks in elsewhere.items():
        needed_by.setdefault(name, []).extend(disks)
    src_protect = {n: f"next parent for {', '.join(d)}" for n, d in needed_by.items()}
    disk_protect = {parent: "next parent"} if parent else {}
    out: dict[str, list[str]] = {}
    for side, found, rule, protect in (
        ("source", local, job.source_retention, src_protect),
        ("disk", remote, job.target_retention, disk_protect),
    ):
        kept = retention.reasons(prune.dated(found, source), rule, protect=protect)
        for name in found:
            if name not in kept:
                text = "renamed by hand, never deleted"
            elif side == "disk" and not context.disk_retention:
                text = "retention paused (disk went back in time)"
            else:
                text = ", ".join(kept[name]) or "deleted by the next run"
            out.setdefault(name, []).append(f"{side}: {text}")
    return out


def _order(name: str) -> tuple[str, int]:
    parsed = snapshots.parse_name(name)
    return (parsed.when.isoformat(), parsed.seq) if parsed else (name, 0)
