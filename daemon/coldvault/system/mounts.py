"""What is mounted where, read from ``/proc/self/mountinfo`` (never ``os.path.ismount`` alone)."""

from __future__ import annotations

import os
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

    @property
    def read_only(self) -> bool:
        """Whether this mount is read-only."""
        return "ro" in self.options


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


def mounts_of_device(device: Path) -> list[MountInfo]:
    """Every mount of the block device ``device`` (matched by device number)."""
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return []
    major, minor = os.major(rdev), os.minor(rdev)
    return [m for m in mounts() if (m.major, m.minor) == (major, minor)]
