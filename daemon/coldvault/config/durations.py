"""Durations as people write them: ``30s``, ``15m``, ``6h``, ``1d``, ``1w``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import time, timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"(?:\d+\s*[smhdw]\s*)+")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")

DURATION_FORMS = "a duration with units such as 30s, 15m, 6h, 1d, 1w or 1h30m"
MAX_DURATION = timedelta(days=36525)  # 100 years: anything longer is a typo
_MAX_DIGITS = 12  # more digits than any duration below MAX_DURATION needs


def parse_duration(text: str) -> timedelta:
    """The ``timedelta`` ``text`` stands for; ValueError with a user message otherwise."""
    raw = text.strip().lower()
    if raw.startswith("-"):
        raise ValueError(f"found {_shown(text)}, expected a positive duration ({DURATION_FORMS})")
    if not raw or not _WHOLE.fullmatch(raw):
        raise ValueError(f"found {_shown(text)}, expected {DURATION_FORMS}")
    parts = _PART.findall(raw)
    too_long = f"found {_shown(text)}, expected at most 100 years ({MAX_DURATION.days}d)"
    if any(len(n.lstrip("0")) > _MAX_DIGITS for n, _ in parts):
        raise ValueError(too_long)
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"found {text!r}, expected a duration longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(too_long)
    return timedelta(seconds=seconds)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def format_duration(delta: timedelta) -> str:
    """The compact form parse_duration reads back: ``1d``, ``1h30m``, ``45s``."""
    seconds = int(delta.total_seconds())
    out = ""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def parse_time_of_day(text: str) -> time:
    """A local wall-clock time ``HH:MM`` (24-hour); ValueError otherwise."""
    match = _TIME.fullmatch(text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"found {text!r}, expected a time of day HH:MM between 00:00 and 23:59")
    return time(int(match[1]), int(match[2]))
