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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_line_ends_the_progress_line_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from coldvault.cli.progress_bar import progress_printer
    from coldvault.log.console import end_open_line
    from coldvault.progress import Progress

    monkeypatch.setenv("NO_COLOR", "1")
    term = _Terminal()
    logger = logging.getLogger("coldvault.test.progressline")
    logger.propagate = False
    handler = console_handler(term)
    logger.addHandler(handler)
    try:
        show = progress_printer(term)
        show(Progress("img", "reading", 1, 4))
        show(Progress("img", "reading", 2, 4))
        logger.warning("part 7 unreadable")
        logger.warning("and again")  # no progress line in between: no blank line
        show(Progress("img", "reading", 3, 4))
        end_open_line()
        end_open_line()  # a second call adds nothing
    finally:
        logger.removeHandler(handler)
    lines = term.getvalue().split("\n")
    assert lines[0].startswith("\r[") and "50.0%" in lines[0].split("\r")[-1]
    assert lines[1:3] == ["coldvault: warning: part 7 unreadable", "coldvault: warning: and again"]
    assert lines[3].startswith("\r[") and "75.0%" in lines[3]
    assert lines[4:] == [""]


def test_no_progress_bar_no_extra_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    from coldvault.log.console import end_open_line

    monkeypatch.setenv("NO_COLOR", "1")
    term = _Terminal()
    handler = console_handler(term)
    handler.emit(record(logging.INFO, "one"))
    end_open_line(term)
    assert term.getvalue() == "one\n"
