"""What is mounted where, read from ``/proc/self/mountinfo`` (never ``os.path.ismount`` alone)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class MountInfo:
    """One line of mountinfo."""

    major: int
    minor: int
    root: str  # the subtree of the filesystem mounted here ("/" or "/@home" ...)
    mount_point: Path
    options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...] = ()  # the filesystem's own options, shared by all its mounts

    @property
    def read_only(self) -> bool:
        """Whether this mount is read-only."""
        return "ro" in self.options

    @property
    def filesystem_read_only(self) -> bool:
        """Whether the filesystem itself is read-only, in every mount namespace.

        A mount can be read-only while the filesystem is writable through another
        mount (a read-only bind, or a mount elsewhere): only the superblock's ``ro``
        means nothing can change it.
        """
        return "ro" in self.super_options


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal \ooo.
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def parse(text: str) -> list[MountInfo]:
    """Parse mountinfo text (see proc(5))."""
    result = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        major, minor = (int(x) for x in f[2].split(":"))
        result.append(
            MountInfo(
                major,
                minor,
                _unescape(f[3]),
                Path(_unescape(f[4])),
                tuple(f[5].split(",")),
                r[0],
                _unescape(r[1]),
                tuple(r[2].split(",")) if len(r) > 2 else (),
            )
        )
    return result


def mounts() -> list[MountInfo]:
    """Every mount visible to this process."""
    return parse(MOUNTINFO.read_text())


def mount_at(point: Path) -> MountInfo | None:
    """The topmost mount exactly at ``point`` (after resolving symlinks), or None."""
    target = point.resolve()
    found = None
    for m in mounts():
        if m.mount_point == target:
            found = m  # later lines are mounted on top of earlier ones
    return found


def device_number(path: Path | str) -> tuple[int, int] | None:
    """(major, minor) of the block device at ``path`` (symlinks followed), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def is_mount_of(info: MountInfo, number: tuple[int, int]) -> bool:
    """Whether ``info`` mounts the block device with device number ``number``.

    mountinfo's device number is the filesystem's, which for Btrfs (and other
    multi-device filesystems) is an anonymous ``0:N``: the ``source`` field is
    matched too, by the device number of the node it names (symlinks resolved).
    """
    if (info.major, info.minor) == number:
        return True
    return info.source.startswith("/") and device_number(info.source) == number


def mounts_of_device(device: Path, table: list[MountInfo] | None = None) -> list[MountInfo]:
    """Every mount of the block device ``device``, by device number and by source device."""
    number = device_number(device)
    if number is None:
        return []
    return [m for m in (mounts() if table is None else table) if is_mount_of(m, number)]
