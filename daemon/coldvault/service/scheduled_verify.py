"""Scheduled verification: after the due backups of a disk session, verify what is due.

Runs inside a disk session that is open anyway (the daemon never opens the
disk only to verify), after every backup of the session, at idle I/O priority.
Per job, a round reads at most ``verify.max_per_session`` bytes per session and
goes on in the next one where it stopped (the position is kept in the state
file). A stop request ends the step within one block read; its position is
kept too. Each finished round is recorded (time, result, problems) and logged
as ``verify_finished`` (nothing wrong) or ``verify_failed`` (problems found, or
the verification could not run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from coldvault.config.model import Config, Job
from coldvault.errors import Cancelled, ColdvaultError, describe_os_error
from coldvault.events import Event, emit
from coldvault.jobs.verify_steps import StepResult, verify_step
from coldvault.platform.ioprio import idle_io
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.service import due
from coldvault.service import state as st
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.verify")
PHASE = "verifying (scheduled)"


@dataclass(frozen=True)
class VerifyOutcome:
    """What one job's scheduled verification did in this session."""

    job: str
    finished: bool  # the round ended in this session
    result: str | None  # ok | problems | error, when finished
    bytes_read: int  # in this session


def jobs_to_verify(config: Config, states: dict[str, st.JobState], now: datetime) -> list[Job]:
    """The jobs whose verification is due (or under way), in configuration order."""
    chosen = []
    for job in config.jobs:
        state = states.get(job.name, st.JobState())
        if due.verify_due(
            config.verify_schedule(job),
            state.verify.last_finished,
            state.verify.position is not None,
            state.last_success is not None,
            now,
        ):
            chosen.append(job)
    return chosen


def verify_due_jobs(
    config: Config,
    state: st.StateFile,
    *,
    cancel: CancelToken,
    progress: ProgressCallback,
    on_job: Callable[[Job | None], None],
    clock: Callable[[], datetime],
) -> list[VerifyOutcome]:
    """Verify every due job, one step each, until done, over budget or stopped."""
    try:
        todo = jobs_to_verify(config, state.load(), clock())
    except ColdvaultError as exc:
        log.error("scheduled verification skipped: %s", exc)
        return []
    outcomes: list[VerifyOutcome] = []
    if not todo:
        return outcomes
    with idle_io() as idle:
        if not idle:
            log.info("scheduled verification runs at normal I/O priority (no idle class here)")
        for job in todo:
            if cancel.cancelled:
                break
            on_job(job)
            outcomes.append(_verify_job(config, job, state, cancel, progress, clock))
        on_job(None)
    return outcomes


def _verify_job(
    config: Config,
    job: Job,
    state: st.StateFile,
    cancel: CancelToken,
    progress: ProgressCallback,
    clock: Callable[[], datetime],
) -> VerifyOutcome:
    """One step of ``job``'s round; every outcome is recorded and logged, none is raised."""
    now = clock()
    try:
        before = state.get(job.name).verify
    except ColdvaultError as exc:
        log.error("%s: scheduled verification skipped: %s", job.name, exc)
        return VerifyOutcome(job.name, False, None, 0)
    budget = config.verify_schedule(job).max_per_session
    if before.position is None:
        before = replace(_cleared_round(before), round_started=now)
        log.info("%s: scheduled verification started", job.name)
    else:
        log.info("%s: scheduled verification goes on where it stopped", job.name)
    meter = ProgressMeter(job.name, PHASE, progress)
    try:
        step = verify_step(job, config.job_dir(job), before.position, budget, meter, cancel)
    except Cancelled:  # a stop while listing: the round goes on next time as it was
        return VerifyOutcome(job.name, False, None, 0)
    except Exception as exc:
        reason = _reason(job, exc)
        _finish(state, job, before, clock(), error=reason)
        return VerifyOutcome(job.name, True, st.VERIFY_ERROR, 0)
    meter.emit()
    merged = _merge(before, step)
    if not step.complete:
        why = "stopped" if cancel.cancelled else f"paused after {human_bytes(step.bytes_read)}"
        log.info(
            "%s: scheduled verification %s (%s read so far); it goes on in the next session",
            job.name,
            why,
            human_bytes(merged.round_bytes),
        )
        _save(state, job.name, merged)
        return VerifyOutcome(job.name, False, None, step.bytes_read)
    result = _finish(state, job, merged, clock())
    return VerifyOutcome(job.name, True, result, step.bytes_read)


