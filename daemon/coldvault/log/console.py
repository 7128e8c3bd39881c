"""Human-readable log lines on stderr, coloured when it is a terminal.

A progress bar redraws one unfinished line with ``\\r``. It tells this module
(:func:`mark_open_line`) and every log line ends it first (:func:`end_open_line`),
so a message never lands in the middle of the bar.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TextIO

_DIM, _YELLOW, _RED, _BOLD_RED = "\x1b[2m", "\x1b[33m", "\x1b[31m", "\x1b[1;31m"
_RESET = "\x1b[0m"


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ConsoleFormatter(logging.Formatter):
    """``coldvault: error: message``; info lines are the bare message."""

    def __init__(self, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        """One message (plus a traceback for unexpected exceptions)."""
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"coldvault: {record.levelname.lower()}: {text}"
        elif record.levelno < logging.INFO:
            text = f"debug: {record.name}: {text}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if self.color:
            color = _color(record.levelno)
            if color:
                text = f"{color}{text}{_RESET}"
        return text


_open_line_lock = threading.Lock()
_open_line: TextIO | None = None  # the stream whose last line is an unfinished progress bar


def mark_open_line(stream: TextIO) -> None:
    """``stream``'s current line is an unfinished progress line (no newline yet)."""
    global _open_line  # noqa: PLW0603 - one terminal, one open line: module state is the truth
    with _open_line_lock:
        _open_line = stream


def end_open_line(stream: TextIO | None = None) -> None:
    """End the unfinished progress line (of ``stream``, or of any stream) with a newline."""
    global _open_line  # noqa: PLW0603
    with _open_line_lock:
        line = _open_line
        if line is None or (stream is not None and line is not stream):
            return
        _open_line = None
    try:
        line.write("\n")
        line.flush()
    except (OSError, ValueError):  # closed terminal: nothing left to tidy
        pass


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that ends an open progress line before each record."""

    def emit(self, record: logging.LogRecord) -> None:
        """End the progress line, then write the record."""
        end_open_line(self.stream)
        super().emit(record)


def console_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler writing formatted lines to ``stream`` (stderr by default)."""
    out = stream or sys.stderr
    handler = ConsoleHandler(out)
    handler.setFormatter(ConsoleFormatter(color=use_color(out)))
    return handler


def _color(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return _BOLD_RED
    if levelno >= logging.ERROR:
        return _RED
    if levelno >= logging.WARNING:
        return _YELLOW
    return "" if levelno >= logging.INFO else _DIM
