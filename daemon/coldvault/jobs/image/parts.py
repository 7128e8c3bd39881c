"""Part files: names, and the only way a part is ever written.

A part is written to a temporary name in the same folder, fsynced, renamed
over the old name and the folder fsynced. An existing part file is never
opened for writing, truncated, chmod-ed or touched: it may be a hard link
shared with earlier snapshots. Every name is used relative to the folder's
descriptor (:class:`~coldvault.system.beneath.SafeDir`), never through a path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re

from coldvault import platform
from coldvault.errors import JobError
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir

PART_RE = re.compile(r"^part_(\d{8,})$")
TMP_PREFIX = ".part_"
TMP_SUFFIX = ".tmp"
MANIFEST_TMP_RE = re.compile(r"^\.\.coldvault-manifest\.json\.\d+\.tmp$")  # SafeDir.write_atomic


class DiskFull(JobError):
    """The backup disk filled up while a part was written."""


def part_name(index: int) -> str:
    """``part_00000012`` (the original script's ``part_%08d``)."""
    return f"part_{index:08d}"


def scan(folder: SafeDir) -> tuple[list[int], list[tuple[str, str]]]:
    """(indexes of the regular part files, ascending; (name, kind) of part names that are not)."""
    found, odd = [], []
    for name, kind in folder.entries():
        m = PART_RE.match(name)
        if not m:
            continue
        if kind == "file":
            found.append(int(m.group(1)))
        else:
            odd.append((name, kind))
    return sorted(found), odd


def part_indexes(folder: SafeDir) -> list[int]:
    """Indexes of the regular part files in ``folder``, ascending (anything else is skipped)."""
    return scan(folder)[0]


def remove_temporaries(folder: SafeDir) -> int:
    """Delete half-written parts and manifests left by an interrupted run; return how many."""
    count = 0
    for name, kind in folder.entries():
        ours = name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)
        if (ours or MANIFEST_TMP_RE.match(name)) and kind == "file":
            folder.unlink(name)
            count += 1
    return count


def disk_full(folder: SafeDir, index: int) -> DiskFull:
    """The error for ENOSPC while writing part ``index``."""
    return DiskFull(
        f"backup disk full while writing {part_name(index)} in {folder.path}",
        hint="free space or lower `snapshots:`; earlier snapshots are intact and the next "
        "run resumes this one",
    )


class PartWriter:
    """Writes one new part under a temporary name; :meth:`commit` makes it the part."""

    def __init__(self, folder: SafeDir, index: int) -> None:
        self.folder, self.index = folder, index
        self.final = part_name(index)
        self.tmp = f"{TMP_PREFIX}{self.final[5:]}{TMP_SUFFIX}"
        self.written = 0
        with contextlib.suppress(FileNotFoundError):
            folder.unlink(self.tmp)  # a leftover of ours (unlink never follows a symlink)
        try:
            self.fd: int | None = folder.open_file(
                self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )
        except OSError as exc:
            raise self._error(exc) from None
        platform.begin_streaming(self.fd)  # macOS: F_NOCACHE for what we write

    def _error(self, exc: OSError) -> JobError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return disk_full(self.folder, self.index)
        return JobError(f"cannot write {self.folder.child(self.tmp)}: {exc.strerror}")

    def write(self, data: memoryview | bytes) -> None:
        """Append ``data``."""
        assert self.fd is not None
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.written += n
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    def commit(self) -> os.stat_result:
        """fsync, rename over the part's name, fsync the folder; return the new file's stat."""
        assert self.fd is not None
        fd, self.fd = self.fd, None
        crashpoint.reached("image.part-written")
        try:
            os.fchmod(fd, 0o644)  # our own new file, never a shared one
            os.fsync(fd)
            platform.drop_cache(fd, 0, self.written)
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            self._unlink()
            raise self._error(exc) from None
        os.close(fd)
        crashpoint.reached("image.part-synced")
        try:
            self.folder.rename(self.tmp, self.final)  # replaces the name, never follows it
            crashpoint.reached("image.part-renamed")
            self.folder.fsync()
        except OSError as exc:
            self._unlink()
            raise self._error(exc) from None
        return st

    def abort(self) -> None:
        """Close and delete the temporary file (the old part, if any, is untouched)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.folder.unlink(self.tmp)


def write_null_part(folder: SafeDir, index: int) -> os.stat_result:
    """Store an all-zero part as a new 0-byte file (atomically, like any part)."""
    writer = PartWriter(folder, index)
    return writer.commit()
