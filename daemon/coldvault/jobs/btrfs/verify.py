"""``coldvault verify`` for btrfs jobs.

Each chosen received snapshot must be read-only with ``received_uuid`` set,
and every regular file in it is read to the end, bypassing cached pages: Btrfs
checks each data block's checksum on read, so a read error (EIO) names a
damaged file. This is a per-snapshot check without ``btrfs scrub`` (which would
scan the whole disk, and needs no job).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import ColdvaultError, DiskError, JobError
from coldvault.jobs.base import VerifyReport
from coldvault.jobs.btrfs import diskdir, diskstate, snapshots, subvol
from coldvault.jobs.btrfs.restore import Chosen, open_backup_folders, select
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import ProgressCallback, ProgressMeter
from coldvault.system.beneath import SafeDir
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.jobs.btrfs")

_CHUNK = 1 << 20


def _chosen(
    job: BtrfsJob, folders: dict[str, SafeDir], snapshot: str | None, all_snapshots: bool
) -> tuple[list[Chosen], list[str]]:
    """The copies to check, and entries named like snapshots that are not (under --all)."""
    if not all_snapshots:
        return select(job, folders, snapshot or "latest"), []
    chosen: list[Chosen] = []
    unexpected: list[str] = []
    for source, folder in folders.items():
        found = snapshots.scan(folder, source)
        chosen += [(source, folder, s) for s in found.snapshots]
        unexpected += found.unexpected
    if not chosen:
        raise JobError(f"job {job.name} has no backup")
    return chosen, unexpected


def verify(
    job: BtrfsJob,
    job_dir: Path,
    snapshot: str | None,
    all_snapshots: bool,
    progress: ProgressCallback,
    cancel: CancelToken,
) -> VerifyReport:
    """Check the chosen snapshots (default: the latest of each source).

    What is found is recorded on the disk (:mod:`coldvault.jobs.btrfs.diskstate`):
    a damaged copy is marked and no longer used as a parent; a copy that reads back
    well is unmarked.
    """
    with contextlib.ExitStack() as stack:
        folders = open_backup_folders(job, job_dir, stack)
        chosen, problems = _chosen(job, folders, snapshot, all_snapshots)
        meter = ProgressMeter(job.name, "verifying", progress)
        checked = 0
        results: dict[str, tuple[dict[str, str], dict[str, tuple[str, tuple[str, ...]]]]] = {}
        for source, folder, snap in chosen:
            found = _state_problems(snap)
            files, bad = read_all(folder, snap.path.name, meter, cancel)
            found += bad
            checked += files + 1
            problems += found
            good_marks, bad_marks = results.setdefault(source, ({}, {}))
            if found:
                bad_marks[snap.uuid] = (snap.path.name, tuple(found))
            else:
                good_marks[snap.uuid] = snap.path.name
        for source, (good, bad_found) in results.items():
            _mark(folders[source], good, bad_found)
        meter.emit()
    return VerifyReport(
        job.name, tuple(s.path.name for _, _, s in chosen), checked, tuple(problems)
    )


def _mark(
    folder: SafeDir, good: dict[str, str], bad: dict[str, tuple[str, tuple[str, ...]]]
) -> None:
    """Record the findings; a disk that cannot be written (read-only mount) still verifies."""
    state = diskstate.load(folder)
    updated = diskstate.with_verified(state, good, bad)
    if updated.damaged == state.damaged:
        return
    try:
        diskstate.save(folder, updated)
    except (OSError, DiskError) as exc:
        log.warning("cannot record what verify found in %s: %s", folder.child(diskstate.FILE), exc)


def record_damage(job: BtrfsJob, job_dir: Path, copy: str, problems: Sequence[str]) -> None:
    """Mark the copy ``copy`` (``<source>/<name>`` below ``job_dir``) damaged on the disk.

    For the scheduled verification, which finds problems step by step; a copy that is
    gone meanwhile is not marked.
    """
    source, _, name = copy.partition("/")
    try:
        with (
            diskdir.open_job_folder(job_dir, job.target, create=False) as job_folder,
            job_folder.sub(source) as folder,
        ):
            snap = subvol.info_at(folder, name)
            if snap is not None:
                _mark(folder, {}, {snap.uuid: (name, tuple(problems))})
    except (ColdvaultError, OSError, ValueError) as exc:
        log.warning("cannot record what verify found in %s: %s", job_dir / copy, exc)


def _state_problems(info: Subvolume) -> list[str]:
    problems = []
    if not info.readonly:
        problems.append(f"{info.path}: not read-only (was it changed after the backup?)")
    if info.received_uuid is None:
        problems.append(f"{info.path}: no received_uuid (an unfinished receive)")
    return problems


_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_all(
    folder: SafeDir, name: str, meter: ProgressMeter, cancel: CancelToken
) -> tuple[int, list[str]]:
    """Read every regular file in the copy ``name`` of ``folder``; return (files, problems).

    The walk goes by descriptors (``os.fwalk``) and opens each file with
    ``O_NOFOLLOW``: nothing in the copy leads the reads outside it.
    """
    files, problems = 0, []
    root = folder.child(name)
    with folder.sub(name) as top:
        walk = os.fwalk(".", dir_fd=top.fd, onerror=lambda e: problems.append(str(e)))
        for rel, _dirs, names, dir_fd in walk:
            for entry in names:
                cancel.check()
                path = root / rel / entry
                try:
                    fd = os.open(entry, _NOFOLLOW, dir_fd=dir_fd)
                except OSError:
                    continue  # a symlink (ELOOP) or a FIFO without writer: not data
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        continue
                    files += 1
                    _read_through(fd, meter)
                except OSError as exc:
                    problems.append(
                        f"{os.path.normpath(path)}: cannot be read back ({exc.strerror})"
                    )
                finally:
                    os.close(fd)
    return files, problems


def _read_through(fd: int, meter: ProgressMeter) -> None:
    # Drop cached pages first so the blocks (and their checksums) come from the
    # disk, not from memory filled when the backup was written.
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    while chunk := os.read(fd, _CHUNK):
        meter.update(meter.done + len(chunk))


def subvolume_problems(path: Path) -> list[str]:
    """The subvolume-level checks of one received snapshot (for the budgeted verification)."""
    return _state_problems(subvol.show(path))
