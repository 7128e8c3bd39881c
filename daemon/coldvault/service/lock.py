"""The one lock shared by the daemon and one-shot commands: one run touches the disk at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from coldvault.errors import Busy, ColdvaultError
from coldvault.system.cancel import CancelToken


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return "another coldvault process"
    return f"coldvault process {pid}" if pid else "another coldvault process"


@contextlib.contextmanager
def hold_lock(
    path: Path, *, wait: float | None = 0, cancel: CancelToken | None = None
) -> Iterator[None]:
    """Hold the lock at ``path`` for the block.

    ``wait``: 0 fails at once with Busy if another process holds it, None waits
    as long as it takes, a number waits that many seconds.
    """
    fd = open_locked(path, wait=wait, cancel=cancel)
    try:
        yield
    finally:
        os.close(fd)  # closing releases the flock


def open_locked(path: Path, *, wait: float | None = 0, cancel: CancelToken | None = None) -> int:
    """Take the lock at ``path`` (see :func:`hold_lock`); return its descriptor.

    The lock is held while any process has this descriptor (or a copy of it) open:
    ``coldvault mount`` hands it to its FUSE server, which holds it for its life.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ColdvaultError(
            f"cannot create the lock file {path}: {exc.strerror}",
            hint="set settings.lock_file to a writable path, or run as root",
        ) from exc
    try:
        _acquire(fd, path, wait, cancel)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


def _acquire(fd: int, path: Path, wait: float | None, cancel: CancelToken | None) -> None:
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                raise Busy(
                    f"busy: {_holder(path)} is using the backup disk (lock {path})",
                    hint="wait for it to finish, or pass --wait-lock SECONDS",
                ) from None
            if cancel is not None:
                cancel.check()
            time.sleep(0.2)
