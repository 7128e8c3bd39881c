"""The due rule, table-driven with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from coldvault.config.model import ImageJob, SourceRef, When
from coldvault.service import due

TZ = timezone(timedelta(hours=1))  # a local zone that is not UTC: `at` is local time


def at(day: int, hh: int, mm: int = 0) -> datetime:
    """A local time in November 2026 (the clock of these tests)."""
    return datetime(2026, 11, day, hh, mm, tzinfo=TZ)


DAILY = When(every=timedelta(days=1))
AT3 = When(at=(time(3, 0),))
EVERY6H = When(every=timedelta(hours=6))
PLUG = When(on_plug=True)
NIGHTLY_OR_PLUG = When(at=(time(3, 0),), on_plug=True)

CASES = [
    # (name, when, last success, now, due?)
    ("never ran, interval", DAILY, None, at(10, 12), True),
    ("interval not yet passed", DAILY, at(10, 3), at(11, 2, 59), False),
    ("interval passed", DAILY, at(10, 3), at(11, 3), True),
    ("6h interval, 5h later", EVERY6H, at(10, 0), at(10, 5), False),
    ("6h interval, 7h later", EVERY6H, at(10, 0), at(10, 7), True),
    ("03:00 not reached since success", AT3, at(10, 3, 5), at(11, 2, 59), False),
    ("03:00 passed since success", AT3, at(10, 3, 5), at(11, 3, 0), True),
    ("machine off at 03:00, up at 09:00", AT3, at(10, 3, 5), at(11, 9), True),
    ("succeeded after today's 03:00", AT3, at(11, 3, 30), at(11, 23), False),
    ("laptop disk away at 03:00 for 3 days", AT3, at(8, 3, 1), at(11, 14), True),
    ("success just before 03:00 still runs at 03:00", AT3, at(11, 2, 50), at(11, 3, 1), True),
    (
        "at and interval: interval first",
        When(every=timedelta(hours=2), at=(time(3, 0),)),
        at(10, 10),
        at(10, 12, 1),
        True,
    ),
    (
        "two times a day, second passed",
        When(at=(time(3, 0), time(15, 0))),
        at(10, 3, 1),
        at(10, 15, 1),
        True,
    ),
    (
        "two times a day, none passed",
        When(at=(time(3, 0), time(15, 0))),
        at(10, 3, 1),
        at(10, 14, 59),
        False,
    ),
    ("on_plug only: never due on its own", PLUG, at(1, 0), at(30, 0), False),
    ("no schedule at all: never due", When(), None, at(30, 0), False),
    (
        "success in UTC, compared in local time",
        AT3,
        datetime(2026, 11, 10, 2, 30, tzinfo=UTC),
        at(11, 3, 0),
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "when", "last", "now", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_is_due(
    name: str, when: When, last: datetime | None, now: datetime, expected: bool
) -> None:
    assert due.is_due(when, last, now) is expected, name


def test_next_due_is_the_earliest_rule() -> None:
    when = When(every=timedelta(hours=2), at=(time(3, 0),))
    assert due.next_due(when, at(10, 2), at(10, 2, 30)) == at(10, 3)
    assert due.next_due(when, at(10, 4), at(10, 4, 30)) == at(10, 6)
    assert due.next_due(PLUG, at(10, 4), at(10, 5)) is None


def _job(name: str, when: When) -> ImageJob:
    return ImageJob(name=name, source=SourceRef("path", "/dev/null"), target=name, when=when)


def test_jobs_to_run_plug_and_due() -> None:
    jobs = [_job("nightly", AT3), _job("plug", PLUG), _job("both", NIGHTLY_OR_PLUG)]
    last = {"nightly": at(11, 3, 5), "plug": at(11, 3, 5), "both": at(11, 3, 5)}
    now = at(11, 12)
    # Nothing due, disk did not just appear: nothing runs.
    assert due.jobs_to_run(jobs, last.get, now) == []
    # The disk appears: on_plug jobs run although not due.
    names = [j.name for j in due.jobs_to_run(jobs, last.get, now, plugged=True)]
    assert names == ["plug", "both"]
    # Next morning after 03:00 the disk comes back: the missed nightly runs too.
    later = at(12, 8)
    names = [j.name for j in due.jobs_to_run(jobs, last.get, later, plugged=True)]
    assert names == ["nightly", "plug", "both"]
    # An on_plug job that never ran starts as soon as the disk is there.
    assert [j.name for j in due.jobs_to_run(jobs, {}.get, now)] == ["nightly", "plug", "both"]


OVERDUE = [
    # (when, last success, now, overdue?)
    (DAILY, at(10, 3), at(11, 12), False),  # due since 03:00, late by 9h < 1d
    (DAILY, at(10, 3), at(12, 3, 1), True),  # late by a day and a minute
    (AT3, at(8, 3, 5), at(10, 2, 59), False),  # due since the 9th 03:00: late by 23h59m
    (AT3, at(8, 3, 5), at(10, 3, 30), True),
    (PLUG, at(1, 0), at(30, 0), False),  # on_plug only: no interval, never overdue
    (DAILY, None, at(10, 0), True),  # never succeeded: no backup exists
    (When(), None, at(10, 0), False),  # manual job
]


@pytest.mark.parametrize(("when", "last", "now", "expected"), OVERDUE)
def test_is_overdue(when: When, last: datetime | None, now: datetime, expected: bool) -> None:
    assert due.is_overdue(when, last, now) is expected
