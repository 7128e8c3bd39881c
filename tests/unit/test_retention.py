"""retention.plan: newest N, calendar buckets, protected names."""

from __future__ import annotations

from datetime import datetime, timedelta

from coldvault.config.model import Retention
from coldvault.jobs.retention import plan, reasons


def daily(days: int, start: datetime = datetime(2024, 1, 1, 3, 0)) -> list[tuple[str, datetime]]:
    """One snapshot a day at 03:00, named by date."""
    return [
        (f"s-{(start + timedelta(days=i)):%Y-%m-%d}", start + timedelta(days=i))
        for i in range(days)
    ]


def test_no_rule_keeps_everything_newest_first() -> None:
    snaps = daily(5)
    result = plan(snaps, Retention())
    assert result.keep == tuple(n for n, _ in reversed(snaps))
    assert result.delete == ()


def test_keep_last() -> None:
    snaps = daily(10)
    result = plan(snaps, Retention(keep_last=3))
    assert result.keep == ("s-2024-01-10", "s-2024-01-09", "s-2024-01-08")
    assert len(result.delete) == 7
    assert result.delete[0] == "s-2024-01-07" and result.delete[-1] == "s-2024-01-01"


def test_input_order_does_not_matter() -> None:
    snaps = daily(10)
    assert plan(list(reversed(snaps)), Retention(keep_last=2)) == plan(
        snaps, Retention(keep_last=2)
    )


def test_newest_is_always_kept() -> None:
    snaps = daily(4)
    result = plan(snaps, Retention(keep_last=0))
    assert result.keep == ("s-2024-01-04",)
    assert set(result.delete) == {"s-2024-01-01", "s-2024-01-02", "s-2024-01-03"}


def test_protect_keeps_named_snapshots() -> None:
    snaps = daily(6)
    result = plan(snaps, Retention(keep_last=1), protect={"s-2024-01-02", "not-there"})
    assert result.keep == ("s-2024-01-06", "s-2024-01-02")
    assert "not-there" not in result.keep + result.delete


def test_daily_bucket_keeps_oldest_of_each_day() -> None:
    base = datetime(2024, 3, 1)
    snaps = [
        (f"d{d}-h{h}", base + timedelta(days=d, hours=h)) for d in range(4) for h in (1, 12, 23)
    ]
    result = plan(snaps, Retention(keep_last=0, daily=2))
    # The newest (d3-h23) always; then the oldest of each of the 2 newest days.
    assert set(result.keep) == {"d3-h23", "d3-h1", "d2-h1"}
    assert len(result.delete) == len(snaps) - 3


def test_weekly_monthly_yearly_buckets() -> None:
    snaps = daily(800, start=datetime(2022, 1, 1, 12, 0))
    result = plan(snaps, Retention(keep_last=0, weekly=2, monthly=3, yearly=2))
    kept = set(result.keep)
    newest = snaps[-1][0]
    assert newest == "s-2024-03-10"
    assert newest in kept
    # Monthly: the first snapshot of each of the 3 newest months.
    assert {"s-2024-03-01", "s-2024-02-01", "s-2024-01-01"} <= kept
    # Yearly: the first of 2024 and of 2023.
    assert "s-2023-01-01" in kept
    assert "s-2022-01-01" not in kept
    # Weekly: the Monday of each of the two newest ISO weeks.
    assert {"s-2024-03-04", "s-2024-02-26"} <= kept
    assert kept == {
        "s-2024-03-10",
        "s-2024-03-04",
        "s-2024-02-26",
        "s-2024-03-01",
        "s-2024-02-01",
        "s-2024-01-01",
        "s-2023-01-01",
    }
    assert set(result.keep) | set(result.delete) == {n for n, _ in snaps}
    assert not set(result.keep) & set(result.delete)


def test_hourly_bucket() -> None:
    base = datetime(2024, 5, 5, 10, 0)
    snaps = [(f"m{m}", base + timedelta(minutes=m)) for m in range(0, 180, 20)]
    result = plan(snaps, Retention(keep_last=0, hourly=2))
    assert set(result.keep) == {"m160", "m120", "m60"}


def test_keep_last_and_buckets_combine() -> None:
    snaps = daily(40)
    result = plan(snaps, Retention(keep_last=2, monthly=2))
    assert set(result.keep) == {"s-2024-02-09", "s-2024-02-08", "s-2024-02-01", "s-2024-01-01"}


def test_empty() -> None:
    result = plan([], Retention(keep_last=3, daily=2))
    assert result.keep == () and result.delete == ()


def test_reasons_name_every_rule_that_keeps_a_snapshot() -> None:
    snaps = daily(40)
    why = reasons(
        snaps, Retention(keep_last=2, weekly=1, monthly=2), protect={"s-2024-01-05": "parent"}
    )
    assert why["s-2024-02-09"] == ["newest", "last 2"]
    assert why["s-2024-02-08"] == ["last 2"]
    assert why["s-2024-02-05"] == ["weekly"]  # the Monday: oldest of ISO week 6
    assert why["s-2024-02-01"] == ["monthly"]
    assert why["s-2024-01-01"] == ["monthly"]
    assert why["s-2024-01-05"] == ["parent"]
    assert why["s-2024-01-06"] == []  # deleted by the next pass
    # plan keeps exactly what has a reason.
    kept = plan(snaps, Retention(keep_last=2, weekly=1, monthly=2), protect={"s-2024-01-05"})
    assert set(kept.keep) == {n for n, r in why.items() if r}


def test_reasons_without_a_rule() -> None:
    assert reasons(daily(2), Retention()) == {
        "s-2024-01-01": ["no retention rule"],
        "s-2024-01-02": ["no retention rule"],
    }
