"""``coldvault verify`` for btrfs jobs.

Each chosen received snapshot must be read-only with ``received_uuid`` set,
and every regular file in it is read to the end, bypassing cached pages: Btrfs
checks each data block's checksum on read, so a read error (EIO) names a
damaged file. This is a per-snapshot check without ``btrfs scrub`` (which would
scan the whole disk, and needs no job).
"""

from __future__ import annotations

import os
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import JobError
from coldvault.jobs.base import VerifyReport
from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.restore import backup_folders, select
from coldvault.jobs.btrfs.snapshots import names_in
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import ProgressCallback, ProgressMeter
from coldvault.system.cancel import CancelToken

_CHUNK = 1 << 20


def _chosen(job: BtrfsJob, job_dir: Path, snapshot: str | None, all_snapshots: bool) -> list[Path]:
    if not all_snapshots:
        return [s.path for _, s in select(job, job_dir, snapshot or "latest")]
    paths = []
    for source, folder in backup_folders(job, job_dir).items():
        paths += [folder / n.name for n in names_in(folder, source)]
    if not paths:
        raise JobError(f"job {job.name} has no backup in {job_dir}")
    return paths


def verify(
    job: BtrfsJob,
    job_dir: Path,
    snapshot: str | None,
    all_snapshots: bool,
    progress: ProgressCallback,
    cancel: CancelToken,
) -> VerifyReport:
    """Check the chosen snapshots (default: the latest of each source)."""
    paths = _chosen(job, job_dir, snapshot, all_snapshots)
    meter = ProgressMeter(job.name, "verifying", progress)
    problems: list[str] = []
    checked = 0
    for path in paths:
        info = subvol.show(path)
        problems += _state_problems(info)
        files, bad = read_all(path, meter, cancel)
        checked += files + 1
        problems += bad
    meter.emit()
    return VerifyReport(job.name, tuple(p.name for p in paths), checked, tuple(problems))


def _state_problems(info: Subvolume) -> list[str]:
    problems = []
    if not info.readonly:
        problems.append(f"{info.path}: not read-only (was it changed after the backup?)")
    if info.received_uuid is None:
        problems.append(f"{info.path}: no received_uuid (an unfinished receive)")
    return problems


def read_all(root: Path, meter: ProgressMeter, cancel: CancelToken) -> tuple[int, list[str]]:
    """Read every regular file under ``root``; return (files read, problems)."""
    files, problems = 0, []
    for folder, _dirs, names in os.walk(root, onerror=lambda e: problems.append(str(e))):
        for name in names:
            cancel.check()
            path = os.path.join(folder, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            try:
                with open(path, "rb", buffering=0) as f:
                    # Drop cached pages first so the blocks (and their checksums) come
                    # from the disk, not from memory filled when the backup was written.
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    while chunk := f.read(_CHUNK):
                        meter.update(meter.done + len(chunk))
            except OSError as exc:
                problems.append(f"{path}: cannot be read back ({exc.strerror})")
            files += 1
    return files, problems


def subvolume_problems(path: Path) -> list[str]:
    """The subvolume-level checks of one received snapshot (for the budgeted verification)."""
    return _state_problems(subvol.show(path))
