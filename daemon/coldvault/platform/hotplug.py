"""Disk appearance: what wakes the daemon to look for the backup disk again.

Linux with a running udevd: block-device events from the udev netlink socket
(``pyudev``), so a plugged disk is noticed within a second. Elsewhere (no
udevd, macOS): polling the device path every ``poll_seconds``. Either way the
daemon decides presence with ``DiskStack.is_present()``; a watcher only says
*when* to look.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("coldvault.hotplug")

UDEV_CONTROL = Path("/run/udev/control")  # exists while systemd-udevd runs
UDEV_RECHECK_SECONDS = 60.0  # safety net: look anyway now and then


class PollingWatcher:
    """No events: the loop re-checks the disk every ``recheck_seconds``."""

    def __init__(self, poll_seconds: float) -> None:
        self.recheck_seconds = poll_seconds
        self.description = f"polling every {poll_seconds:g} s"

    def fileno(self) -> int | None:
        """No descriptor to wait on."""
        return None

    def drain(self) -> bool:
        """Never any event."""
        return False

    def close(self) -> None:
        """Nothing to release."""


class UdevWatcher:
    """Block-device uevents from udev's netlink socket."""

    def __init__(self, monitor: Any, poll_seconds: float) -> None:
        self._monitor = monitor
        self.recheck_seconds = max(poll_seconds, UDEV_RECHECK_SECONDS)
        self.description = "udev block events"

    def fileno(self) -> int | None:
        """The netlink socket: readable when events are pending."""
        fd: int = self._monitor.fileno()
        return fd

    def drain(self) -> bool:
        """Consume pending events; True if any block device changed."""
        seen = False
        while True:
            device = self._monitor.poll(timeout=0)
            if device is None:
                return seen
            log.debug("udev: %s %s", device.action, device.device_node or device.sys_path)
            seen = True

    def close(self) -> None:
        """Stop listening."""
        sock = getattr(self._monitor, "_socket", None)
        if sock is not None:
            sock.close()


DiskWatcher = PollingWatcher | UdevWatcher


def disk_watcher(poll_seconds: float, *, use_udev: bool | None = None) -> DiskWatcher:
    """The best watcher this system offers (udev events on Linux, else polling)."""
    if use_udev is None:
        use_udev = sys.platform.startswith("linux") and UDEV_CONTROL.exists()
    if use_udev:
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by("block")
            monitor.start()
            return UdevWatcher(monitor, poll_seconds)
        except Exception as exc:  # ImportError, OSError: no netlink here
            log.info("udev events unavailable (%s); polling for the disk instead", exc)
    return PollingWatcher(poll_seconds)
