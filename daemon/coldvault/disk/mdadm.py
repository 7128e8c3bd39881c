"""The mdadm layer: assemble the backup array, or adopt it when it already runs.

udev's incremental assembly may have started the array ``auto-read-only``
("read-auto") or left it ``inactive`` when the disk was plugged in; both are
handled. A RAID1 created with a ``missing`` member assembles degraded; that is
allowed (unless ``allow_degraded: false``) and reported as array health.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from coldvault.config.model import ArrayConfig
from coldvault.disk.layers import QUICK_TIMEOUT, SLOW_TIMEOUT, LayerStatus, settle
from coldvault.errors import CommandError, DiskError
from coldvault.system import proc
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.disk.mdadm")

SYS_BLOCK = Path("/sys/block")
# array_state values of an array that is not running.
_STOPPED_STATES = {"clear", "inactive", ""}


@dataclass(frozen=True)
class ArrayHealth:
    """The state of a running array, read from sysfs."""

    device: str  # kernel name, e.g. md127
    level: str
    array_state: str  # clean, active, read-auto, readonly, inactive...
    raid_disks: int
    degraded: int  # number of missing members
    sync_action: str  # idle, resync, recover, check, repair (or "" for raid0/linear)
    sync_completed: str  # "done / total" sectors, or "none"
    members: tuple[str, ...]

    @property
    def is_degraded(self) -> bool:
        """Whether a member is missing."""
        return self.degraded > 0

    @property
    def is_syncing(self) -> bool:
        """Whether a resync/recovery runs."""
        return self.sync_action not in ("idle", "")

    def as_dict(self) -> dict[str, object]:
        """For ``disk status --json`` and journal fields."""
        return {
            "device": self.device,
            "level": self.level,
            "array_state": self.array_state,
            "raid_disks": self.raid_disks,
            "degraded": self.degraded,
            "sync_action": self.sync_action,
            "sync_completed": self.sync_completed,
            "members": list(self.members),
        }

    def summary(self) -> str:
        """One line for humans."""
        text = f"{self.level} {self.array_state}, {self.raid_disks - self.degraded}/"
        text += f"{self.raid_disks} members ({', '.join(self.members) or 'none'})"
        if self.is_degraded:
            text += f", DEGRADED ({self.degraded} missing)"
        if self.is_syncing:
            text += f", {self.sync_action} {self.sync_completed}"
        return text


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def kernel_name(device: Path) -> str | None:
    """``md127`` for ``/dev/md/backup`` (a symlink), or None when it does not exist."""
    if not os.path.exists(device):
        return None
    return os.path.basename(os.path.realpath(device))


def health(name: str) -> ArrayHealth | None:
    """Health of the md device ``name`` (``md127``) from sysfs, None if not an array."""
    md = SYS_BLOCK / name / "md"
    if not md.is_dir():
        return None
    members = sorted(
        os.path.basename(os.path.realpath(link / "block"))
        for link in md.glob("dev-*")
        if (link / "block").exists()
    )
    degraded = _read(md / "degraded")
    raid_disks = _read(md / "raid_disks")
    return ArrayHealth(
        device=name,
        level=_read(md / "level"),
        array_state=_read(md / "array_state"),
        raid_disks=int(raid_disks) if raid_disks.isdigit() else 0,
        degraded=int(degraded) if degraded.isdigit() else 0,
        sync_action=_read(md / "sync_action"),
        sync_completed=_read(md / "sync_completed"),
        members=tuple(members),
    )


class MdLayer:
    """Assemble (and later stop) one md array."""

    name = "array"

    def __init__(
        self,
        config: ArrayConfig,
        *,
        members: tuple[Path, ...] = (),
        cancel: CancelToken | None = None,
    ) -> None:
        self.config = config
        self.members = members  # explicit member devices (``disk.device``), if configured
        self.cancel = cancel or CancelToken()
        self.opened_by_us = False

    @property
    def device(self) -> Path:
        """The array device the next layer uses."""
        if os.path.exists(self.config.device) or not self.config.uuid:
            return self.config.device
        by_uuid = Path("/dev/disk/by-id") / f"md-uuid-{self.config.uuid}"
        return by_uuid if os.path.exists(by_uuid) else self.config.device

    def _kernel_name(self) -> str | None:
        return kernel_name(self.device)

    def health(self) -> ArrayHealth | None:
        """Health of the array when it exists."""
        name = self._kernel_name()
        return health(name) if name else None

    def is_open(self) -> bool:
        """Whether the array runs (read-only or read-write)."""
        h = self.health()
        return h is not None and h.array_state not in _STOPPED_STATES

    def _mdadm(
        self, *args: str | Path, timeout: float = QUICK_TIMEOUT, cancel: bool = True
    ) -> None:
        proc.run(["mdadm", *args], timeout=timeout, cancel=self.cancel if cancel else None)

    def open(self) -> None:
        """Assemble the array, or adopt a running one and make it writable."""
        h = self.health()
        if h is not None and h.array_state == "inactive":
            # Incremental assembly collected members but did not start the array.
            log.info("array %s is assembled but inactive: starting it", self.device)
            self.opened_by_us = True
            self._run_command(["--run", self.device])
        elif h is None or h.array_state in _STOPPED_STATES:
            self.opened_by_us = True  # a half-assembled array is stopped again on teardown
            self._assemble()
        h = self.health()
        if h is None or h.array_state in _STOPPED_STATES:
            raise DiskError(
                f"array {self.device} did not start",
                hint="look at `cat /proc/mdstat` and `mdadm --detail` for missing members",
            )
        if h.array_state in ("read-auto", "readonly"):
            # udev's incremental assembly starts arrays auto-read-only.
            log.info("array %s is %s: switching it to read-write", self.device, h.array_state)
            self._run_command(["--readwrite", self.device])
        if h.is_degraded and not self.config.allow_degraded:
            if self.opened_by_us:
                self.close()
            raise DiskError(
                f"array {self.device} is degraded ({h.degraded} of {h.raid_disks} members "
                "missing) and allow_degraded is false",
                hint="attach the missing member, or set disk.array.allow_degraded: true",
            )

    def _run_command(self, args: list[str | Path]) -> None:
        try:
            self._mdadm(*args, timeout=SLOW_TIMEOUT)
        except CommandError as exc:
            raise DiskError(
                f"mdadm could not bring up array {self.device}: {exc.message}",
                hint="look at `cat /proc/mdstat`",
            ) from exc

    def _assemble(self) -> None:
        target = self.config.device
        if self.members:
            args: list[str | Path] = ["--assemble", "--run", target, *self.members]
        elif self.config.uuid:
            args = ["--assemble", "--scan", "--run", f"--uuid={self.config.uuid}"]
        else:
            # Relies on an ARRAY line in mdadm.conf, as the original script did.
            args = ["--assemble", "--run", target]
        log.info("assembling array %s", target)
        try:
            self._mdadm(*args, timeout=SLOW_TIMEOUT)
        except CommandError as exc:
            raise DiskError(
                f"could not assemble array {target}: {exc.message}",
                hint="set disk.array.uuid (see `mdadm --examine --scan`) or disk.device "
                "to a member device, or add an ARRAY line to /etc/mdadm/mdadm.conf",
            ) from exc
        settle(self.cancel)

    def close(self) -> None:
        """Stop the array (also a half-assembled, inactive one)."""
        h = self.health()
        if h is None or h.array_state == "clear":
            return
        device = self.device
        try:
            # No cancel token: teardown must also run after a stop request.
            self._mdadm("--stop", device, timeout=SLOW_TIMEOUT, cancel=False)
        except CommandError as exc:
            raise DiskError(
                f"could not stop array {device}: {exc.message}",
                hint="something still uses it: `lsblk` shows what sits on top",
            ) from exc

    def status(self) -> LayerStatus:
        """Present/open and health."""
        h = self.health()
        return LayerStatus(
            self.name,
            str(self.device),
            present=h is not None or any(os.path.exists(m) for m in self.members),
            open=h is not None and h.array_state not in _STOPPED_STATES,
            detail=h.as_dict() if h else {},
        )
