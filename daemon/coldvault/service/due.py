"""When is a job due? A pure computation on the job's ``When`` and its last success.

A job is due when its last success is older than its interval (``every``), or
when one of its wall-clock times (``at``) has passed since that success; a job
that never succeeded is due at once. So a machine that was off at 03:00 backs
up when it next runs, and a laptop whose disk was away at 03:00 backs up as
soon as the disk is back. ``on_plug`` jobs also run every time the disk
appears (the daemon decides that; see :func:`jobs_to_run`).

``now`` is always passed in (an aware datetime), so tests control the clock;
``at`` times are read in ``now``'s time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, time, timedelta

from coldvault.config.model import Job, VerifySchedule, When

Clock = Callable[[], datetime]
DAY = timedelta(days=1)


def local_now() -> datetime:
    """The real clock: now, aware, in the local time zone."""
    return datetime.now(UTC).astimezone()


def _next_at(t: time, after: datetime) -> datetime:
    """The first occurrence of wall-clock time ``t`` strictly after ``after``."""
    today = datetime.combine(after.date(), t, tzinfo=after.tzinfo)
    return today if today > after else today + DAY


def next_due(when: When, last_success: datetime | None, now: datetime) -> datetime | None:
    """When the job becomes due (maybe in the past: it is due now); None: never on its own."""
    if when.every is None and not when.at:
        return None
    if last_success is None:
        return now
    since = last_success.astimezone(now.tzinfo)
    candidates = [_next_at(t, since) for t in when.at]
    if when.every is not None:
        candidates.append(since + when.every)
    return min(candidates)


def is_due(when: When, last_success: datetime | None, now: datetime) -> bool:
    """Whether the interval or a wall-clock time demands a backup now."""
    due = next_due(when, last_success, now)
    return due is not None and due <= now


def interval(when: When) -> timedelta | None:
    """The job's period: ``every``, else one day for ``at`` times; None for on_plug only."""
    if when.every is not None:
        return when.every
    return DAY if when.at else None


def offsite_when(target: When, job: When) -> When:
    """The schedule an offsite copy is judged by: the target's ``every``/``at``, else the job's.

    A target with neither copies in every disk session, so its copies are as late as
    the job's own backups allow: the job's interval is their measure.
    """
    return target if target.every is not None or target.at else job


def overdue_by(when: When, last_success: datetime | None, now: datetime) -> timedelta | None:
    """How long past due the job is (None when it is not due or never runs on its own)."""
    due = next_due(when, last_success, now)
    if due is None or due > now:
        return None
    return now - due


def is_overdue(when: When, last_success: datetime | None, now: datetime) -> bool:
    """Overdue by more than its interval (what ``coldvault status`` fails on).

    A scheduled job that never succeeded counts as overdue: no backup exists.
    """
    period = interval(when)
    if period is None:
        return False
    if last_success is None:
        return True
    late = overdue_by(when, last_success, now)
    return late is not None and late > period


def jobs_to_run(
    jobs: Iterable[Job],
    last_success: Callable[[str], datetime | None],
    now: datetime,
    *,
    plugged: bool = False,
) -> list[Job]:
    """The jobs to run now: due ones, plus ``on_plug`` ones when the disk just appeared.

    An ``on_plug``-only job that never succeeded is run as soon as the disk is
    there (it has no other way to start).
    """
    chosen = []
    for job in jobs:
        when = job.when
        if is_due(when, last_success(job.name), now) or (
            when.on_plug and (plugged or last_success(job.name) is None)
        ):
            chosen.append(job)
    return chosen


def absent_too_long(
    last_seen: datetime | None, present: bool, now: datetime, limit: timedelta | None
) -> timedelta | None:
    """How long a disk has been away, when that is longer than ``limit`` (else None).

    A disk never seen has no age to warn about (it may not exist yet); a
    present disk is not away; ``limit`` None turns the warning off.
    """
    if present or last_seen is None or limit is None:
        return None
    away = now - last_seen
    return away if away > limit else None


def verify_next_due(
    schedule: VerifySchedule,
    last_verified: datetime | None,
    in_round: bool,
    has_backup: bool,
    now: datetime,
) -> datetime | None:
    """When the daemon next verifies a job (maybe in the past: due now); None: never.

    A job with a backup that was never verified is due at once (in the next
    disk session); an unfinished round goes on in every session until it is done.
    """
    if schedule.every is None or not has_backup:
        return None
    if in_round or last_verified is None:
        return now
    return last_verified + schedule.every


def verify_due(
    schedule: VerifySchedule,
    last_verified: datetime | None,
    in_round: bool,
    has_backup: bool,
    now: datetime,
) -> bool:
    """Whether a disk session that is open anyway should verify the job after its backups."""
    when = verify_next_due(schedule, last_verified, in_round, has_backup, now)
    return when is not None and when <= now
