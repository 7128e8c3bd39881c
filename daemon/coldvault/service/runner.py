"""Run a list of jobs in ONE disk session: open once, run all, close once.

Per job: journal events (started, finished with bytes and duration, failed
with the reason, cancelled), a state-file update, and the ``on_success`` /
``on_failure`` hooks of the job and of ``settings.hooks``. A failing job never
stops the others; a stop request (``cancel``) ends the session at the job's
next safe point and the disk is torn down as usual.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coldvault.config.model import Config, Job
from coldvault.errors import (
    Busy,
    Cancelled,
    ColdvaultError,
    DiskAbsent,
    TokenRejected,
    describe_os_error,
)
from coldvault.events import Event, emit
from coldvault.jobs import runner_for
from coldvault.jobs.base import RunContext
from coldvault.offsite.run import offsite_turn
from coldvault.progress import ProgressCallback
from coldvault.service import hooks, rollback
from coldvault.service import state as st
from coldvault.service.due import local_now
from coldvault.service.inhibit import sleep_inhibited
from coldvault.service.scheduled_verify import verify_due_jobs
from coldvault.service.session import disk_session
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.runner")
LOG_EXCERPT_LINES = 20


@dataclass(frozen=True)
class JobOutcome:
    """How one job of a session ended."""

    job: str
    result: str  # success | failed | cancelled
    bytes_written: int = 0
    duration: float = 0.0
    error: str | None = None
    hint: str | None = None  # what the user can do about ``error``


@dataclass(frozen=True)
class SessionOutcome:
    """Every job of a session, in order."""

    jobs: tuple[JobOutcome, ...]
    teardown_error: str | None = None  # the disk could not be closed completely after the jobs

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the jobs that failed."""
        return tuple(o.job for o in self.jobs if o.result == st.FAILED)

    @property
    def cancelled(self) -> bool:
        """Whether a stop request ended the session early."""
        return any(o.result == st.CANCELLED for o in self.jobs)


