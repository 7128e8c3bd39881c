"""The image source: resolve it, refuse it when mounted read-write."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from coldvault import platform
from coldvault.config.model import ImageJob
from coldvault.errors import JobError
from coldvault.system import blockdev
from coldvault.system.beneath import UnexpectedEntry, check_kind, kind_of

log = logging.getLogger("coldvault.image")


@dataclass(frozen=True)
class OpenSource:
    """An opened source."""

    path: Path
    fd: int
    size: int


@contextlib.contextmanager
def open_source(job: ImageJob) -> Iterator[OpenSource]:
    """Resolve and open the job's source read-only, refusing what must not be imaged.

    Only a regular file or a block device is read (a FIFO or socket would block the
    run, a folder cannot be imaged); the type is checked before any blocking open.
    A block device in use (see :mod:`coldvault.system.blockdev`) is refused unless it
    is only mounted read-only or ``allow_mounted`` is set. A device that is not in use
    stays opened exclusively while it is read, so nobody can mount it meanwhile.
    """
    path = platform.resolve_source(job.source)
    kind = source_kind(path)
    if kind == "block device" and not platform.IS_MACOS:
        fd = _open_block(path, job)
    else:
        if kind != "file" and not job.allow_mounted:
            _refuse_mounted_macos(path)
        fd = _open_plain(path, kind)
        if kind == "file":
            _check_loop_backing(fd, path, allow_mounted=job.allow_mounted)
    try:
        platform.begin_streaming(fd)
        yield OpenSource(path, fd, platform.size_of(fd))
    finally:
        os.close(fd)


def source_kind(path: Path) -> str:
    """``file`` or ``block device`` (a raw ``character device`` on macOS); JobError otherwise.

    ``stat`` never blocks, whatever ``path`` is: the check comes before any open.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise JobError(f"cannot open source {path}: {exc.strerror}") from None
    allowed = ("file", "block device", "character device") if platform.IS_MACOS else None
    kind = kind_of(st.st_mode)
    if kind not in (allowed or ("file", "block device")):
        raise JobError(
            f"image source {path} is a {kind}: an image source must be a regular file "
            "or a block device",
            hint="point `source:` at the device or image file to back up "
            "(a FIFO or socket would block the backup, a folder cannot be imaged)",
        )
    return kind


def _open_checked(path: Path, kind: str, *, exclusive: bool = False) -> int | None:
    """Open ``path`` read-only without blocking; check on the descriptor that it is ``kind``.

    The type is checked again because ``path`` may have been replaced since the
    ``stat``. With ``exclusive`` (block devices) None means the device is in use.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK
    try:
        if exclusive:
            fd = blockdev.open_exclusive(path, flags)
            if fd is None:
                return None
        else:
            fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise JobError(f"cannot open source {path}: {exc.strerror}") from None
    try:
        check_kind(os.fstat(fd), path, kind)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except UnexpectedEntry as exc:
        os.close(fd)
        raise JobError(
            f"image source {path} is a {exc.found}: an image source must be a regular file "
            "or a block device"
        ) from None
    return fd


def _open_block(path: Path, job: ImageJob) -> int:
    fd = _open_checked(path, "block device", exclusive=True)
    if fd is not None:
        return fd
    # In use: the kernel's answer, explained by mountinfo and sysfs.
    check_source_use(path, blockdev.probe(path), allow_mounted=job.allow_mounted)
    return _open_plain(path, "block device")


def _open_plain(path: Path, kind: str) -> int:
    fd = _open_checked(path, kind)
    if fd is None:  # only an exclusive open reports "in use"
        raise JobError(f"cannot open source {path}: in use")
    return fd


def check_source_use(path: Path, use: blockdev.DeviceUse, *, allow_mounted: bool) -> None:
    """Raise JobError unless a source in this state may be imaged.

    Allowed: not in use; only read-only mounted filesystems on it (nothing can change
    it); anything at all with ``allow_mounted`` (the user freezes or snapshots it in
    ``before:``), which includes a use only the kernel sees, such as a mount in
    another mount namespace, since coldvault cannot tell that use apart: logged.
    """
    if not use.in_use or use.only_read_only_mounts:
        return
    if allow_mounted:
        log.warning(
            "source %s is in use (%s); imaging it anyway (allow_mounted)", path, use.describe()
        )
        return
    hint = (
        "unmount it, remount it read-only, back up an LVM snapshot via `before:`, "
        "or set `allow_mounted: true`"
    )
    writable = use.mount_points(writable_only=True)
    if writable and not (use.hidden or use.holders or use.swaps):
        raise JobError(
            f"source {path} is mounted read-write at {', '.join(writable)}: "
            "an image of a changing filesystem is not consistent",
            hint=hint,
        )
    raise JobError(f"source {path} is in use: {use.describe()}", hint=hint)


def _check_loop_backing(fd: int, path: Path, *, allow_mounted: bool) -> None:
    """A source file behind a loop device in use is judged like that device (closes ``fd``)."""
    for loop in blockdev.loops_backed_by(os.fstat(fd)):
        try:
            check_source_use(loop, blockdev.probe(loop), allow_mounted=allow_mounted)
        except JobError as exc:
            os.close(fd)
            raise JobError(
                f"source {path} backs the loop device {loop}: {exc.message}", hint=exc.hint
            ) from None


def _refuse_mounted_macos(path: Path) -> None:  # pragma: no cover - macOS only
    points = platform.mounted_read_write(path)
    if points:
        raise JobError(
            f"source {path} is mounted read-write at {', '.join(points)}: "
            "an image of a changing filesystem is not consistent",
            hint="unmount it, or set `allow_mounted: true`",
        )
