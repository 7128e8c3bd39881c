"""``type: image`` jobs: the :class:`~coldvault.jobs.base.JobRunner` for partition images.

A thin layer, shaped like the Btrfs runner: the run itself is
:class:`~coldvault.jobs.image.backup_run.ImageBackup`; restore, verify and list
are their modules' functions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from coldvault.config.model import ImageJob
from coldvault.errors import JobError
from coldvault.jobs.base import JobResult, RestoreRequest, RunContext, VerifyReport
from coldvault.jobs.image import snapshots
from coldvault.jobs.image.backup_run import ImageBackup
from coldvault.jobs.image.listing import listing
from coldvault.jobs.image.reader import available_algorithm
from coldvault.jobs.image.restore import restore_job
from coldvault.jobs.image.source import open_source
from coldvault.jobs.image.verify import verify_job
from coldvault.jobs.jobdir import open_job_folder
from coldvault.progress import ProgressCallback, human_bytes
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")


class ImageRunner:
    """Back up, restore, verify and list one image job."""

    def __init__(self, job: ImageJob, context: RunContext | None = None) -> None:
        if job.part_size <= 0 or job.block_size <= 0 or job.part_size % job.block_size:
            raise JobError(
                f"job {job.name}: part_size {job.part_size} must be a positive multiple of "
                f"block_size {job.block_size}"
            )
        self.job = job
        self.context = context or RunContext()

    def run(self, job_dir: Path, progress: ProgressCallback, cancel: CancelToken) -> JobResult:
        """Back up the source once into a new snapshot (or the job folder)."""
        began = time.monotonic()
        job = self.job
        algorithm = available_algorithm(job.hash)
        with (
            open_job_folder(job_dir, job.target, create=True) as top,
            open_source(job) as src,
        ):
            if job.snapshots > 0:
                snapshots.finish_deletions(top, job.name)
                snapshots.report_strays(top, job.name)
            stats, name, repaired = ImageBackup(job, prune=self.context.disk_retention).run(
                top, src, algorithm, progress, cancel
            )
        summary = (
            f"{stats.parts} parts, {stats.changed} changed, "
            f"{human_bytes(stats.bytes_read)} read, {human_bytes(stats.bytes_written)} written"
            + (f", {stats.removed} removed (source shrank)" if stats.removed else "")
            + (f"; {repaired.summary()}" if repaired else "")
            + (f" -> {name}" if name else "")
        )
        log.info("%s: %s", job.name, summary)
        return JobResult(
            job.name, name, stats.bytes_read, stats.bytes_written, time.monotonic() - began, summary
        )

    def restore(
        self,
        job_dir: Path,
        request: RestoreRequest,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> str:
        """Write a snapshot back to ``request.dest``."""
        return restore_job(self.job, job_dir, request, progress, cancel)

    def verify(
        self,
        job_dir: Path,
        snapshot: str | None,
        all_snapshots: bool,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> VerifyReport:
        """Re-hash stored parts against their manifests; record what a run can repair."""
        return verify_job(self.job, job_dir, snapshot, all_snapshots, progress, cancel)

    def list(self, job_dir: Path) -> str:
        """A table of the job's snapshots."""
        return listing(self.job, job_dir)
