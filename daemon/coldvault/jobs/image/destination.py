"""Where a restore writes: a regular file or a block device that nothing else uses.

Refused, before anything is written:

- anything but a regular file or a block device (a FIFO or socket would block the
  restore, a folder or character device cannot hold an image);
- a block device in use (:mod:`coldvault.system.blockdev`: mounted in any mount
  namespace, active swap, held by RAID, LUKS or LVM, claimed by another program),
  or smaller than the image; a free one stays opened exclusively while it is
  written, so nobody can mount it meanwhile;
- a regular file (or block device) that backs a loop device, matched by device and
  inode: writing into it would rewrite a filesystem under whoever uses that loop
  device.

An existing regular file is never shrunk: when it is larger than the image, the
image is written over its start and the bytes after the image are left as they are
(as on a larger block device); this is logged. A smaller or new file is extended to
the image's size.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from coldvault import platform
from coldvault.errors import JobError
from coldvault.system import blockdev
from coldvault.system.beneath import UnexpectedEntry, check_kind, kind_of

log = logging.getLogger("coldvault.image")

_WRITE = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC


def open_destination(dest: Path, size: int) -> tuple[int, bool]:
    """Open ``dest`` for writing an image of ``size`` bytes.

    Returns the descriptor and whether the file must be extended to ``size`` when the
    restore is done (a new or smaller regular file). JobError for every refusal.
    """
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        return _create(dest), True
    except OSError as exc:
        raise JobError(f"cannot open restore destination {dest}: {exc.strerror}") from None
    kind = kind_of(st.st_mode)
    if kind == "file":
        return _open_file(dest, size)
    if kind == "block device" or (platform.IS_MACOS and kind == "character device"):
        return _open_device(dest, kind, size), False
    raise JobError(
        f"restore destination {dest} is a {kind}: a restore writes to a regular file "
        "or a block device",
        hint="name the device or the image file to restore to",
    )


def _create(dest: Path) -> int:
    try:
        return os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise JobError(f"cannot create restore destination {dest}: {exc.strerror}") from None


def _checked(fd: int, dest: Path, kind: str) -> os.stat_result:
    """``fd``'s stat if it is ``kind`` (the name may have been replaced); made blocking again."""
    try:
        st = os.fstat(fd)
        check_kind(st, dest, kind)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except UnexpectedEntry as exc:
        os.close(fd)
        raise JobError(
            f"restore destination {dest} changed into a {exc.found} while it was opened"
        ) from None
    return st


def _open_file(dest: Path, size: int) -> tuple[int, bool]:
    try:
        fd = os.open(dest, _WRITE)
    except OSError as exc:
        raise JobError(f"cannot open restore destination {dest}: {exc.strerror}") from None
    st = _checked(fd, dest, "file")
    try:
        refuse_loop_backing(dest, st)
    except JobError:
        os.close(fd)
        raise
    if st.st_size > size:
        log.warning(
            "restore destination %s has %d bytes, the image %d: the %d bytes after the image "
            "are left as they were (a destination file is never shrunk)",
            dest,
            st.st_size,
            size,
            st.st_size - size,
        )
    return fd, st.st_size < size


def refuse_loop_backing(dest: Path, st: os.stat_result) -> None:
    """JobError when the file (or device) ``st`` backs a loop device."""
    loops = blockdev.loops_backed_by(st)
    if not loops:
        return
    uses = [f"{loop} ({blockdev.probe(loop).describe()})" for loop in loops]
    raise JobError(
        f"restore destination {dest} backs the loop device {', '.join(uses)}: "
        "restoring into it would overwrite what that loop device holds",
        hint="unmount what is mounted from it and detach it (`losetup -d`), "
        "or restore to another file",
    )


def _open_device(dest: Path, kind: str, size: int) -> int:
    fd = _open_device_macos(dest) if platform.IS_MACOS else _open_device_linux(dest)
    _checked(fd, dest, kind)
    have = platform.size_of(fd)
    if have < size:
        os.close(fd)
        raise JobError(
            f"restore destination {dest} has {have} bytes, the image needs {size}",
            hint="restore to a device or partition at least as large as the source was",
        )
    return fd


def _open_device_linux(dest: Path) -> int:
    refuse_loop_backing(dest, os.stat(dest))
    try:
        fd = blockdev.open_exclusive(dest, _WRITE)
    except OSError as exc:
        raise JobError(f"cannot open restore destination {dest}: {exc.strerror}") from None
    if fd is None:
        raise _in_use(dest, blockdev.probe(dest))
    return fd


def _open_device_macos(dest: Path) -> int:  # pragma: no cover - macOS only
    points = platform.mounted_anywhere(dest)
    if points:
        raise JobError(
            f"restore destination {dest} is mounted at {', '.join(points)}",
            hint="unmount it first; restoring over a mounted filesystem destroys it",
        )
    try:
        return os.open(dest, _WRITE)
    except OSError as exc:
        raise JobError(f"cannot open restore destination {dest}: {exc.strerror}") from None


def _in_use(dest: Path, use: blockdev.DeviceUse) -> JobError:
    hint = "unmount it first; restoring over a mounted filesystem destroys it"
    points = use.mount_points()
    if points and not (use.swaps or use.holders or use.hidden):
        return JobError(f"restore destination {dest} is mounted at {', '.join(points)}", hint=hint)
    if not use.in_use:  # released between the two looks: still not ours to write now
        return JobError(f"restore destination {dest} is busy", hint="try again")
    return JobError(
        f"restore destination {dest} is in use: {use.describe()}",
        hint="unmount it, stop the array, close the LUKS and LVM volumes on it first",
    )


def write_failed(dest: Path, exc: OSError) -> JobError:
    """The error for a failed write to the restore destination ``dest``."""
    if exc.errno == errno.ENOSPC:
        return JobError(f"restore destination {dest} is full")
    return JobError(f"restore to {dest} failed: {exc.strerror}")
