"""Cancellation: a flag that long-running work checks at its safe points."""

from __future__ import annotations

import threading

from coldvault.errors import Cancelled


class CancelToken:
    """A flag that long-running work checks at safe points; thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "stop requested"

    def cancel(self, reason: str = "stop requested") -> None:
        """Ask the work to stop at its next safe point."""
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether a stop was requested."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if a stop was requested."""
        if self._event.is_set():
            raise Cancelled(f"cancelled: {self.reason}")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early if cancelled."""
        return self._event.wait(seconds)
