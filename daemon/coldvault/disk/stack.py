"""The backup disk stack: optional layers opened in order, closed in reverse.

Each layer knows whether it found itself already open; :meth:`DiskStack.close`
closes only what this stack opened ("leave it as found"), and a failure in one
teardown step does not skip the others. :meth:`DiskStack.open` verifies the
mount and the token before it returns the backup root; when anything fails it
tears down what it opened before raising.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from coldvault.config.model import DiskConfig
from coldvault.disk import device, token
from coldvault.disk.layers import Layer, LayerStatus
from coldvault.disk.luks import LuksLayer
from coldvault.disk.lvm import LvmLayer
from coldvault.disk.mdadm import ArrayHealth, MdLayer
from coldvault.disk.mount import MountLayer, fstab_entry
from coldvault.errors import (
    ColdvaultError,
    ConfigError,
    DiskAbsent,
    DiskError,
    TokenRejected,
    describe_os_error,
)
from coldvault.events import Event, emit
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.disk")


def build_layers(disk: DiskConfig, cancel: CancelToken) -> list[Layer]:
    """The configured layers, bottom first; each gets the device of the one below."""
    layers: list[Layer] = []
    below: Path | None = disk.device
    if disk.array is not None:
        members = (disk.device,) if disk.device is not None else ()
        layers.append(MdLayer(disk.array, members=members, cancel=cancel))
        below = disk.array.device
    if disk.luks is not None:
        source = disk.luks.device or below
        if source is None:
            raise ConfigError(
                "disk.luks has no device to open",
                hint="set disk.luks.device, disk.device or disk.array",
            )
        luks = LuksLayer(disk.luks, source, cancel=cancel)
        layers.append(luks)
        below = luks.device
    if disk.lvm is not None:
        lvm = LvmLayer(disk.lvm, cancel=cancel)
        layers.append(lvm)
        below = lvm.device
    if disk.mount.require_mount:
        layers.append(MountLayer(disk.mount, below, cancel=cancel))
    return layers


class DiskStack:
    """Bring the backup disk described by ``disk`` up and down."""

    def __init__(self, disk: DiskConfig, *, cancel: CancelToken | None = None) -> None:
        self.disk = disk
        self.cancel = cancel or CancelToken()
        self.layers: list[Layer] = build_layers(disk, self.cancel)

    # -- presence -----------------------------------------------------------------

    def presence_path(self) -> Path | None:
        """The device whose existence means "the disk is attached", if one is known."""
        if self.disk.device is not None:
            return self.disk.device
        if self.disk.array is not None:
            return self.disk.array.device
        if self.disk.luks is not None and self.disk.luks.device is not None:
            return self.disk.luks.device
        if self.disk.mount.device is not None:
            return self.disk.mount.device
        entry = fstab_entry(self.disk.mount.point) if self.disk.mount.require_mount else None
        return entry.device() if entry is not None else None

    def is_present(self) -> bool:
        """Whether the backup disk (or the plain backup folder) is there."""
        path = self.presence_path()
        if path is not None:
            return device.exists(path)
        return self.disk.mount.point.is_dir()

    def wait(self, seconds: float | None) -> None:
        """Return once the disk is present; DiskAbsent after ``seconds`` (None: forever)."""
        path = self.presence_path()
        if path is not None:
            device.wait_for(path, seconds, cancel=self.cancel)
            return
        if not self.is_present():
            # Nothing to poll for but the folder itself.
            raise DiskAbsent(
                f"backup folder {self.disk.mount.point} does not exist",
                hint="create it, or set disk.device so coldvault knows what to wait for",
            )

    # -- open / close -------------------------------------------------------------

    @property
    def opened_layers(self) -> list[str]:
        """Names of the layers this stack opened (what :meth:`close` will close)."""
        return [layer.name for layer in self.layers if layer.opened_by_us]

    def open(self, *, verify_token: bool = True) -> Path:
        """Open every layer, verify the mount and the token; return the backup root.

        On any failure (wrong token, a layer that does not open, a stop request)
        the layers opened so far are closed again before the error is raised.
        ``verify_token=False`` is for ``coldvault token init`` alone: it writes the
        first token of a new disk, which has none to check yet.
        """
        point = self.disk.mount.point
        try:
            self.cancel.check()
            if not self.disk.mount.require_mount and not point.is_dir():
                raise DiskError(f"backup folder {point} does not exist", hint="create it")
            below_opened = False
            for layer in self.layers:
                self.cancel.check()
                layer.open()
                if below_opened and layer.is_open():
                    # It could not have been up before we opened the layer below it:
                    # udev's event activation (LVM autoactivation, an automount) opened
                    # it as a consequence of our step, so it is ours to close.
                    layer.opened_by_us = True
                below_opened = below_opened or layer.opened_by_us
            if self.disk.token is not None and verify_token:
                token.verify(point, self.disk.token)
        except TokenRejected as exc:
            emit(
                log,
                Event.TOKEN_REJECTED,
                f"backup disk rejected, nothing written: {exc}",
                level=logging.ERROR,
                mount_point=str(point),
            )
            exc.reported = True
            self._close_after_failure()
            raise
        except BaseException:
            self._close_after_failure()
            raise
        opened = self.opened_layers
        emit(
            log,
            Event.DISK_OPENED,
            f"backup disk open at {point}"
            + (f" (opened: {', '.join(opened)})" if opened else " (was already open)")
            + ("" if verify_token else "; token not checked, to write one"),
            mount_point=str(point),
            opened_layers=",".join(opened),
        )
        self._report_health()
        return point

    def _report_health(self) -> None:
        health = self.array_health()
        if health is None or not (health.is_degraded or health.is_syncing):
            return
        emit(
            log,
            Event.DISK_DEGRADED,
            f"backup array {health.device}: {health.summary()}",
            level=logging.WARNING,
            array=health.device,
            degraded=health.degraded,
            sync_action=health.sync_action,
        )

    def _close_after_failure(self) -> None:
        # The original failure is what the caller raises; a teardown failure was
        # already reported by close() (DISK_ERROR), so it is not logged again.
        with contextlib.suppress(ColdvaultError):
            self.close()

    def adopt(self, names: Iterable[str]) -> None:
        """Treat the named layers as opened by this stack (from an earlier ``coldvault open``)."""
        wanted = set(names)
        for layer in self.layers:
            if layer.name in wanted and layer.is_open():
                layer.opened_by_us = True

    def adopt_all_open(self) -> None:
        """Treat every configured layer that is open as ours (an explicit ``close``)."""
        self.adopt(layer.name for layer in self.layers)
        # An array that exists but is inactive (half assembled) is closed as well.
        for layer in self.layers:
            if isinstance(layer, MdLayer) and layer.health() is not None:
                layer.opened_by_us = True

    def close(self) -> None:
        """Close, in reverse, the layers this stack opened; every step is attempted.

        A layer marked ours that is not up (its open failed before anything was
        made) is forgotten, not reported as closed. Success is the DISK_CLOSED
        event (the disk may be unplugged); any failed step is one DISK_ERROR event
        naming every step, and one DiskError (marked ``reported``) after all were
        tried.
        """
        errors: list[str] = []
        hints: list[str] = []
        closed: list[str] = []
        for layer in reversed(self.layers):
            if not layer.opened_by_us:
                continue
            if not _anything_to_close(layer):
                layer.opened_by_us = False
                continue
            try:
                layer.close()
            except (ColdvaultError, OSError) as exc:
                error = exc if isinstance(exc, ColdvaultError) else describe_os_error(exc)
                errors.append(f"{layer.name}: {error.message}")
                if error.hint:
                    hints.append(error.hint)
                continue
            layer.opened_by_us = False
            closed.append(layer.name)
        if not errors:
            if closed:
                emit(
                    log,
                    Event.DISK_CLOSED,
                    f"backup disk closed ({', '.join(closed)}); it may be unplugged",
                    closed_layers=",".join(closed),
                )
            return
        failure = DiskError(
            "teardown incomplete, do not unplug the backup disk: "
            + "; ".join(errors)
            + (f" (closed: {', '.join(closed)})" if closed else ""),
            hint="; ".join([*hints, "then run `coldvault close` again"]),
        )
        emit(
            log,
            Event.DISK_ERROR,
            str(failure),
            level=logging.ERROR,
            closed_layers=",".join(closed),
            failed_layers=",".join(e.split(":", 1)[0] for e in errors),
            phase="close",
        )
        failure.reported = True
        raise failure

    # -- status -------------------------------------------------------------------

    def array_health(self) -> ArrayHealth | None:
        """Health of the md array, when there is one and it runs."""
        for layer in self.layers:
            if isinstance(layer, MdLayer):
                return layer.health()
        return None

    def status(self) -> list[LayerStatus]:
        """Per layer: present, open, details (array health, free space)."""
        result = [layer.status() for layer in self.layers]
        if not self.disk.mount.require_mount:
            point = self.disk.mount.point
            detail: dict[str, object] = {}
            if point.is_dir():
                st = os.statvfs(point)
                detail = {
                    "free_bytes": st.f_bavail * st.f_frsize,
                    "size_bytes": st.f_blocks * st.f_frsize,
                }
            result.append(LayerStatus("folder", str(point), point.is_dir(), point.is_dir(), detail))
        return result


def _anything_to_close(layer: Layer) -> bool:
    """Whether ``layer`` is up in any form (an inactive, half-assembled array counts)."""
    if isinstance(layer, MdLayer):
        health = layer.health()
        return health is not None and health.array_state != "clear"
    return layer.is_open()
