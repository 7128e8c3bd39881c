"""Paths on the backup disk, resolved beneath its root without following symlinks.

The backup disk is hostile input: anyone with write access to it may have planted
a symlink (``snapshot-inprogress -> /etc``), a FIFO where a file belongs, or a file
where a folder belongs. Every name coldvault creates, opens, renames or deletes on
the disk therefore goes through :class:`SafeDir`: a folder held open by a file
descriptor, below which names are resolved one component at a time with
``O_NOFOLLOW``/``O_DIRECTORY`` and every operation uses ``dir_fd=``. What is not
of the expected kind raises :class:`UnexpectedEntry`, naming the path and what it is;
callers report it and leave it alone.

:func:`open_regular` is the matching check for files a user or another program wrote
on the host (configuration, key, hash file): the open never blocks on a FIFO, and
anything but a regular file (or, where allowed, a block device) is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType

from coldvault.errors import DiskError
from coldvault.system.files import write_and_sync

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


class UnexpectedEntry(DiskError):
    """A name on the backup disk is not what coldvault expects there (left alone)."""

    def __init__(self, path: Path | str, found: str, expected: str) -> None:
        super().__init__(
            f"{path} is a {found}, expected a {expected}; coldvault leaves it alone",
            hint="this was not made by coldvault: inspect it and remove or move it by hand",
        )
        self.path, self.found, self.expected = Path(path), found, expected


def kind_of(mode: int) -> str:
    """A file type in words, for messages: ``folder``, ``file``, ``symlink``, ``FIFO``…"""
    kinds = (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISCHR, "character device"),
    )
    return next((word for test, word in kinds if test(mode)), "special file")


def check_kind(st: os.stat_result, path: Path | str, *allowed: str) -> str:
    """Return the kind of ``st``; raise :class:`UnexpectedEntry` unless it is ``allowed``."""
    kind = kind_of(st.st_mode)
    if kind not in allowed:
        raise UnexpectedEntry(path, kind, " or ".join(allowed))
    return kind


def open_regular(
    path: Path, *, allow_block: bool = False, follow_symlinks: bool = True, write: bool = False
) -> int:
    """Open ``path`` without blocking; refuse anything but a regular file (or block device).

    A FIFO opened for reading blocks until a writer appears; ``O_NONBLOCK`` makes the
    open return at once, so the type can be checked before any read. The returned
    descriptor is blocking again.
    """
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise UnexpectedEntry(path, "symlink", "file") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing
            raise UnexpectedEntry(path, "FIFO", "file") from None
        raise
    try:
        allowed = ("file", "block device") if allow_block else ("file",)
        check_kind(os.fstat(fd), path, *allowed)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _renameat2() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return getattr(libc, "renameat2", None)


_RENAMEAT2 = _renameat2()


def _plain(name: str) -> str:
    """``name`` as one path component; refuses separators, ``.``, ``..`` and NUL."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


