"""Console log lines: plain for humans, coloured only on a real terminal."""

from __future__ import annotations

import io
import logging
import os

import pytest

from coldvault.log.console import ConsoleFormatter, console_handler, use_color


def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad value")
        except ValueError as e:
            exc_info = (type(e), e, e.__traceback__)
    return logging.LogRecord("coldvault.x", level, __file__, 1, msg, (), exc_info)


def test_plain_lines() -> None:
    fmt = ConsoleFormatter()
    assert fmt.format(record(logging.INFO, "backed up root")) == "backed up root"
    assert fmt.format(record(logging.WARNING, "slow")) == "coldvault: warning: slow"
    assert fmt.format(record(logging.ERROR, "failed")) == "coldvault: error: failed"
    assert fmt.format(record(logging.DEBUG, "argv")) == "debug: coldvault.x: argv"


def test_exception_is_appended() -> None:
    text = ConsoleFormatter().format(record(logging.ERROR, "crash", exc=True))
    assert text.startswith("coldvault: error: crash\nTraceback")
    assert text.endswith("ValueError: bad value")


def test_colour_codes() -> None:
    fmt = ConsoleFormatter(color=True)
    assert fmt.format(record(logging.ERROR, "e")) == "\x1b[31mcoldvault: error: e\x1b[0m"
    assert fmt.format(record(logging.WARNING, "w")).startswith("\x1b[33m")
    assert fmt.format(record(logging.INFO, "i")) == "i"


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert not use_color(io.StringIO())
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert use_color(tty)  # type: ignore[arg-type]
            monkeypatch.setenv("NO_COLOR", "1")
            assert not use_color(tty)  # type: ignore[arg-type]
    finally:
        os.close(leader)
        os.close(follower)


def test_handler_writes_to_stream() -> None:
    out = io.StringIO()
    log = logging.getLogger("coldvault.test-console")
    handler = console_handler(out)
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info("one")
        log.debug("hidden")
        log.error("two")
    finally:
        log.removeHandler(handler)
    assert out.getvalue() == "one\ncoldvault: error: two\n"