def _reason(job: Job, exc: Exception) -> str:
    if isinstance(exc, ColdvaultError):
        return exc.message
    if isinstance(exc, OSError):
        return describe_os_error(exc).message
    log.exception("%s: unexpected error in the scheduled verification", job.name)
    return f"internal error: {type(exc).__name__}: {exc}"


def _cleared_round(v: st.VerifyState) -> st.VerifyState:
    return replace(
        v,
        position=None,
        round_started=None,
        round_bytes=0,
        round_items=0,
        round_sessions=0,
        round_problems=(),
        round_problem_count=0,
        round_notes=(),
    )


def _merge(v: st.VerifyState, step: StepResult) -> st.VerifyState:
    """Add one step's findings to the round under way."""
    return replace(
        v,
        position=step.position,
        round_bytes=v.round_bytes + step.bytes_read,
        round_items=v.round_items + step.items,
        round_sessions=v.round_sessions + 1,
        round_problems=(*v.round_problems, *step.problems)[: st.MAX_PROBLEMS_KEPT],
        round_problem_count=v.round_problem_count + len(step.problems),
        round_notes=(*v.round_notes, *step.notes)[: st.MAX_PROBLEMS_KEPT],
    )


def _finish(
    state: st.StateFile,
    job: Job,
    v: st.VerifyState,
    now: datetime,
    *,
    error: str | None = None,
) -> str:
    """Record the round's end and emit its event; return the result."""
    if error is not None:
        result = st.VERIFY_ERROR
    else:
        result = st.VERIFY_PROBLEMS if v.round_problem_count else st.VERIFY_OK
    done = replace(
        _cleared_round(v),
        last_finished=now,
        result=result,
        problems=v.round_problems,
        problem_count=v.round_problem_count,
        items=v.round_items,
        bytes_read=v.round_bytes,
        sessions=v.round_sessions,
        error=error,
        notes=v.round_notes,
    )
    _save(state, job.name, done)
    for note in done.notes:
        log.info("%s: %s", job.name, note)
    fields = {
        "items": done.items,
        "bytes_read": done.bytes_read,
        "sessions": done.sessions,
        "problems": done.problem_count,
    }
    if result == st.VERIFY_OK:
        emit(
            log,
            Event.VERIFY_FINISHED,
            f"{job.name}: verification finished: {done.items} checked, "
            f"{human_bytes(done.bytes_read)} read in {done.sessions} session(s), no problems",
            job=job.name,
            **fields,
        )
    else:
        reason = error or _problem_text(done)
        emit(
            log,
            Event.VERIFY_FAILED,
            f"{job.name}: verification failed: {reason}",
            job=job.name,
            level=logging.ERROR,
            error=reason,
            **fields,
        )
        for line in done.problems:
            log.error("%s: %s", job.name, line)
    return result


def _problem_text(v: st.VerifyState) -> str:
    first = v.problems[0] if v.problems else ""
    return f"{v.problem_count} problem(s) in {v.items} checked; first: {first}"


def _save(state: st.StateFile, job: str, verify: st.VerifyState) -> None:
    """Record; a state file that cannot be written is logged, never raised."""
    try:
        state.update(job, verify=verify)
    except ColdvaultError as exc:
        log.error("%s: verification result not recorded: %s", job, exc)


def describe_verify(v: st.VerifyState) -> str:
    """One line for ``coldvault status``: the last round, and the one under way."""
    if v.result is None:
        text = "never verified"
    elif v.result == st.VERIFY_OK:
        text = f"verified ok ({v.items} checked, {human_bytes(v.bytes_read)})"
    elif v.result == st.VERIFY_PROBLEMS:
        text = f"VERIFY FOUND {v.problem_count} PROBLEM(S)"
    else:
        text = f"verification could not run: {v.error}"
    if v.last_finished is not None:
        text += f" on {v.last_finished:%Y-%m-%d %H:%M}"
    if v.position is not None:
        text += f"; verification under way ({human_bytes(v.round_bytes)} read so far)"
    return text
