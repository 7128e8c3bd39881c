"""Platform differences in one place (invariant 8): device lookup, size, mounts, cache.

Callers use the functions below; they dispatch to :mod:`coldvault.platform.linux`
or :mod:`coldvault.platform.macos` by ``sys.platform``. The daemon's hot-plug
watcher lives beside them in ``platform/hotplug*.py``.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from coldvault.config.model import SourceRef
from coldvault.errors import JobError
from coldvault.platform.macos import raw_path as macos_raw_path

IS_MACOS = sys.platform == "darwin"

if IS_MACOS:  # pragma: no cover - exercised on macOS only
    from coldvault.platform import macos as _impl
else:
    from coldvault.platform import linux as _impl  # type: ignore[no-redef]


def resolve_source(ref: SourceRef) -> Path:
    """The device node or file a ``source:`` names (raw node on macOS)."""
    if ref.kind == "path":
        path = Path(ref.value)
        if not path.exists():
            raise JobError(
                f"image source {path} does not exist",
                hint="check `source:` in the job, or attach the device",
            )
        if IS_MACOS:  # pragma: no cover - macOS only
            return macos_raw_path(path)
        return path
    return _impl.resolve(ref)


def size_of(fd: int) -> int:
    """Size in bytes of the open file or block device ``fd`` (from the device, not stat)."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return _impl.device_size(fd)


def mounted_read_write(path: Path) -> list[str]:
    """Mount points where the block device ``path`` is mounted read-write (empty if none)."""
    return _impl.mounted_read_write(path)


def mounted_anywhere(path: Path) -> list[str]:
    """Mount points where the block device ``path`` is mounted at all."""
    return _impl.mounted_anywhere(path)


def is_block_device(path: Path) -> bool:
    """Whether ``path`` is a block (or, on macOS, raw character) device."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISBLK(mode) or stat.S_ISCHR(mode)


def begin_streaming(fd: int) -> None:
    """Tell the OS ``fd`` is read or written once, sequentially (no cache wanted)."""
    _impl.begin_streaming(fd)


def drop_cache(fd: int, offset: int, length: int) -> None:
    """Drop what was read or written in ``[offset, offset+length)`` from the page cache."""
    _impl.drop_cache(fd, offset, length)
