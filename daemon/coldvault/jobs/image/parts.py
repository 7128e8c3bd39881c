"""Part files: names, and the only way a part is ever written.

A part is written to a temporary name in the same folder, fsynced, renamed
over the old name and the folder fsynced. An existing part file is never
opened for writing, truncated, chmod-ed or touched: it may be a hard link
shared with earlier snapshots.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from coldvault import platform
from coldvault.errors import JobError
from coldvault.system.files import fsync_dir

PART_RE = re.compile(r"^part_(\d{8,})$")
TMP_PREFIX = ".part_"
TMP_SUFFIX = ".tmp"


def part_name(index: int) -> str:
    """``part_00000012`` (the original script's ``part_%08d``)."""
    return f"part_{index:08d}"


def part_indexes(folder: Path) -> list[int]:
    """Indexes of the part files in ``folder``, ascending."""
    found = []
    for name in os.listdir(folder):
        m = PART_RE.match(name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def remove_temporaries(folder: Path) -> int:
    """Delete half-written parts left by an interrupted run; return how many."""
    count = 0
    for name in os.listdir(folder):
        if name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX):
            os.unlink(folder / name)
            count += 1
    return count


def disk_full(folder: Path, index: int) -> JobError:
    """The error for ENOSPC while writing part ``index``."""
    return JobError(
        f"backup disk full while writing {part_name(index)} in {folder}",
        hint="free space or lower `snapshots:`; earlier snapshots are intact and the next "
        "run resumes this one",
    )


class PartWriter:
    """Writes one new part under a temporary name; :meth:`commit` makes it the part."""

    def __init__(self, folder: Path, index: int) -> None:
        self.folder, self.index = folder, index
        self.final = folder / part_name(index)
        self.tmp = folder / f"{TMP_PREFIX}{part_name(index)[5:]}{TMP_SUFFIX}"
        self.written = 0
        try:
            self.fd: int | None = os.open(
                self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise self._error(exc) from None
        platform.begin_streaming(self.fd)  # macOS: F_NOCACHE for what we write

    def _error(self, exc: OSError) -> JobError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return disk_full(self.folder, self.index)
        return JobError(f"cannot write {self.tmp}: {exc.strerror}")

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
        os.replace(self.tmp, self.final)
        fsync_dir(self.folder)
        return st

    def abort(self) -> None:
        """Close and delete the temporary file (the old part, if any, is untouched)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def write_null_part(folder: Path, index: int) -> os.stat_result:
    """Store an all-zero part as a new 0-byte file (atomically, like any part)."""
    writer = PartWriter(folder, index)
    return writer.commit()
