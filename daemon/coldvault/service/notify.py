"""systemd's notify protocol (``Type=notify``) through ``sdnotify``.

Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing. ``WATCHDOG=1``
is sent only by :meth:`Notifier.watchdog`, which the daemon's main loop calls
each turn: when the loop stops turning, the pings stop and systemd restarts us.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import sdnotify


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is armed for this process."""
    env = dict(os.environ) if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """READY / STATUS / WATCHDOG / STOPPING / EXTEND_TIMEOUT_USEC for one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sd = sdnotify.SystemdNotifier() if self.enabled else None
        if self._sd is not None and self._sd.socket is not None:
            # A full receive queue must never block the main loop: drop the message instead.
            self._sd.socket.setblocking(False)
        self.watchdog_every = watchdog_interval()
        # Like sd_notify(unset_environment=1): children (hooks, systemd-inhibit) must not
        # inherit the socket and send their own READY=/ERRNO= as if they were us.
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)
        self._clock = clock
        self._last_ping = float("-inf")
        self._status: str | None = None

    def _send(self, message: str) -> None:
        if self._sd is not None:
            self._sd.notify(message)

    def ready(self, status: str) -> None:
        """Startup finished: config loaded, disk watcher running."""
        self._status = status
        self._send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        """One line saying what the daemon does now (sent only when it changed)."""
        text = text.replace("\n", " ")
        if text != self._status:
            self._status = text
            self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping the watchdog if half its timeout has passed since the last ping."""
        if self.watchdog_every is None:
            return
        now = self._clock()
        if now - self._last_ping >= self.watchdog_every:
            self._last_ping = now
            self._send("WATCHDOG=1")

    def seconds_to_watchdog(self) -> float | None:
        """How long the loop may sleep before the next ping is owed."""
        if self.watchdog_every is None:
            return None
        return max(0.0, self._last_ping + self.watchdog_every - self._clock())

    def stopping(self, status: str = "stopping") -> None:
        """Shutdown has begun."""
        self._status = status
        self._send(f"STOPPING=1\nSTATUS={status}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask systemd for ``seconds`` more before it kills a slow stop."""
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")