class _Excerpt(logging.Handler):
    """The last log lines of the running job, for ``COLDVAULT_LOG`` in hooks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_EXCERPT_LINES)
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _capture_log() -> Iterator[_Excerpt]:
    handler = _Excerpt()
    root = logging.getLogger("coldvault")
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def run_session(
    config: Config,
    jobs: Sequence[Job],
    *,
    cancel: CancelToken,
    progress: ProgressCallback,
    on_job: Callable[[Job | None], None] = lambda _: None,
    wait_disk: float | None = 0,
    wait_lock: float | None = 0,
    keep_open: bool = False,
    clock: Callable[[], datetime] = local_now,
    verify: bool = False,
    offsite: bool = False,
) -> SessionOutcome:
    """Open the disk, run ``jobs`` in order, close the disk; return what happened.

    Raises what stops the whole session before any job ran: DiskAbsent, Busy,
    TokenRejected, DiskError, Cancelled. ``on_job`` is told which job starts
    (None once they are all done). With ``verify``, the jobs whose scheduled
    verification is due are verified after every backup of the session. With
    ``offsite``, due offsite copies read from the disk follow; copies that do not
    need the disk (``offsite_from: source``) run after it was closed, so the
    "disk may be unplugged" moment never waits for them.
    """
    state = st.StateFile(config.settings.state_file, config.disk_name)
    names = ", ".join(j.name for j in jobs)
    outcomes: list[JobOutcome] = []
    teardown_error: str | None = None
    with (
        sleep_inhibited(f"backing up {names}", enabled=config.settings.inhibit_sleep),
        hooks.SessionWatch(config) as watch,
    ):
        try:
            with disk_session(
                config, wait_disk=wait_disk, wait_lock=wait_lock, keep_open=keep_open, cancel=cancel
            ) as _root:
                watch.disk_opened()
                _record_seen(state, clock)
                retention = rollback.check(config, state)  # a disk gone back in time
                for job in jobs:
                    if cancel.cancelled:
                        break
                    on_job(job)
                    context = rollback.context_for(config, job, state, retention)
                    outcomes.append(_run_job(config, job, state, cancel, progress, clock, context))
                    rollback.remember(config, job, state)  # what the disk holds now
                if verify and not cancel.cancelled:
                    verify_due_jobs(
                        config, state, cancel=cancel, progress=progress, on_job=on_job, clock=clock
                    )
                if offsite and not cancel.cancelled:
                    offsite_copies(
                        config, from_disk=True, cancel=cancel, progress=progress, clock=clock
                    )
                on_job(None)
        except DiskAbsent:
            for job in jobs:
                emit(
                    log,
                    Event.JOB_SKIPPED,
                    f"{job.name}: skipped, the backup disk is absent",
                    job=job.name,
                )
            raise
        except TokenRejected as exc:
            # The disk stack logged TOKEN_REJECTED; every job of the session failed for it.
            _fail_unstarted(config, jobs, state, exc, clock)
            raise
        except (Cancelled, Busy):
            raise
        except ColdvaultError as exc:
            if not exc.reported:  # teardown failures were reported by the disk stack
                emit(log, Event.DISK_ERROR, str(exc), level=logging.ERROR)
                exc.reported = True
            if not outcomes:  # the disk did not open: every job failed for that reason
                _fail_unstarted(config, jobs, state, exc, clock)
                raise
            # The jobs ran, teardown failed: their results stand, the error was reported.
            teardown_error = exc.message
    outcome = SessionOutcome(tuple(outcomes), teardown_error)
    watch.ended(outcome, closed=not keep_open)
    if offsite and not cancel.cancelled:
        offsite_copies(config, from_disk=False, cancel=cancel, progress=progress, clock=clock)
    return outcome


def offsite_copies(
    config: Config,
    *,
    from_disk: bool,
    cancel: CancelToken,
    progress: ProgressCallback,
    clock: Callable[[], datetime],
) -> None:
    """The due offsite copies read from the disk, or the others; then their messages, metrics."""
    outcomes = offsite_turn(
        config, from_disk=from_disk, cancel=cancel, progress=progress, clock=clock
    )
    hooks.after_offsite(config, outcomes)


def _fail_unstarted(
    config: Config,
    jobs: Sequence[Job],
    state: st.StateFile,
    exc: ColdvaultError,
    clock: Callable[[], datetime],
) -> None:
    """Record a session-level failure against every job that could not run."""
    now = clock()
    for job in jobs:
        _record_unfinished(state, job.name, now, st.FAILED, exc.message, 0.0)
        failed = JobOutcome(job.name, st.FAILED, error=exc.message, hint=exc.hint)
        _after(config, job, failed, [str(exc)])


def _run_job(
    config: Config,
    job: Job,
    state: st.StateFile,
    cancel: CancelToken,
    progress: ProgressCallback,
    clock: Callable[[], datetime],
    context: RunContext | None = None,
) -> JobOutcome:
    """Run one job; every outcome is logged, recorded and hooked, none is raised."""
    started_at = clock()
    start = time.monotonic()
    emit(log, Event.JOB_STARTED, f"{job.name}: backup started", job=job.name, type=job.type)
    hooks.job_started(config, job)
    with _capture_log() as excerpt:
        try:
            with hooks.around_job(config, job, cancel):
                result = runner_for(job, context).run(config.job_dir(job), progress, cancel)
        except Cancelled as exc:
            took = time.monotonic() - start
            emit(
                log,
                Event.JOB_CANCELLED,
                f"{job.name}: backup stopped: {exc.message}",
                job=job.name,
                level=logging.WARNING,
                duration=f"{took:.1f}",
            )
            _record_unfinished(state, job.name, started_at, st.CANCELLED, None, took)
            return JobOutcome(job.name, st.CANCELLED, duration=took)
        except Exception as exc:
            took = time.monotonic() - start
            hint = None
            if isinstance(exc, ColdvaultError):
                reason, hint = exc.message, exc.hint
            elif isinstance(exc, OSError):  # I/O error, disk full: expected, no traceback
                log.debug("%s: %s", job.name, exc, exc_info=True)
                described = describe_os_error(exc)
                reason, hint = described.message, described.hint
            else:  # a bug: keep the daemon alive, keep the traceback for the report
                log.exception("%s: unexpected error", job.name)
                reason = f"internal error: {type(exc).__name__}: {exc}"
            emit(
                log,
                Event.JOB_FAILED,
                f"{job.name}: backup failed: {reason}" + (f"\n  hint: {hint}" if hint else ""),
                job=job.name,
                level=logging.ERROR,
                error=reason,
                hint=hint,
                duration=f"{took:.1f}",
            )
            _record_unfinished(state, job.name, started_at, st.FAILED, reason, took)
            failed = JobOutcome(job.name, st.FAILED, duration=took, error=reason, hint=hint)
            _after(config, job, failed, list(excerpt.lines))
            return failed
    took = time.monotonic() - start
    emit(
        log,
        Event.JOB_FINISHED,
        f"{job.name}: backup finished: {result.summary}",
        job=job.name,
        bytes_read=result.bytes_read,
        bytes_written=result.bytes_written,
        duration=f"{took:.1f}",
        snapshot=result.snapshot or "",
    )
    _record(
        state,
        job.name,
        last_attempt=started_at,
        last_success=started_at,
        result=st.SUCCESS,
        error=None,
        bytes_read=result.bytes_read,
        bytes_written=result.bytes_written,
        duration=took,
        summary=result.summary,
    )
    done = JobOutcome(job.name, st.SUCCESS, result.bytes_written, took)
    _after(config, job, done, list(excerpt.lines))
    return done


def _record_seen(state: st.StateFile, clock: Callable[[], datetime]) -> None:
    """The disk's token was accepted: remember when this disk was last seen."""
    try:
        state.seen(clock())
    except ColdvaultError as exc:
        log.error("disk %s: when it was seen not recorded: %s", state.disk, exc)


def _record(state: st.StateFile, job: str, **changes: Any) -> None:
    """Update the state file; a failure to write it is logged, never turned into a job failure."""
    try:
        state.update(job, **changes)
    except ColdvaultError as exc:
        log.error("%s: result not recorded: %s", job, exc)


def _record_unfinished(
    state: st.StateFile,
    job: str,
    started_at: datetime,
    result: str,
    error: str | None,
    took: float,
) -> None:
    """Record an attempt that did not succeed (the last success stays as it was)."""
    _record(
        state,
        job,
        last_attempt=started_at,
        result=result,
        error=error,
        bytes_read=0,
        bytes_written=0,
        duration=took,
    )


def _after(config: Config, job: Job, outcome: JobOutcome, lines: list[str]) -> None:
    """Hooks, ping, notification and metrics once the job's result is known."""
    error = None if outcome.result == st.SUCCESS else (outcome.error or outcome.result)
    hooks.after_job(
        config,
        job,
        error,
        lines,
        hint=outcome.hint,
        took=outcome.duration,
        written=outcome.bytes_written,
    )
