"""A btrfs job's folders on the backup disk, opened beneath the mount point.

The job folder and each per-source folder are held open as
:class:`~coldvault.system.beneath.SafeDir`; a symlink or file on the way is refused
(:class:`~coldvault.system.beneath.UnexpectedEntry`), never followed.
"""

from __future__ import annotations

from coldvault.jobs.jobdir import open_job_folder, split
from coldvault.system.beneath import SafeDir

__all__ = ["open_job_folder", "open_source_folder", "split"]


def open_source_folder(job_folder: SafeDir, name: str, *, create: bool) -> SafeDir | None:
    """A source's folder in the job folder; None when missing and not ``create``."""
    if not create and job_folder.lstat(name) is None:
        return None
    return job_folder.sub(name, create=create)
