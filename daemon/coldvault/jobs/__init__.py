"""Backup job types behind one protocol (:class:`coldvault.jobs.base.JobRunner`)."""

from __future__ import annotations

from coldvault.config.model import BtrfsJob, ImageJob, Job
from coldvault.jobs.base import JobRunner, RunContext


def runner_for(job: Job, context: RunContext | None = None) -> JobRunner:
    """The runner that implements ``job``'s type (``context``: for backups, see RunContext)."""
    context = context or RunContext()
    if isinstance(job, ImageJob):
        from coldvault.jobs.image.runner import ImageRunner

        return ImageRunner(job, context)
    if isinstance(job, BtrfsJob):
        from coldvault.jobs.btrfs.runner import BtrfsRunner

        return BtrfsRunner(job, context)
    raise TypeError(f"unknown job type {type(job).__name__}")
