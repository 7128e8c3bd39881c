"""Choosing the snapshot folder to mount, beneath the backup root, without following symlinks."""

from __future__ import annotations

from pathlib import Path

from coldvault.config.model import ImageJob
from coldvault.errors import JobError
from coldvault.jobs.image.snapshots import SNAPSHOT_RE, snapshot_time
from coldvault.system.beneath import SafeDir, open_beneath

LATEST = "latest"


def open_snapshot(root: Path, job: ImageJob, name: str) -> tuple[SafeDir, str]:
    """Open the chosen snapshot folder of ``job``; return it and its name.

    With ``snapshots: 0`` the parts live in the job folder itself (only ``latest``).
    """
    job_dir = open_beneath(root, job.target)
    try:
        if job.snapshots == 0:
            if name != LATEST:
                raise JobError(
                    f"job {job.name} keeps no snapshots (snapshots: 0): only `latest` exists"
                )
            return job_dir.sub("."), "(job folder)"
        if name == LATEST:
            name = _newest(job_dir)
        elif not SNAPSHOT_RE.match(name):
            raise JobError(
                f"{name!r} is not a snapshot name (snapshot-YYYY-MM-DD-HHMMSS)",
                hint="see `coldvault list JOB`",
            )
        if job_dir.kind(name) is None:
            raise JobError(f"no snapshot {name} in {job_dir.path}", hint="see `coldvault list JOB`")
        return job_dir.sub(name), name
    finally:
        job_dir.close()


def _newest(job_dir: SafeDir) -> str:
    dated = [
        (t, n)
        for n, kind in job_dir.entries()
        if kind == "folder" and (t := snapshot_time(n)) is not None
    ]
    if not dated:
        raise JobError(
            f"no completed snapshot in {job_dir.path}",
            hint="run a backup first (`coldvault run JOB`)",
        )
    return max(dated)[1]
