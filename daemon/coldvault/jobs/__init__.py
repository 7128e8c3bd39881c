"""Backup job types behind one protocol (:class:`coldvault.jobs.base.JobRunner`)."""

from __future__ import annotations

from coldvault.config.model import BtrfsJob, ImageJob, Job
from coldvault.jobs.base import JobRunner


def runner_for(job: Job) -> JobRunner:
    """The runner that implements ``job``'s type."""
    if isinstance(job, ImageJob):
        from coldvault.jobs.image.runner import ImageRunner

        return ImageRunner(job)
    if isinstance(job, BtrfsJob):
        from coldvault.jobs.btrfs.runner import BtrfsRunner

        return BtrfsRunner(job)
    raise TypeError(f"unknown job type {type(job).__name__}")
