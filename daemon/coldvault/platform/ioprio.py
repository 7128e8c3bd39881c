"""Idle I/O priority for the calling thread (Linux), so scheduled work yields to everyone.

Linux keeps an I/O priority per thread; the daemon reads in its session thread,
so that thread is set (``ioprio_set`` through psutil on the thread's id) and
put back afterwards. Child processes started meanwhile inherit it. Where the
system has no I/O classes (macOS) this does nothing and says so in the debug log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import psutil

log = logging.getLogger("coldvault.platform")


@contextlib.contextmanager
def idle_io() -> Iterator[bool]:
    """Run the block at idle I/O priority; yields whether that could be set."""
    idle = getattr(psutil, "IOPRIO_CLASS_IDLE", None)
    try:
        thread = psutil.Process(threading.get_native_id())
        old = thread.ionice()
        thread.ionice(idle)
    except (psutil.Error, OSError, AttributeError, TypeError, ValueError) as exc:
        log.debug("idle I/O priority not available here: %s", exc)
        yield False
        return
    try:
        yield True
    finally:
        # Only the realtime and best-effort classes take a level: psutil refuses one for
        # the others (a unit with IOSchedulingClass=idle starts the thread at idle).
        levelled = tuple(getattr(psutil, f"IOPRIO_CLASS_{c}", None) for c in ("RT", "BE"))
        value = old.value if old.ioclass in levelled else None
        try:
            thread.ionice(old.ioclass, value)
        except (psutil.Error, OSError, ValueError) as exc:
            log.warning("could not restore the I/O priority: %s", exc)


def current_io_class() -> int | None:
    """The calling thread's I/O class (psutil.IOPRIO_CLASS_*), None where there is none."""
    try:
        return int(psutil.Process(threading.get_native_id()).ionice().ioclass)
    except (psutil.Error, OSError, AttributeError):
        return None
