"""The backup disk stack: optional layers opened in order, closed in reverse.

Each layer knows whether it found itself already open; :meth:`DiskStack.close`
closes only what this stack opened ("leave it as found"), and a failure in one
teardown step does not skip the others.
"""

from __future__ import annotations

import logging
from pathlib import Path

from coldvault.config.model import DiskConfig
from coldvault.errors import DiskAbsent, DiskError
from coldvault.system.proc import CancelToken

log = logging.getLogger("coldvault.disk")


class DiskStack:
    """Bring the backup disk described by ``disk`` up and down."""

    def __init__(self, disk: DiskConfig, *, cancel: CancelToken | None = None) -> None:
        self.disk = disk
        self.cancel = cancel or CancelToken()

    def is_present(self) -> bool:
        """Whether the backup disk (or the plain backup folder) is there."""
        if self.disk.device is not None:
            return self.disk.device.exists()
        return self.disk.mount.point.is_dir() or self.disk.mount.require_mount

    def wait(self, seconds: float | None) -> None:
        """Return once the disk is present; DiskAbsent after ``seconds`` (None: forever)."""
        waited = 0.0
        while not self.is_present():
            if seconds is not None and waited >= seconds:
                raise DiskAbsent(
                    f"backup disk {self.disk.device or self.disk.mount.point} is not attached",
                    hint="plug it in, or pass --wait SECONDS to wait for it",
                )
            if self.cancel.wait(0.5):
                self.cancel.check()
            waited += 0.5

    def open(self) -> Path:
        """Open every layer, verify the token; return the backup root."""
        point = self.disk.mount.point
        if not self.disk.mount.require_mount:
            if not point.is_dir():
                raise DiskError(f"backup folder {point} does not exist", hint="create it")
            return point
        raise DiskError("the disk layers are not implemented yet")

    def close(self) -> None:
        """Close, in reverse, the layers this stack opened."""
