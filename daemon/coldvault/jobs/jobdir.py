"""A job's folder on the backup disk, opened beneath the mount point (never through a symlink).

Shared by both job types.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from coldvault.errors import JobError
from coldvault.system.beneath import SafeDir, open_beneath


def split(job_dir: Path, target: str) -> tuple[Path, str]:
    """(trusted root, relative path below it) for ``job_dir``.

    ``job_dir`` is ``mount point / target``: the mount point comes from the host's
    configuration, every component of ``target`` lies on the disk and is untrusted. A
    ``job_dir`` that does not end in ``target`` (the demo, tests) trusts all but its last
    component.
    """
    rel = PurePosixPath(target).parts
    if rel and len(job_dir.parts) > len(rel) and job_dir.parts[-len(rel) :] == rel:
        return Path(*job_dir.parts[: -len(rel)]), str(PurePosixPath(*rel))
    return job_dir.parent, job_dir.name


def open_job_folder(job_dir: Path, target: str, *, create: bool) -> SafeDir:
    """The job's folder, held open; a symlink or file on the way raises UnexpectedEntry."""
    root, rel = split(job_dir, target)
    try:
        return open_beneath(root, rel, create=create)
    except ValueError as exc:
        raise JobError(f"job folder {job_dir}: {exc}") from None
    except FileNotFoundError:
        raise JobError(
            f"no backups in {job_dir}", hint="run a backup first (`coldvault run JOB`)"
        ) from None
