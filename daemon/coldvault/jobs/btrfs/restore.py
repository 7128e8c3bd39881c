"""``coldvault restore`` for btrfs jobs: send a received snapshot back.

The restored subvolume is received into the destination folder under its
snapshot name, read-only (as every received subvolume is). It is sent
incrementally when the destination filesystem still holds a subvolume with
the same content as an older backup (the original source snapshot, or an
earlier restore). Nothing existing is ever overwritten.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import JobError
from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.btrfs import diskdir, diskstate, snapshots, subvol, transfer
from coldvault.jobs.btrfs.sources import job_sources
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.system.beneath import SafeDir
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.jobs.btrfs")


def open_backup_folders(
    job: BtrfsJob, job_dir: Path, stack: contextlib.ExitStack
) -> dict[str, SafeDir]:
    """source name -> its folder of received copies on the disk, held open (existing ones).

    Closed with ``stack``. A symlink or file in place of a folder is refused.
    """
    job_folder = stack.enter_context(diskdir.open_job_folder(job_dir, job.target, create=False))
    folders = {}
    for src in job_sources(job):
        folder = diskdir.open_source_folder(job_folder, src.name, create=False)
        if folder is not None:
            folders[src.name] = stack.enter_context(folder)
    return folders


Chosen = tuple[str, SafeDir, Subvolume]


def select(job: BtrfsJob, folders: dict[str, SafeDir], wanted: str) -> list[Chosen]:
    """(source name, folder, copy) for ``latest`` (one per source) or one snapshot name."""
    if wanted == "latest":
        chosen = []
        for name, folder in folders.items():
            copies = snapshots.scan(folder, name).complete()
            if copies:
                chosen.append((name, folder, copies[-1]))
        if not chosen:
            raise JobError(f"job {job.name} has no finished backup")
        return chosen
    for name, folder in folders.items():
        for copy in snapshots.scan(folder, name).complete():
            if copy.path.name == wanted:
                return [(name, folder, copy)]
    raise JobError(
        f"{wanted!r} is not a finished backup of job {job.name}",
        hint=f"see `coldvault list {job.name}`; names look like SOURCE.YYYYmmddTHHMMSSZ",
    )


def latest_paths(job: BtrfsJob, job_dir: Path) -> list[Path]:
    """The newest finished copy of each source, as paths below ``job_dir`` (for messages
    and the scheduled verification's position); found through held folders."""
    with contextlib.ExitStack() as stack:
        return [
            s.path for _, _, s in select(job, open_backup_folders(job, job_dir, stack), "latest")
        ]


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
    with contextlib.ExitStack() as stack:
        folders = open_backup_folders(job, job_dir, stack)
        chosen = select(job, folders, request.snapshot)
        into = stack.enter_context(SafeDir.open_root(dest))
        for _, _, snap in chosen:
            if into.lstat(snap.path.name) is not None:
                raise JobError(
                    f"{dest / snap.path.name} already exists; restore never overwrites",
                    hint="restore into another folder, or move the existing one away first",
                )
        lines = []
        for source, folder, snap in chosen:
            damaged = diskstate.load(folder).damaged
            if snap.uuid in damaged:
                log.warning(
                    "restoring %s although verify marked it damaged: %s",
                    snap.path,
                    "; ".join(damaged[snap.uuid].problems[:3]),
                )
            # A damaged copy is never a base for an incremental restore.
            copies = [c for c in snapshots.scan(folder, source).complete() if c.uuid not in damaged]
            base = restore_parent(copies, snap, dest)
            meter = ProgressMeter(job.name, "restoring", progress)
            meter.update(0, detail=snap.path.name)
            received, sent = transfer.send_receive(
                snap,
                snapshots.as_path(folder, snap),
                into,
                ["-p", snapshots.as_path(folder, base)] if base else [],
                compressed=False,
                meter=meter,
                cancel=cancel,
            )
            how = f"incrementally against {base.path.name}" if base else "in full"
            lines.append(
                f"restored {snap.path.name} to {received.path} ({how}, {human_bytes(sent)})"
            )
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
