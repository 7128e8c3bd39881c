"""The mount layer, and the check that the backup root really is the backup filesystem.

Before anything is written, ``/proc/self/mountinfo`` must show a mount at the
mount point whose device is the expected one: an empty folder on the root
filesystem (disk not mounted) must never receive a backup.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from coldvault.config.model import MountConfig
from coldvault.disk.layers import QUICK_TIMEOUT, SLOW_TIMEOUT, LayerStatus
from coldvault.errors import CommandError, DiskError
from coldvault.system import blockdev, proc
from coldvault.system.cancel import CancelToken
from coldvault.system.mounts import MountInfo, device_number, mount_at
from coldvault.system.mounts import is_mount_of as mounts_is_mount_of

log = logging.getLogger("coldvault.disk.mount")

FSTAB = Path("/etc/fstab")
_SPEC_LINKS = {
    "UUID": "/dev/disk/by-uuid",
    "LABEL": "/dev/disk/by-label",
    "PARTUUID": "/dev/disk/by-partuuid",
    "PARTLABEL": "/dev/disk/by-partlabel",
}


@dataclass(frozen=True)
class FstabEntry:
    """One line of /etc/fstab."""

    spec: str
    point: Path
    fstype: str
    options: tuple[str, ...]

    def device(self) -> Path | None:
        """The block device the spec names, when it names one."""
        key, sep, value = self.spec.partition("=")
        if sep and key in _SPEC_LINKS:
            return Path(_SPEC_LINKS[key]) / value
        return Path(self.spec) if self.spec.startswith("/dev/") else None


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def fstab_entry(point: Path, fstab: Path = FSTAB) -> FstabEntry | None:
    """The fstab entry for ``point``, if there is one."""
    try:
        text = fstab.read_text()
    except OSError:
        return None
    target = os.path.realpath(point)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        if os.path.realpath(_unescape(fields[1])) == target:
            options = tuple(fields[3].split(",")) if len(fields) > 3 else ()
            return FstabEntry(_unescape(fields[0]), Path(target), fields[2], options)
    return None


def is_mount_of(info: MountInfo, device: Path) -> bool:
    """Whether the mount ``info`` is a mount of block device ``device``.

    The one comparison of :mod:`coldvault.system.mounts`: device numbers, and the
    source device (Btrfs reports an anonymous device number in mountinfo).
    """
    number = device_number(device)
    return number is not None and mounts_is_mount_of(info, number)


def busy_elsewhere(device: Path | None) -> str | None:
    """What uses ``device`` out of this namespace's sight (the kernel's answer), or None."""
    if device is None or device_number(device) is None:
        return None
    use = blockdev.probe(device)
    return use.describe() if use.hidden else None


def verify_mount(point: Path, device: Path | None) -> MountInfo:
    """The mount at ``point``; DiskError unless it is a mount (of ``device`` when given)."""
    info = mount_at(point)
    if info is None:
        raise DiskError(
            f"{point} is not a mount point: the backup filesystem is not mounted there",
            hint="nothing was written; open the disk with `coldvault open`",
        )
    if device is not None and not is_mount_of(info, device):
        raise DiskError(
            f"{point} is a mount of {info.source}, not of the backup device {device}",
            hint="unmount what is mounted there, or fix disk.mount in the configuration",
        )
    return info


def holders(point: Path) -> list[str]:
    """Processes whose working directory or open files are under ``point``."""
    prefix = str(point.resolve())
    found = []

    def inside(path: str) -> bool:
        return path == prefix or path.startswith(prefix + "/")

    for p in psutil.process_iter(["pid", "name"]):
        try:
            why = []
            if inside(p.cwd()):
                why.append("working directory")
            why += [f.path for f in p.open_files() if inside(f.path)][:3]
        except (psutil.Error, OSError):
            continue
        if why:
            found.append(f"pid {p.pid} ({p.info['name']}): {', '.join(why)}")
    return found


class MountLayer:
    """Mount (and later unmount) the backup filesystem at the mount point."""

    name = "mount"

    def __init__(
        self,
        config: MountConfig,
        device: Path | None,
        *,
        cancel: CancelToken | None = None,
        fstab: Path = FSTAB,
    ) -> None:
        self.config = config
        self.cancel = cancel or CancelToken()
        self.fstab = fstab_entry(config.point, fstab)
        # The configured device, else what fstab names, else what the layer below gives.
        self.device = config.device or (self.fstab.device() if self.fstab else None) or device
        self.opened_by_us = False

    @property
    def point(self) -> Path:
        """The mount point (the backup root)."""
        return self.config.point

    def is_open(self) -> bool:
        """Whether the expected filesystem is mounted at the mount point."""
        info = mount_at(self.point)
        if info is None:
            return False
        return self.device is None or is_mount_of(info, self.device)

    def open(self) -> None:
        """Mount (honouring an fstab entry), then verify the mount."""
        info = mount_at(self.point)
        if info is None:
            self.opened_by_us = True  # teardown checks the mount, so a failed attempt is harmless
            self._mount()
        verify_mount(self.point, self.device)

    def _mount(self) -> None:
        self.point.mkdir(parents=True, exist_ok=True)
        if self.fstab is not None and not self.config.options and not self.config.fstype:
            argv: list[str | Path] = ["mount", self.point]  # fstab gives device and options
        else:
            if self.device is None:
                raise DiskError(
                    f"do not know which device to mount at {self.point}",
                    hint="set disk.mount.device, or add an /etc/fstab entry",
                )
            argv = ["mount"]
            if self.config.fstype:
                argv += ["-t", self.config.fstype]
            if self.config.options:
                argv += ["-o", ",".join(self.config.options)]
            argv += [self.device, self.point]
        elsewhere = busy_elsewhere(self.device)
        if elsewhere:  # a second mount of the same filesystem is safe, but close will fail
            log.warning("backup device %s is in use out of sight: %s", self.device, elsewhere)
        log.info("mounting %s at %s", self.device or "(fstab)", self.point)
        try:
            proc.run(argv, timeout=SLOW_TIMEOUT, cancel=self.cancel)
        except CommandError as exc:
            why = f" ({elsewhere})" if elsewhere else ""
            raise DiskError(
                f"could not mount {self.device or 'the backup filesystem'} at {self.point}: "
                f"{exc.message}{why}",
                hint="check disk.mount (fstype, options) and `dmesg`",
            ) from exc

    def close(self) -> None:
        """Unmount; a busy mount is reported with the processes holding it."""
        if mount_at(self.point) is None:
            return
        try:
            # No cancel token: teardown runs after a stop request too.
            proc.run(["umount", self.point], timeout=QUICK_TIMEOUT)
        except CommandError as exc:
            users = holders(self.point)
            detail = "; ".join(users) if users else exc.message
            raise DiskError(
                f"could not unmount {self.point}: busy: {detail}"
                if users
                else f"could not unmount {self.point}: {detail}",
                hint="stop those processes (or leave the folder), then run `coldvault close`",
            ) from exc

    def status(self) -> LayerStatus:
        """Present/open and free space."""
        info = mount_at(self.point)
        detail: dict[str, object] = {}
        if info is not None:
            detail["source"] = info.source
            detail["fstype"] = info.fstype
            try:
                st = os.statvfs(self.point)
                detail["free_bytes"] = st.f_bavail * st.f_frsize
                detail["size_bytes"] = st.f_blocks * st.f_frsize
            except OSError:
                pass
        present = self.device is None or os.path.exists(self.device)
        return LayerStatus(
            self.name, str(self.point), present=present, open=self.is_open(), detail=detail
        )
