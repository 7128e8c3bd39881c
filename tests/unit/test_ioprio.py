"""Idle I/O priority for the session thread, set and put back for real (ioprio_set)."""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from collections.abc import Callable

import psutil
import pytest

from coldvault.platform.ioprio import current_io_class, idle_io


def _in_thread(fn: Callable[[], object]) -> object:
    """Run ``fn`` in a fresh thread (the I/O priority is per thread) and return its result."""
    out: list[object] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return out[0]


_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}


def _ioprio_set(ioclass: int, level: int) -> None:
    """``ioprio_set`` for the calling thread as systemd does it: any class with a level.

    psutil refuses a level with the idle class, so the raw system call is needed to
    start from the state ``IOSchedulingClass=idle`` leaves (idle, level 4).
    """
    number = _IOPRIO_SET.get(platform.machine())
    assert number is not None, f"no ioprio_set number known for {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    who_process = 1
    if libc.syscall(number, who_process, threading.get_native_id(), (ioclass << 13) | level):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.mark.parametrize(
    ("start", "level"),
    [("IOPRIO_CLASS_BE", 4), ("IOPRIO_CLASS_IDLE", 4), ("IOPRIO_CLASS_IDLE", 0)],
)
def test_idle_io_sets_idle_and_puts_back_any_class(start: str, level: int) -> None:
    """A thread already at idle (a unit with IOSchedulingClass=idle: level 4) is put back."""
    ioclass = int(getattr(psutil, start))

    def body() -> tuple[int | None, int | None, int | None]:
        _ioprio_set(ioclass, level)
        before = current_io_class()
        with idle_io() as idle:
            assert idle
            inside = current_io_class()
        return before, inside, current_io_class()

    before, inside, after = _in_thread(body)  # type: ignore[misc]
    assert inside == psutil.IOPRIO_CLASS_IDLE
    assert after == before == ioclass
