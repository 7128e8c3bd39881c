"""Work on a worker thread, which a stop request can leave behind inside a call that hangs.

The calling thread only waits and polls the :class:`CancelToken`; the work checks the
token at its own safe points and ends (and cleans up) as usual. Only when the work has
been inside a guarded call (a read of the source that never returns: a dead disk, a FUSE
server that never answers) for :data:`HANG_SECONDS` after a stop request does the caller
stop waiting. The worker is then abandoned: when its call returns it raises
:class:`Abandoned` and touches nothing more, because the caller may have closed the
descriptors it used (and their numbers may already name other files).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault")

T = TypeVar("T")

POLL_SECONDS = 0.25  # how soon the caller notices a stop request
HANG_SECONDS = 2.0  # a guarded call this long after a stop request is taken as hung


class Abandoned(BaseException):
    """The caller gave up on this worker: end without touching anything."""


class Guard:
    """Marks the calls a worker may hang in; the caller abandons the worker only inside one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current guarded call began
        self._abandoned = False

    @property
    def abandoned(self) -> bool:
        """Whether the caller gave up on the worker (its clean-up is then the caller's)."""
        return self._abandoned

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)``; raises :class:`Abandoned` instead if the caller gave up meanwhile."""
        with self._lock:
            if self._abandoned:
                raise Abandoned
            self._since = time.monotonic()
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._since = None
                if self._abandoned:
                    raise Abandoned  # whatever the call did: the caller has left

    def abandon_if_stuck(self, seconds: float) -> bool:
        """Give up on the worker if it has been inside a guarded call for ``seconds``."""
        with self._lock:
            if self._since is None or time.monotonic() - self._since < seconds:
                return False
            self._abandoned = True
            return True

    def abandon(self) -> bool:
        """Give up at the worker's next guarded call; True if it is inside one now."""
        with self._lock:
            self._abandoned = True
            return self._since is not None


class _Outcome(Generic[T]):
    """What the worker returned or raised."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: list[T] = []
        self.error: BaseException | None = None

    def run(self, fn: Callable[[], T]) -> None:
        try:
            self.value.append(fn())
        except Abandoned:
            pass
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            self.done.set()


def run_beside(fn: Callable[[], T], cancel: CancelToken, guard: Guard, name: str) -> T:
    """``fn()`` on a worker thread; the caller waits, ending early if it hangs after a stop.

    Raises what ``fn`` raised, or :class:`~coldvault.errors.Cancelled` when the worker was
    abandoned inside a guarded call (``guard.abandoned`` is then True).
    """
    outcome: _Outcome[T] = _Outcome()
    threading.Thread(target=outcome.run, args=(fn,), name=name, daemon=True).start()
    try:
        while not outcome.done.wait(POLL_SECONDS):
            if cancel.cancelled and guard.abandon_if_stuck(HANG_SECONDS):
                log.warning("%s: a read has not returned; not waiting for it", name)
                cancel.check()
    except BaseException:
        # Leaving (e.g. KeyboardInterrupt): the worker must be done, or parked in a guarded
        # call it will leave without touching anything, before the caller closes its files.
        while not guard.abandon() and not outcome.done.wait(POLL_SECONDS):
            pass
        raise
    if outcome.error is not None:
        raise outcome.error
    return outcome.value[0]
