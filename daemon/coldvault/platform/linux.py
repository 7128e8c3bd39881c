"""Linux: device lookup (``/dev/disk/by-*``, else ``blkid``), ``BLKGETSIZE64``, mountinfo,
``posix_fadvise``."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import struct
from pathlib import Path

from coldvault.config.model import SourceRef
from coldvault.errors import JobError
from coldvault.system import proc
from coldvault.system.mounts import mounts_of_device

log = logging.getLogger("coldvault.platform")

BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t)
BY_DIR = {"uuid": "by-uuid", "partuuid": "by-partuuid", "label": "by-label"}
BLKID_TAG = {"uuid": "UUID", "partuuid": "PARTUUID", "label": "LABEL"}
BLKID_TIMEOUT = 60.0
_BLKID_UNESCAPE = re.compile(r"\\(.)")
DISK_DIR = Path("/dev/disk")
SYS_BLOCK = Path("/sys/class/block")


def _udev_escape(label: str) -> str:
    # udev escapes characters outside [A-Za-z0-9#+-.:=@_] in by-label names as \xNN.
    keep = set("#+-.:=@_")
    return "".join(c if c.isalnum() or c in keep else f"\\x{ord(c):02x}" for c in label)


def resolve(ref: SourceRef, disk_dir: Path = DISK_DIR) -> Path:
    """Resolve ``uuid:``/``partuuid:``/``label:`` to a device node.

    ``/dev/disk/by-*`` (udev's links) first; when it has no match (no udev:
    containers, rescue systems) ``blkid`` probes the devices itself. The log
    says which was used. UUIDs compare case-insensitively; several devices
    matching is an error (a cloned disk is attached twice).
    """
    folder = disk_dir / BY_DIR[ref.kind]
    devices = _by_links(ref, folder)
    how = str(folder)
    if not devices and proc.which("blkid") is not None:
        devices = _by_blkid(ref)
        how = f"blkid (no link in {folder}: is udev running?)"
    if not devices:
        raise JobError(
            f"no device with {ref} is attached (looked in {folder}"
            + (", then asked blkid)" if proc.which("blkid") else "; blkid is not installed)"),
            hint="check the id with `lsblk -o NAME,UUID,PARTUUID,LABEL`",
        )
    if len(devices) > 1:
        shown = ", ".join(str(d) for d in devices)
        raise JobError(
            f"several devices match {ref}: {shown}",
            hint="a cloned disk may be attached; name the source by path or partuuid",
        )
    log.info("%s is %s (found through %s)", ref, devices[0], how)
    return devices[0]


def _matches(ref: SourceRef, name: str) -> bool:
    if ref.kind == "label":
        return name == ref.value
    return name.lower() == ref.value.lower()


def _by_links(ref: SourceRef, folder: Path) -> list[Path]:
    """Devices whose udev link in ``folder`` names ``ref``."""
    if ref.kind == "label":
        wanted = {ref.value, _udev_escape(ref.value)}
        names = [n for n in _list(folder) if n in wanted]
    else:
        names = [n for n in _list(folder) if _matches(ref, n)]
    return sorted({(folder / n).resolve() for n in names})


def _by_blkid(ref: SourceRef) -> list[Path]:
    """Devices ``blkid`` finds with ``ref``'s tag (a fresh probe: no cache file)."""
    # Exit 2: blkid found no device with any tag; that is "no match", not a failure.
    result = proc.run(
        ["blkid", "-c", "/dev/null", "-o", "export"], check=False, timeout=BLKID_TIMEOUT
    )
    if result.returncode not in (0, 2):
        tail = result.stderr.decode("utf-8", "replace").strip()
        raise JobError(
            f"blkid failed (exit {result.returncode}) while looking for {ref}: {tail}",
            hint="check the id with `lsblk -o NAME,UUID,PARTUUID,LABEL`",
        )
    return sorted(set(parse_blkid_export(result.text, ref)))


def parse_blkid_export(text: str, ref: SourceRef) -> list[Path]:
    """Devices in ``blkid -o export`` output (blank-line separated blocks) carrying ``ref``."""
    tag = BLKID_TAG[ref.kind]
    found: list[Path] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                fields[name] = _BLKID_UNESCAPE.sub(r"\1", value)
        if "DEVNAME" in fields and tag in fields and _matches(ref, fields[tag]):
            found.append(Path(fields["DEVNAME"]))
    return found


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
