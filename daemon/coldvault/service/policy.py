"""The daemon's decisions as pure functions: what to run, on which disk, and when to wake.

:mod:`coldvault.service.daemon` keeps the mechanics (threads, ``select``,
signals, the notifier); every rule about *what* to do lives here, with the
clocks passed in, so each rule is tested on its own:

- a job is due on a disk by :mod:`coldvault.service.due`, from its last
  success **on that disk**; ``on_plug`` jobs also run when that disk was just
  plugged;
- a job whose last attempt on a disk failed waits :data:`RETRY_FAILED_AFTER`
  before its retry there, unless that disk was just (re)plugged;
- a disk whose token was rejected is not opened again until it is unplugged,
  or for :data:`RETRY_REJECTED_SECONDS`; other session failures hold the disk
  for a while (:func:`after_session`); unplugging a disk clears its hold;
- of the disks present, the first in configuration order with due jobs is
  served; the others wait for the next turn (one session at a time, under the
  one lock);
- due jobs whose disks are all absent are reported once per absence.

``now`` is an aware datetime (the wall clock: due times); ``mono`` is
``time.monotonic()`` (holds: immune to clock changes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from coldvault.config.model import Job
from coldvault.errors import Busy, DiskAbsent, TokenRejected
from coldvault.progress import format_age
from coldvault.service import due
from coldvault.service import state as st

RETRY_FAILED_AFTER = timedelta(minutes=10)  # a failed job is not retried sooner
RETRY_REJECTED_SECONDS = 3600.0  # a rejected disk: wait for a replug, or this long
RETRY_BUSY_SECONDS = 10.0  # another coldvault process holds the lock

NEVER = float("inf")

# (job name, disk name) -> that job's state on that disk
StateOf = Callable[[str, str], st.JobState]


@dataclass(frozen=True)
class DiskWatch:
    """What the daemon knows about one configured disk between turns."""

    name: str
    jobs: tuple[Job, ...]  # the jobs that back up to this disk
    present: bool | None = None  # None: not looked at yet
    plugged: bool = False  # appeared since its last session started
    rejected: bool = False  # its token was rejected: wait for a replug
    hold_until: float = 0.0  # monotonic: no session on this disk before this
    skipped: frozenset[str] = frozenset()  # jobs whose JOB_SKIPPED was logged this absence


@dataclass(frozen=True)
class Seen:
    """The result of looking at a disk: its new watch, and whether it came or went."""

    watch: DiskWatch
    appeared: bool = False
    went_away: bool = False


def observe(watch: DiskWatch, present: bool) -> Seen:
    """Record whether the disk is there now.

    A disk that appears after having been seen absent counts as plugged (its
    ``on_plug`` jobs run, failed jobs are retried at once). An absent disk
    loses its rejection and its hold: a replug gets a fresh token check.
    """
    appeared = present and watch.present is False
    went_away = not present and bool(watch.present)
    new = replace(watch, present=present, plugged=watch.plugged or appeared)
    if not present:
        new = replace(new, rejected=False, hold_until=0.0)
    return Seen(new, appeared, went_away)


def failed_recently(state: st.JobState, now: datetime) -> bool:
    """A job that just failed on a disk waits before its retry there (no tight failure loop)."""
    if state.result != st.FAILED or state.last_attempt is None:
        return False
    return now - state.last_attempt < RETRY_FAILED_AFTER


def due_on(watch: DiskWatch, state_of: StateOf, now: datetime) -> tuple[Job, ...]:
    """The jobs due on ``watch``'s disk now (whether or not the disk is there)."""
    chosen = due.jobs_to_run(
        watch.jobs,
        lambda name: state_of(name, watch.name).last_success,
        now,
        plugged=watch.plugged,
    )
    return tuple(
        job
        for job in chosen
        if watch.plugged or not failed_recently(state_of(job.name, watch.name), now)
    )


def can_open(watch: DiskWatch, mono: float) -> bool:
    """Whether a session may start on the disk now."""
    return bool(watch.present) and not watch.rejected and mono >= watch.hold_until


