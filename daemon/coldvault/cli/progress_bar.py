"""A progress bar on a terminal; nothing (the log says enough) elsewhere."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

from coldvault.log.console import end_open_line, mark_open_line
from coldvault.progress import Progress, ProgressCallback

__all__ = ["end_open_line", "progress_printer", "render"]


def render(p: Progress, width: int) -> str:
    """One line: a bar when the total is known, then the description."""
    text = p.describe()
    frac = p.fraction
    if frac is None:
        return text[:width]
    bar_width = max(10, min(30, width - len(text) - 10))
    filled = round(frac * bar_width)
    line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {frac * 100:5.1f}% {text}"
    return line[:width]


def progress_printer(stream: TextIO | None = None) -> ProgressCallback:
    """A callback drawing a one-line bar on ``stream`` (stderr) if it is a terminal."""
    out = stream or sys.stderr
    if not out.isatty():
        return lambda _: None

    def show(p: Progress) -> None:
        width = shutil.get_terminal_size((80, 20)).columns - 1
        out.write("\r" + render(p, width).ljust(width))
        out.flush()
        mark_open_line(out)  # the next log line (or result) ends this line first

    return show