class SafeDir:
    """A folder on the backup disk, held open; names below it never follow symlinks."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path  # for messages only: never opened again by name

    @classmethod
    def open_root(cls, root: Path) -> SafeDir:
        """Open the backup root itself (a host path from the configuration)."""
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            raise DiskError(f"backup root {root} is not a folder") from None
        except FileNotFoundError:
            raise DiskError(f"backup root {root} does not exist") from None
        return cls(fd, root)

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SafeDir({str(self.path)!r}, fd={self.fd})"

    # -- looking ----------------------------------------------------------------------
    def child(self, name: str) -> Path:
        """The path of ``name`` in this folder, for messages."""
        return self.path / name

    def lstat(self, name: str) -> os.stat_result | None:
        """``lstat`` of ``name`` (a symlink is not followed); None when absent."""
        try:
            return os.stat(_plain(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def kind(self, name: str) -> str | None:
        """What ``name`` is (see :func:`kind_of`), or None when absent."""
        st = self.lstat(name)
        return None if st is None else kind_of(st.st_mode)

    def names(self) -> list[str]:
        """The names in this folder, sorted.

        Read through a fresh descriptor: Btrfs lists, per open descriptor, only the
        entries that existed when it was opened (or last rewound), so the held one
        would miss names made since.
        """
        fd = os.open(".", _DIR_FLAGS, dir_fd=self.fd)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def entries(self) -> Iterator[tuple[str, str]]:
        """(name, kind) for each name in this folder, sorted by name."""
        for name in self.names():
            kind = self.kind(name)
            if kind is not None:  # removed meanwhile
                yield name, kind

    def readlink(self, name: str) -> str | None:
        """The target of the symlink ``name``; None when absent or not a symlink."""
        try:
            return os.readlink(_plain(name), dir_fd=self.fd)
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno == errno.EINVAL:
                return None
            raise

    # -- folders ----------------------------------------------------------------------
    def sub(
        self, relpath: str | PurePosixPath, *, create: bool = False, mode: int = 0o755
    ) -> SafeDir:
        """Open the folder ``relpath`` beneath this one, component by component.

        With ``create`` missing folders are made. A symlink, or anything but a folder,
        on the way raises :class:`UnexpectedEntry`; so do ``..`` and absolute paths.
        """
        parts = PurePosixPath(relpath).parts
        if PurePosixPath(relpath).is_absolute() or ".." in parts:
            raise ValueError(f"not a relative path beneath {self.path}: {relpath!r}")
        current = SafeDir(os.dup(self.fd), self.path)
        try:
            for name in parts:
                if name == ".":
                    continue
                fd = current._open_dir_fd(name, create, mode)
                current.close()
                current = SafeDir(fd, current.path / name)
        except BaseException:
            current.close()
            raise
        return current

    def _open_dir_fd(self, name: str, create: bool, mode: int) -> int:
        if create and self.lstat(name) is None:
            with contextlib.suppress(FileExistsError):
                os.mkdir(_plain(name), mode, dir_fd=self.fd)
                self.fsync()
        try:
            return os.open(_plain(name), _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise UnexpectedEntry(self.child(name), self.kind(name) or "?", "folder") from None
            raise

    def mkdir(self, name: str, mode: int = 0o755) -> None:
        """Create the folder ``name`` (FileExistsError when the name is taken)."""
        os.mkdir(_plain(name), mode, dir_fd=self.fd)

    def rmtree(self, name: str) -> None:
        """Delete the folder ``name`` and all below it; a symlink there is refused.

        ``shutil.rmtree`` with ``dir_fd`` walks by descriptors and never follows a
        symlink inside the tree (it removes the link itself).
        """
        st = self.lstat(name)
        if st is None:
            return
        check_kind(st, self.child(name), "folder")
        shutil.rmtree(_plain(name), dir_fd=self.fd)

    def fsync(self) -> None:
        """Make new names, renames and deletions in this folder durable."""
        os.fsync(self.fd)

    # -- files ------------------------------------------------------------------------
    def open_file(self, name: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
        """Open the regular file ``name``; a symlink, FIFO or device is refused.

        The open never follows a symlink and never blocks (``O_NONBLOCK`` until the
        type is checked). New files: pass ``os.O_CREAT | os.O_EXCL`` in ``flags``.
        """
        try:
            fd = os.open(
                _plain(name),
                flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                mode,
                dir_fd=self.fd,
            )
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise UnexpectedEntry(self.child(name), self.kind(name) or "?", "file") from None
            raise
        try:
            check_kind(os.fstat(fd), self.child(name), "file")
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_bytes(self, name: str, limit: int) -> bytes:
        """The content of the regular file ``name``; DiskError when over ``limit`` bytes."""
        fd = self.open_file(name)
        try:
            chunks, total = [], 0
            while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise DiskError(f"{self.child(name)} is larger than {limit} bytes")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write_atomic(
        self, name: str, data: bytes | str, mode: int = 0o644, *, overwrite: bool = True
    ) -> None:
        """Replace ``name`` with ``data``: temporary file, fsync, rename, fsync the folder.

        Without ``overwrite`` an existing name is never replaced (FileExistsError).
        A symlink or folder at ``name`` is refused, never followed.
        """
        existing = self.lstat(name)
        if existing is not None and overwrite:
            check_kind(existing, self.child(name), "file")
        payload = data.encode() if isinstance(data, str) else data
        tmp = f".{_plain(name)}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=self.fd)
        fd = self.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            write_and_sync(fd, payload)
            if overwrite:
                self.rename(tmp, name)
            else:
                self.link(tmp, name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=self.fd)
        self.fsync()

    def unlink(self, name: str) -> None:
        """Remove the name ``name`` (a file or symlink, never followed)."""
        os.unlink(_plain(name), dir_fd=self.fd)

    def link(self, src: str, dst: str, *, src_dir: SafeDir | None = None) -> None:
        """Hard-link ``src`` (in ``src_dir``, default this folder) as ``dst`` here."""
        source = src_dir if src_dir is not None else self
        os.link(
            _plain(src),
            _plain(dst),
            src_dir_fd=source.fd,
            dst_dir_fd=self.fd,
            follow_symlinks=False,
        )

    def rename(self, old: str, new: str, *, dest: SafeDir | None = None) -> None:
        """Rename ``old`` here to ``new`` in ``dest`` (default here), replacing ``new``."""
        target = dest if dest is not None else self
        os.rename(_plain(old), _plain(new), src_dir_fd=self.fd, dst_dir_fd=target.fd)

    def rename_noreplace(self, old: str, new: str, *, dest: SafeDir | None = None) -> None:
        """Rename like :meth:`rename`, but FileExistsError when ``new`` exists."""
        target = dest if dest is not None else self
        _plain(old), _plain(new)
        if _RENAMEAT2 is not None:
            fn = _RENAMEAT2
            result = fn(  # type: ignore[operator]
                self.fd, old.encode(), target.fd, new.encode(), _RENAME_NOREPLACE
            )
            if result == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.ENOSYS, errno.EINVAL):
                raise OSError(err, os.strerror(err), str(self.child(old)), None, new)
        if target.lstat(new) is not None:  # no renameat2: a small race, the best there is
            raise FileExistsError(errno.EEXIST, "File exists", str(target.child(new)))
        os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=target.fd)

    def symlink_replace(self, name: str, target: str) -> None:
        """Point the symlink ``name`` at ``target`` atomically (new link, then rename).

        Only coldvault's own links (``latest``/``previous``) are made this way; a folder
        or file at ``name`` is refused rather than replaced.
        """
        existing = self.lstat(name)
        if existing is not None:
            check_kind(existing, self.child(name), "symlink")
        tmp = f".{_plain(name)}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=self.fd)
        os.symlink(target, tmp, dir_fd=self.fd)
        self.rename(tmp, name)

    def proc_path(self, name: str = "") -> Path:
        """A path that reaches ``name`` through this descriptor, for external commands.

        On Linux ``/proc/PID/fd/N`` is this very folder even if its path was swapped
        for a symlink since it was opened (a child reaches it through our PID: the
        descriptor itself is close-on-exec). The caller checks ``name``'s kind first.
        """
        linux = sys.platform.startswith("linux")
        base = Path(f"/proc/{os.getpid()}/fd/{self.fd}") if linux else self.path
        return base / _plain(name) if name else base


def open_beneath(root: Path, relpath: str | PurePosixPath, *, create: bool = False) -> SafeDir:
    """Open the folder ``relpath`` beneath the backup root ``root`` (see :meth:`SafeDir.sub`)."""
    with SafeDir.open_root(root) as top:
        return top.sub(relpath or ".", create=create)
