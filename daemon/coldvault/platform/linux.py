"""Linux: ``/dev/disk/by-*`` lookup, ``BLKGETSIZE64``, mountinfo, ``posix_fadvise``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from pathlib import Path

from coldvault.config.model import SourceRef
from coldvault.errors import JobError
from coldvault.system.mounts import mounts_of_device

BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t)
BY_DIR = {"uuid": "by-uuid", "partuuid": "by-partuuid", "label": "by-label"}
DISK_DIR = Path("/dev/disk")
SYS_BLOCK = Path("/sys/class/block")


def _udev_escape(label: str) -> str:
    # udev escapes characters outside [A-Za-z0-9#+-.:=@_] in by-label names as \xNN.
    keep = set("#+-.:=@_")
    return "".join(c if c.isalnum() or c in keep else f"\\x{ord(c):02x}" for c in label)


def resolve(ref: SourceRef, disk_dir: Path = DISK_DIR) -> Path:
    """Resolve ``uuid:``/``partuuid:``/``label:`` through ``/dev/disk/by-*``.

    UUIDs compare case-insensitively; several links pointing at different
    devices are an error (a cloned disk is attached twice).
    """
    folder = disk_dir / BY_DIR[ref.kind]
    if ref.kind == "label":
        wanted = {ref.value, _udev_escape(ref.value)}
        names = [n for n in _list(folder) if n in wanted]
    else:
        names = [n for n in _list(folder) if n.lower() == ref.value.lower()]
    devices = sorted({(folder / n).resolve() for n in names})
    if not devices:
        raise JobError(
            f"no device with {ref} is attached (looked in {folder})",
            hint="check the id with `lsblk -o NAME,UUID,PARTUUID,LABEL`",
        )
    if len(devices) > 1:
        shown = ", ".join(str(d) for d in devices)
        raise JobError(
            f"several devices match {ref}: {shown}",
            hint="a cloned disk may be attached; name the source by path or partuuid",
        )
    return devices[0]


def _list(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def device_size(fd: int) -> int:
    """Size of a block device from the kernel (``BLKGETSIZE64``), else seek to the end."""
    try:
        buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("Q", buf)[0])
    except OSError:
        return os.lseek(fd, 0, os.SEEK_END)


def related_devices(path: Path, sys_block: Path = SYS_BLOCK) -> list[Path]:
    """``path`` plus its partitions and the devices stacked on it (LVM, LUKS, MD).

    Found through sysfs (``/sys/class/block/NAME/NAMEp1``, ``holders/``), so a
    whole disk counts as mounted when a partition or a volume on it is.
    """
    seen: list[Path] = []

    def walk(name: str) -> None:
        dev = Path("/dev") / name
        if dev in seen:
            return
        seen.append(dev)
        node = sys_block / name
        if not node.is_dir():
            return
        for child in sorted(node.iterdir()):
            if (child / "partition").exists():
                walk(child.name)
        holders = node / "holders"
        if holders.is_dir():
            for holder in sorted(holders.iterdir()):
                walk(holder.name)

    walk(os.path.basename(os.path.realpath(path)))
    seen[0] = path
    return seen


def mounted_anywhere(path: Path) -> list[str]:
    """Mount points of the block device ``path``, its partitions and stacked devices."""
    return [str(m.mount_point) for d in related_devices(path) for m in mounts_of_device(d)]


def mounted_read_write(path: Path) -> list[str]:
    """Like :func:`mounted_anywhere`, only the read-write mounts."""
    return [
        str(m.mount_point)
        for d in related_devices(path)
        for m in mounts_of_device(d)
        if not m.read_only
    ]


def begin_streaming(fd: int) -> None:
    """Sequential access: larger readahead."""
    with contextlib.suppress(OSError):  # advice only; some files (pipes) refuse it
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def drop_cache(fd: int, offset: int, length: int) -> None:
    """``posix_fadvise(DONTNEED)``: the page cache is not flooded by a backup."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
