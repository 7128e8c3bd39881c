"""``coldvault restore`` for btrfs jobs: send a received snapshot back.

The restored subvolume is received into the destination folder under its
snapshot name, read-only (as every received subvolume is). It is sent
incrementally when the destination filesystem still holds a subvolume with
the same content as an older backup (the original source snapshot, or an
earlier restore). Nothing existing is ever overwritten.
"""

from __future__ import annotations

from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import JobError
from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.btrfs import snapshots, subvol, transfer
from coldvault.jobs.btrfs.sources import job_sources
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.system.cancel import CancelToken


def backup_folders(job: BtrfsJob, job_dir: Path) -> dict[str, Path]:
    """source name -> folder of its received copies on the backup disk."""
    return {s.name: s.backup_dir(job_dir) for s in job_sources(job)}


def complete_copies(folder: Path, source: str) -> list[Subvolume]:
    """Finished received copies in ``folder``, oldest first."""
    return [s for s in snapshots.scan(folder, source) if s.complete]


def select(job: BtrfsJob, job_dir: Path, wanted: str) -> list[tuple[str, Subvolume]]:
    """(source name, copy) pairs for ``latest`` (one per source) or one snapshot name."""
    folders = backup_folders(job, job_dir)
    if wanted == "latest":
        chosen = []
        for name, folder in folders.items():
            copies = complete_copies(folder, name)
            if copies:
                chosen.append((name, copies[-1]))
        if not chosen:
            raise JobError(f"job {job.name} has no finished backup in {job_dir}")
        return chosen
    parsed = snapshots.parse_name(wanted)
    if parsed is None or parsed.source not in folders:
        raise JobError(
            f"{wanted!r} is not a snapshot name of job {job.name}",
            hint=f"see `coldvault list {job.name}`; names look like SOURCE.YYYYmmddTHHMMSSZ",
        )
    for copy in complete_copies(folders[parsed.source], parsed.source):
        if copy.path.name == wanted:
            return [(parsed.source, copy)]
    raise JobError(
        f"no finished backup {wanted} in {folders[parsed.source]}",
        hint=f"see `coldvault list {job.name}`",
    )


def restore_parent(copies: list[Subvolume], snap: Subvolume, dest: Path) -> Subvolume | None:
    """The newest other backup whose content the destination filesystem still holds."""
    mount = subvol.containing_mount(dest)
    root = mount.root.strip("/")
    present: set[str] = set()
    for entry in subvol.list_all(dest):
        # btrfs receive opens the parent through this mount: it must lie below its root.
        if root and not (entry.path == root or entry.path.startswith(root + "/")):
            continue
        present.update(u for u in (entry.uuid, entry.received_uuid) if u)
    for copy in reversed(copies):
        if copy.path != snap.path and copy.received_uuid in present:
            return copy
    return None


def restore(
    job: BtrfsJob,
    job_dir: Path,
    request: RestoreRequest,
    progress: ProgressCallback,
    cancel: CancelToken,
) -> str:
    """Restore ``request.snapshot`` into the folder ``request.dest``; return next steps."""
    dest = request.dest.absolute()
    if not dest.is_dir():
        raise JobError(
            f"restore destination {dest} is not a folder",
            hint="give an existing folder on a Btrfs filesystem; the snapshot is created inside",
        )
    subvol.require_btrfs(dest, "restore destination")
    chosen = select(job, job_dir, request.snapshot)
    for _, snap in chosen:
        if (dest / snap.path.name).exists():
            raise JobError(
                f"{dest / snap.path.name} already exists; restore never overwrites",
                hint="restore into another folder, or move the existing one away first",
            )
    lines = []
    for source, snap in chosen:
        copies = complete_copies(snap.path.parent, source)
        base = restore_parent(copies, snap, dest)
        meter = ProgressMeter(job.name, "restoring", progress)
        meter.update(0, detail=snap.path.name)
        received, sent = transfer.send_receive(
            snap,
            dest,
            ["-p", base.path] if base else [],
            compressed=False,
            meter=meter,
            cancel=cancel,
        )
        how = f"incrementally against {base.path.name}" if base else "in full"
        lines.append(f"restored {snap.path.name} to {received.path} ({how}, {human_bytes(sent)})")
        lines += _next_steps(received.path, source)
    return "\n".join(lines)


def _next_steps(restored: Path, source: str) -> list[str]:
    writable = restored.with_name(f"{source}.restored")
    return [
        "  it is read-only (as every received subvolume). To use it:",
        f"    btrfs subvolume snapshot {restored} {writable}   # a writable copy",
        f"    mv <current {source}> <{source}>.old && mv {writable} <current {source}>",
        f"  then delete the read-only one: btrfs subvolume delete {restored}",
    ]
