"""Resumable, budgeted verification: one step of a verification spread over disk sessions.

The daemon verifies each job now and then (``verify: {every: 30d}``). A huge
job must not keep the disk busy for a day, so one verification ("round") may
be cut into steps: each step reads at most ``budget`` bytes, then returns the
:class:`VerifyPosition` where the next step (next session) goes on. A step
also ends early, at a safe point, when ``cancel`` is set; its position is kept
as well, so nothing read is read again.

Each job type implements a step as a layer over its own verify code:
:mod:`coldvault.jobs.image.verify_steps` and :mod:`coldvault.jobs.btrfs.verify_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coldvault.config.model import BtrfsJob, ImageJob, Job
from coldvault.progress import ProgressMeter
from coldvault.system.cancel import CancelToken


@dataclass(frozen=True)
class VerifyPosition:
    """Where an unfinished round goes on (kept in the state file between sessions).

    Image jobs walk part by part across every snapshot (parts shared by hard
    links are read once): ``part`` is the next part index, ``snapshot`` the
    first snapshot folder name still to check at that index ("" = all).
    Btrfs jobs walk the round's ``targets`` (received snapshots, relative to the
    job folder) in order: ``snapshot`` is the one under way, ``file`` the path
    (relative to it) of the file under way and ``offset`` how much of it was read.
    """

    snapshot: str = ""
    part: int = 0
    file: str = ""
    offset: int = 0
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepResult:
    """What one step did; ``position`` is None when the round is complete."""

    position: VerifyPosition | None
    bytes_read: int
    items: int  # parts or files checked in this step
    problems: tuple[str, ...]  # corrupt, missing or unreadable data, one line each
    notes: tuple[str, ...] = field(default=())  # worth saying, not damage ("not yet adopted")

    @property
    def complete(self) -> bool:
        """Whether the round ended with this step."""
        return self.position is None


def verify_step(
    job: Job,
    job_dir: Path,
    position: VerifyPosition | None,
    budget: int | None,
    meter: ProgressMeter,
    cancel: CancelToken,
) -> StepResult:
    """Run one step of ``job``'s round from ``position`` (None: start a new round).

    Stops before reading more once ``budget`` bytes were read (None: no limit),
    or at the next safe point after ``cancel`` is set (within one block read).
    Raises a ColdvaultError only when the job's backups cannot be listed at all.
    """
    if isinstance(job, ImageJob):
        from coldvault.jobs.image.verify_steps import image_step

        return image_step(job, job_dir, position, budget, meter, cancel)
    if isinstance(job, BtrfsJob):
        from coldvault.jobs.btrfs.verify_steps import btrfs_step

        return btrfs_step(job, job_dir, position, budget, meter, cancel)
    raise TypeError(f"unknown job type {type(job).__name__}")


def over_budget(read: int, budget: int | None) -> bool:
    """Whether a step that read ``read`` bytes must stop before reading more."""
    return budget is not None and read >= budget
