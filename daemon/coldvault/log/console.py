"""Human-readable log lines on stderr, coloured when it is a terminal."""

from __future__ import annotations

import logging
import os
import sys
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


def console_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler writing formatted lines to ``stream`` (stderr by default)."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
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