def next_due_time(watch: DiskWatch, state_of: StateOf, now: datetime) -> datetime | None:
    """The soonest future time something becomes due on the disk (a due time or a retry)."""
    times = []
    for job in watch.jobs:
        state = state_of(job.name, watch.name)
        when = due.next_due(job.when, state.last_success, now)
        if when is not None and when > now:
            times.append(when)
        if state.result == st.FAILED and state.last_attempt is not None:
            retry = state.last_attempt + RETRY_FAILED_AFTER
            if retry > now:
                times.append(retry)
    return min(times) if times else None


@dataclass(frozen=True)
class Plan:
    """One turn's decision."""

    disk: str | None = None  # the disk to open now; None: start nothing
    jobs: tuple[Job, ...] = ()  # the jobs to run on it, in configuration order
    waiting: tuple[tuple[str, str], ...] = ()  # (disk, job): due, disk absent, not yet logged
    wake_in: float = NEVER  # seconds until the next due time, retry or hold end


def plan(watches: Sequence[DiskWatch], state_of: StateOf, now: datetime, mono: float) -> Plan:
    """What to start now, what to report as waiting, and when to look again."""
    wake = NEVER
    waiting: list[tuple[str, str]] = []
    start: tuple[str, tuple[Job, ...]] | None = None
    for watch in watches:
        soon = next_due_time(watch, state_of, now)
        if soon is not None:
            wake = min(wake, (soon - now).total_seconds())
        jobs = due_on(watch, state_of, now)
        if not jobs:
            continue
        if not watch.present:
            waiting += [(watch.name, j.name) for j in jobs if j.name not in watch.skipped]
        elif mono < watch.hold_until:  # held (a rejected disk: until replug or its hold ends)
            wake = min(wake, watch.hold_until - mono)
        elif start is None and can_open(watch, mono):
            start = (watch.name, jobs)
    if start is None:
        return Plan(waiting=tuple(waiting), wake_in=wake)
    return Plan(start[0], start[1], tuple(waiting), wake)


def started(watch: DiskWatch) -> DiskWatch:
    """A session starts on the disk: the plug is used up, waiting is over."""
    return replace(watch, plugged=False, skipped=frozenset())


def waiting_logged(watch: DiskWatch, job: str) -> DiskWatch:
    """JOB_SKIPPED was logged for ``job`` on the disk during this absence."""
    return replace(watch, skipped=watch.skipped | {job})


def after_session(
    watch: DiskWatch,
    error: BaseException | None,
    *,
    mono: float,
    poll_seconds: float,
    stopping: bool,
) -> DiskWatch:
    """The disk's hold after a session ended with ``error`` (None: it went well)."""
    if isinstance(error, TokenRejected):
        # Until the disk is unplugged, or an hour passed.
        return replace(watch, rejected=True, hold_until=mono + RETRY_REJECTED_SECONDS)
    if isinstance(error, Busy):
        return replace(watch, hold_until=mono + RETRY_BUSY_SECONDS)
    if isinstance(error, DiskAbsent):
        # It went away between the check and the open: look again after a poll interval.
        return replace(watch, hold_until=mono + poll_seconds)
    if error is not None and not stopping:
        # The jobs recorded the failure; do not hammer a broken disk.
        return replace(watch, hold_until=mono + RETRY_FAILED_AFTER.total_seconds())
    return watch


def next_text(watches: Sequence[DiskWatch], state_of: StateOf, now: datetime) -> str:
    """The "next: ..." part of the daemon's status line.

    With several disks, a job's due time is its soonest over the disks it uses,
    and the disk is named.
    """
    soonest: tuple[datetime, str] | None = None
    plug_only: list[str] = []
    several = len(watches) > 1
    for watch in watches:
        for job in watch.jobs:
            when = due.next_due(job.when, state_of(job.name, watch.name).last_success, now)
            label = f"{job.name} on {watch.name}" if several else job.name
            if when is None:
                if job.when.on_plug and job.name not in plug_only:
                    plug_only.append(job.name)
                continue
            if soonest is None or when < soonest[0]:
                soonest = (when, label)
    if soonest is not None:
        when, label = soonest
        if when <= now:
            return f"due: {label}"
        return f"next: {label} in {format_age(when - now)}"
    if plug_only:
        return "next: " + ", ".join(plug_only) + " on plug"
    return "no scheduled jobs"
