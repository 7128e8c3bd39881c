"""The LVM layer: activate exactly one logical volume, and later deactivate only it.

The original script ran ``vgchange -an`` on the whole volume group; other
volumes of that group that somebody else activated are left alone here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from coldvault.config.model import LvmConfig
from coldvault.disk.layers import QUICK_TIMEOUT, SLOW_TIMEOUT, LayerStatus, settle
from coldvault.errors import CommandError, DiskError
from coldvault.system import proc
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.disk.lvm")


def mapper_path(vg: str, lv: str) -> Path:
    """The device-mapper node of ``vg/lv`` (device-mapper doubles hyphens in names)."""
    return Path("/dev/mapper") / f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


class LvmLayer:
    """Activate (and later deactivate) one logical volume."""

    name = "lvm"

    def __init__(self, config: LvmConfig, *, cancel: CancelToken | None = None) -> None:
        self.config = config
        self.cancel = cancel or CancelToken()
        self.opened_by_us = False

    @property
    def lv(self) -> str:
        """``vg/lv`` as LVM commands take it."""
        return f"{self.config.vg}/{self.config.lv}"

    @property
    def device(self) -> Path:
        """The logical volume's block device."""
        return mapper_path(self.config.vg, self.config.lv)

    def is_open(self) -> bool:
        """Whether the logical volume is active."""
        return os.path.exists(self.device)

    def open(self) -> None:
        """Activate the logical volume (only it, not the whole group)."""
        if self.is_open():
            return
        log.info("activating logical volume %s", self.lv)
        self.opened_by_us = True  # teardown checks is_open(), so a failed attempt is harmless
        try:
            proc.run(["lvchange", "-ay", self.lv], timeout=SLOW_TIMEOUT, cancel=self.cancel)
        except CommandError as exc:
            raise DiskError(
                f"could not activate logical volume {self.lv}: {exc.message}",
                hint="check disk.lvm.vg and disk.lvm.lv against `lvs`",
            ) from exc
        settle(self.cancel)
        if not self.is_open():
            raise DiskError(f"logical volume {self.lv} was activated but {self.device} is missing")

    def close(self) -> None:
        """Deactivate the logical volume."""
        if not self.is_open():
            return
        try:
            # No cancel token: teardown runs after a stop request too.
            proc.run(["lvchange", "-an", self.lv], timeout=QUICK_TIMEOUT)
        except CommandError as exc:
            raise DiskError(
                f"could not deactivate logical volume {self.lv}: {exc.message}",
                hint="something still uses it: is it mounted elsewhere?",
            ) from exc

    def status(self) -> LayerStatus:
        """Present/open."""
        return LayerStatus(self.name, self.lv, present=self.is_open(), open=self.is_open())
