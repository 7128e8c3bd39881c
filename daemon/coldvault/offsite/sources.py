"""What a job contributes to an offsite copy: its newest complete backup, one folder per source.

An image job gives its newest complete snapshot folder (parts and manifest); a
btrfs job gives the newest received read-only snapshot of each source, or with
``offsite_from: source`` the newest read-only snapshot on the source side (a
laptop away from its disk still gets offsite copies). Folders are held open and
handed to restic as ``/proc/PID/fd/N`` paths: a folder on the disk swapped for a
symlink meanwhile is never followed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from coldvault.config.model import BtrfsJob, Config, ImageJob, Job
from coldvault.errors import DiskError, JobError
from coldvault.jobs.btrfs import snapshots as btrfs_snapshots
from coldvault.jobs.btrfs.restore import open_backup_folders, select
from coldvault.jobs.btrfs.sources import job_sources
from coldvault.jobs.image import snapshots as image_snapshots
from coldvault.jobs.jobdir import open_job_folder
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.offsite")

CURRENT = "current"  # the snapshot name of an image job kept with `snapshots: 0`


@dataclass(frozen=True)
class Upload:
    """One folder to copy: the job, its source, the snapshot's name and a path to it."""

    job: Job
    source: str
    snapshot: str
    folder: Path
    needs_disk: bool

    @property
    def label(self) -> str:
        """``job`` or ``job/source`` for messages."""
        name = self.job.name
        return name if isinstance(self.job, ImageJob) else f"{name}/{self.source}"


def needs_disk(job: Job) -> bool:
    """Whether the job's offsite copy is read from the backup disk."""
    return not (isinstance(job, BtrfsJob) and job.offsite_from == "source")


@contextlib.contextmanager
def newest(config: Config, job: Job) -> Iterator[list[Upload]]:
    """The job's newest complete backup, one Upload per source (empty: none yet)."""
    with contextlib.ExitStack() as stack:
        if isinstance(job, ImageJob):
            yield _image(config, job, stack)
        elif job.offsite_from == "source":
            yield _btrfs_source_side(job, stack)
        else:
            yield _btrfs_received(config, job, stack)


def _image(config: Config, job: ImageJob, stack: contextlib.ExitStack) -> list[Upload]:
    try:
        top = stack.enter_context(open_job_folder(config.job_dir(job), job.target, create=False))
    except JobError:
        return []
    if job.snapshots == 0:
        return [Upload(job, str(job.source), CURRENT, top.proc_path(), True)]
    name = image_snapshots.newest(top)
    if name is None:
        return []
    folder = stack.enter_context(top.sub(name))
    return [Upload(job, str(job.source), name, folder.proc_path(), True)]


def _btrfs_received(config: Config, job: BtrfsJob, stack: contextlib.ExitStack) -> list[Upload]:
    try:
        chosen = select(job, open_backup_folders(job, config.job_dir(job), stack), "latest")
    except JobError:
        return []
    return [
        Upload(job, name, copy.path.name, btrfs_snapshots.as_path(folder, copy), True)
        for name, folder, copy in chosen
    ]


def _btrfs_source_side(job: BtrfsJob, stack: contextlib.ExitStack) -> list[Upload]:
    found = []
    for src in job_sources(job):
        try:
            folder = stack.enter_context(SafeDir.open_root(src.snapshot_dir))
        except (DiskError, OSError):
            continue  # no snapshot made yet on this source
        snaps = [s for s in btrfs_snapshots.scan(folder, src.name).named(src.name) if s.readonly]
        if snaps:
            snap = snaps[-1]
            found.append(
                Upload(job, src.name, snap.path.name, btrfs_snapshots.as_path(folder, snap), False)
            )
    return found
