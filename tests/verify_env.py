"""Running a whole scheduled-verification round step by step, for the verify tests."""

from __future__ import annotations

from pathlib import Path

from coldvault.config.model import Job
from coldvault.jobs.verify_steps import StepResult, VerifyPosition, verify_step
from coldvault.progress import ProgressMeter, no_progress
from coldvault.system.cancel import CancelToken


def verify_round(job: Job, job_dir: Path, budget: int | None, most: int) -> list[StepResult]:
    """Every step of one round of ``job`` with ``budget`` bytes a step (at most ``most``)."""
    position: VerifyPosition | None = None
    steps: list[StepResult] = []
    while True:
        meter = ProgressMeter(job.name, "verifying", no_progress)
        step = verify_step(job, job_dir, position, budget, meter, CancelToken())
        steps.append(step)
        if step.complete:
            return steps
        assert len(steps) < most, "the verification never ends"
        position = step.position
