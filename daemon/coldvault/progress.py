"""The one progress protocol shared by every job.

Jobs call a :data:`ProgressCallback` with :class:`Progress` snapshots; the CLI
turns them into a progress bar, the daemon into ``STATUS=`` lines, journal
fields and the runtime status file. :class:`ProgressMeter` computes rate and
ETA and throttles how often the callback fires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Progress:
    """How far one job has come."""

    job: str
    phase: str  # "reading", "sending", "restoring", "verifying", ...
    done_bytes: int
    total_bytes: int | None = None
    written_bytes: int = 0
    rate: float | None = None  # bytes per second
    eta_seconds: float | None = None
    detail: str = ""  # e.g. "part 12 of 40, 3 changed"
    total_is_estimate: bool = False  # e.g. a btrfs send's size, guessed from the last send

    @property
    def fraction(self) -> float | None:
        """Done as a fraction of the total, when the total is known."""
        if not self.total_bytes:
            return None
        return min(1.0, self.done_bytes / self.total_bytes)

    def describe(self) -> str:
        """One line for humans: ``home: sending 1.2 GiB of 4.0 GiB, 180 MB/s, ETA 0:00:16``."""
        text = f"{self.job}: {self.phase} {human_bytes(self.done_bytes)}"
        if self.total_bytes is not None:
            about = "about " if self.total_is_estimate else ""
            text += f" of {about}{human_bytes(self.total_bytes)}"
        if self.rate:
            text += f", {self.rate / 1e6:.0f} MB/s"
        if self.eta_seconds is not None:
            text += f", ETA {format_duration(self.eta_seconds)}"
        if self.detail:
            text += f" ({self.detail})"
        return text


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """A callback that ignores progress."""


def human_bytes(n: float) -> str:
    """Binary units: ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``H:MM:SS``."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressMeter:
    """Turns running byte counts into throttled :class:`Progress` callbacks."""

    def __init__(
        self,
        job: str,
        phase: str,
        callback: ProgressCallback,
        total_bytes: int | None = None,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        *,
        estimate: bool = False,
    ) -> None:
        self.job, self.phase, self.total = job, phase, total_bytes
        self.estimate = estimate  # the total is a guess: never shown below what is done
        self._cb, self._interval, self._clock = callback, interval, clock
        self._start = clock()
        self._last_emit = float("-inf")
        self.done = 0
        self.written = 0
        self.detail = ""

    def update(self, done: int, written: int | None = None, detail: str | None = None) -> None:
        """Record progress; calls back at most once per interval."""
        self.done = done
        if written is not None:
            self.written = written
        if detail is not None:
            self.detail = detail
        if self._clock() - self._last_emit >= self._interval:
            self.emit()

    def snapshot(self) -> Progress:
        """The current progress, with rate and ETA."""
        elapsed = self._clock() - self._start
        rate = self.done / elapsed if elapsed > 0 and self.done else None
        total = self.total
        if self.estimate and total is not None:
            total = max(total, self.done)
        eta = None
        if rate and total is not None:
            eta = max(0.0, (total - self.done) / rate)
        return Progress(
            self.job,
            self.phase,
            self.done,
            total,
            self.written,
            rate,
            eta,
            self.detail,
            total_is_estimate=self.estimate and total is not None,
        )

    def emit(self) -> None:
        """Call back now, whatever the interval."""
        self._last_emit = self._clock()
        self._cb(self.snapshot())


def format_age(delta: timedelta) -> str:
    """A short duration for humans: ``40s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d {h}h" if h else f"{d}d"
