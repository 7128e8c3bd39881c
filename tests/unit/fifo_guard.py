"""A guard for tests about FIFOs: a regression must fail the test, not hang the suite."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

GRACE = 60.0  # a failure bound, not a timing claim


@contextlib.contextmanager
def fifo_guard(fifo: Path) -> Iterator[list[bool]]:
    """Make ``fifo``; if code under test is still blocked on it after GRACE seconds,
    open its other end once to release it. Yields a list that holds True if the
    guard had to step in (the code blocked: the test must fail)."""
    os.mkfifo(fifo)
    stop = threading.Event()
    stepped_in: list[bool] = []

    def release() -> None:
        if stop.wait(GRACE):
            return
        for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
            try:
                os.close(os.open(fifo, flags))
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            else:
                stepped_in.append(True)
                return

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield stepped_in
    finally:
        stop.set()
        thread.join()
