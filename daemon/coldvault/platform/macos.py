"""macOS: ``diskutil info -plist`` lookup, raw ``/dev/rdiskN`` nodes, ``DKIOC*`` size, F_NOCACHE.

The parsing functions take plist bytes so they are tested on Linux with
recorded ``diskutil`` output; only :func:`_diskutil` runs the real command.
"""

from __future__ import annotations

import contextlib
import fcntl
import plistlib
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldvault.config.model import SourceRef
from coldvault.errors import CommandError, JobError
from coldvault.system import proc

DKIOCGETBLOCKSIZE = 0x40046418  # _IOR('d', 24, uint32_t)
DKIOCGETBLOCKCOUNT = 0x40086419  # _IOR('d', 25, uint64_t)
F_NOCACHE = 48

Diskutil = Callable[[list[str]], bytes]


def _diskutil(args: list[str]) -> bytes:
    return proc.run(["diskutil", *args], timeout=60).stdout


def parse_plist(data: bytes) -> dict[str, Any]:
    """A ``diskutil … -plist`` document as a dict."""
    try:
        value = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise JobError(f"cannot read diskutil output: {exc}") from None
    if not isinstance(value, dict):
        raise JobError("unexpected diskutil output: not a dictionary")
    return value


def raw_node(info: dict[str, Any]) -> Path:
    """The raw (unbuffered, much faster) node of a ``diskutil info`` record: ``/dev/rdiskNsM``."""
    ident = info.get("DeviceIdentifier")
    if not isinstance(ident, str) or not ident.startswith("disk"):
        raise JobError("diskutil info has no DeviceIdentifier")
    return Path("/dev/r" + ident)


def raw_path(path: Path) -> Path:
    """``/dev/diskNsM`` → ``/dev/rdiskNsM`` (unbuffered); anything else unchanged."""
    if path.parent == Path("/dev") and re.fullmatch(r"disk\d+(s\d+)*", path.name):
        return path.with_name("r" + path.name)
    return path


def matches(info: dict[str, Any], ref: SourceRef) -> bool:
    """Whether a ``diskutil info`` record is the device ``ref`` names."""
    if ref.kind == "label":
        return info.get("VolumeName") == ref.value
    keys = ("VolumeUUID", "DiskUUID") if ref.kind == "uuid" else ("DiskUUID",)
    return any(str(info.get(k, "")).lower() == ref.value.lower() for k in keys)


def label_candidates(list_plist: dict[str, Any], label: str) -> list[str]:
    """Device identifiers whose volume name is ``label``, from ``diskutil list -plist``."""
    found = []
    for disk in list_plist.get("AllDisksAndPartitions", []):
        for entry in [disk, *disk.get("Partitions", []), *disk.get("APFSVolumes", [])]:
            if entry.get("VolumeName") == label and "DeviceIdentifier" in entry:
                found.append(str(entry["DeviceIdentifier"]))
    return sorted(set(found))


def resolve(ref: SourceRef, diskutil: Diskutil = _diskutil) -> Path:
    """Resolve ``uuid:``/``partuuid:``/``label:`` to a raw device node with diskutil."""
    if ref.kind == "label":
        idents = label_candidates(parse_plist(diskutil(["list", "-plist"])), ref.value)
        if len(idents) > 1:
            raise JobError(
                f"several devices have the label {ref.value!r}: {', '.join(idents)}",
                hint="name the source by uuid: or partuuid: instead",
            )
        if not idents:
            raise _absent(ref)
        return Path("/dev/r" + idents[0])
    try:
        # diskutil prints and matches UUIDs in upper case
        info = parse_plist(diskutil(["info", "-plist", ref.value.upper()]))
    except CommandError:
        raise _absent(ref) from None
    if not matches(info, ref):
        raise _absent(ref)
    return raw_node(info)


def _absent(ref: SourceRef) -> JobError:
    return JobError(
        f"no device with {ref} is attached", hint="check the id with `diskutil info DEVICE`"
    )


def device_size(fd: int) -> int:
    """Block count × block size from the disk driver."""
    count = struct.unpack("Q", fcntl.ioctl(fd, DKIOCGETBLOCKCOUNT, b"\0" * 8))[0]
    size = struct.unpack("I", fcntl.ioctl(fd, DKIOCGETBLOCKSIZE, b"\0" * 4))[0]
    return int(count) * int(size)


def _info_for(path: Path, diskutil: Diskutil) -> dict[str, Any] | None:
    name = path.name[1:] if path.name.startswith("rdisk") else path.name
    try:
        return parse_plist(diskutil(["info", "-plist", name]))
    except CommandError:
        return None


def mounted_anywhere(path: Path, diskutil: Diskutil = _diskutil) -> list[str]:
    """The mount point of ``path`` if diskutil says it is mounted."""
    info = _info_for(path, diskutil)
    point = info.get("MountPoint") if info else None
    return [str(point)] if point else []


def mounted_read_write(path: Path, diskutil: Diskutil = _diskutil) -> list[str]:
    """The mount point of ``path`` when mounted and the volume is writable."""
    info = _info_for(path, diskutil)
    if not info or not info.get("MountPoint"):
        return []
    return [str(info["MountPoint"])] if info.get("WritableVolume", True) else []


def begin_streaming(fd: int) -> None:
    """F_NOCACHE: data read or written through ``fd`` bypasses the unified buffer cache."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_NOCACHE, 1)


def drop_cache(fd: int, offset: int, length: int) -> None:
    """Nothing to do: F_NOCACHE already keeps the data out of the cache."""
    del fd, offset, length
