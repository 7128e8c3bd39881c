"""Progress snapshots, the throttling meter, and the human formats."""

from __future__ import annotations

import pytest

from coldvault.progress import (
    Progress,
    ProgressMeter,
    format_duration,
    human_bytes,
    no_progress,
)


class Clock:
    """A clock the test moves by hand (the meter takes its clock as a parameter)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 << 20, "5.0 MiB"),
        (3 << 30, "3.0 GiB"),
        (2 << 40, "2.0 TiB"),
        (5000 << 40, "5000.0 TiB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00:00"), (59.6, "0:01:00"), (3661, "1:01:01"), (-5, "0:00:00")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_fraction() -> None:
    assert Progress("j", "reading", 50, 200).fraction == 0.25
    assert Progress("j", "reading", 500, 200).fraction == 1.0
    assert Progress("j", "reading", 5).fraction is None
    assert Progress("j", "reading", 5, 0).fraction is None


def test_describe() -> None:
    p = Progress("home", "sending", 1 << 30, 4 << 30, rate=180e6, eta_seconds=16, detail="x")
    assert p.describe() == "home: sending 1.0 GiB of 4.0 GiB, 180 MB/s, ETA 0:00:16 (x)"
    assert Progress("root", "reading", 10).describe() == "root: reading 10 B"


def test_meter_computes_rate_and_eta() -> None:
    clock = Clock()
    seen: list[Progress] = []
    meter = ProgressMeter("root", "reading", seen.append, total_bytes=1000, clock=clock)
    clock.now += 2
    meter.update(400, written=100, detail="part 1 of 3")
    assert len(seen) == 1
    p = seen[0]
    assert (p.job, p.phase, p.done_bytes, p.total_bytes) == ("root", "reading", 400, 1000)
    assert p.written_bytes == 100 and p.detail == "part 1 of 3"
    assert p.rate == pytest.approx(200.0)
    assert p.eta_seconds == pytest.approx(3.0)


def test_meter_throttles_and_emit_forces() -> None:
    clock = Clock()
    seen: list[Progress] = []
    meter = ProgressMeter("j", "reading", seen.append, total_bytes=None, interval=1.0, clock=clock)
    meter.update(1)
    clock.now += 0.5
    meter.update(2)  # within the interval: no callback
    assert [p.done_bytes for p in seen] == [1]
    clock.now += 0.6
    meter.update(3)
    assert [p.done_bytes for p in seen] == [1, 3]
    meter.update(4)
    meter.emit()
    assert [p.done_bytes for p in seen] == [1, 3, 4]
    assert seen[-1].eta_seconds is None  # no total, no ETA


def test_meter_keeps_written_and_detail_between_updates() -> None:
    clock = Clock()
    seen: list[Progress] = []
    meter = ProgressMeter("j", "p", seen.append, interval=0, clock=clock)
    meter.update(1, written=7, detail="d")
    meter.update(2)
    assert (seen[-1].written_bytes, seen[-1].detail) == (7, "d")


def test_no_rate_before_time_passes() -> None:
    clock = Clock()
    meter = ProgressMeter("j", "p", no_progress, total_bytes=10, clock=clock)
    meter.update(5)
    snap = meter.snapshot()
    assert snap.rate is None and snap.eta_seconds is None
