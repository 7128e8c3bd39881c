"""One part of a pass: its blocks hashed, all-zero parts detected, changed parts written.

An all-zero part is never hashed: zero blocks are only counted until the first
byte that is not zero, then hashed (and written) from a preallocated zero buffer.
Whether a stored part can be trusted without reading it is :func:`trusted`.
"""

from __future__ import annotations

import stat

from coldvault.jobs.image.manifest import PartRecord
from coldvault.jobs.image.parts import PartWriter, part_name, write_null_part
from coldvault.jobs.image.reader import hash_zeros, new_hasher
from coldvault.system.beneath import SafeDir


class PartSink:
    """Hashes one part's blocks, detects all-zero parts, and (optionally) writes them."""

    def __init__(
        self,
        folder: SafeDir,
        index: int,
        algorithm: str,
        zero: bytes,
        *,
        write: bool,
        keep_null: bool,
    ) -> None:
        self.folder, self.index, self.zero = folder, index, zero
        self.hasher = new_hasher(algorithm)
        self.write, self.keep_null = write, keep_null
        self.all_zero = True
        self.pending = 0  # zero bytes seen but not yet hashed or written
        self.size = 0
        self.writer: PartWriter | None = None

    def feed(self, buf: bytearray, n: int) -> None:
        """Take the next ``n`` bytes of the part from ``buf``."""
        self.size += n
        if self.all_zero:
            if buf == self.zero if n == len(buf) else buf[:n] == self.zero[:n]:
                self.pending += n
                return
            self.all_zero = False
            self._flush_zeros()
        view = memoryview(buf)[:n]
        self.hasher.update(view)
        if self.write:
            self._writer().write(view)

    def _writer(self) -> PartWriter:
        if self.writer is None:
            self.writer = PartWriter(self.folder, self.index)
        return self.writer

    def _flush_zeros(self) -> None:
        hash_zeros(self.hasher, self.zero, self.pending)
        if self.write:
            writer = self._writer()
            view = memoryview(self.zero)
            left = self.pending
            while left:
                step = min(left, len(self.zero))
                writer.write(view[:step])
                left -= step
        self.pending = 0

    def digest(self) -> str | None:
        """The part's hash, None when all zero (zeros are never hashed)."""
        return None if self.all_zero else self.hasher.hexdigest()

    def commit(self) -> PartRecord:
        """Store the part (atomic replace) and return its record."""
        assert self.write
        if self.all_zero and not self.keep_null:
            st = write_null_part(self.folder, self.index)
            return PartRecord(self.size, True, None, 0, st.st_ino, st.st_mtime_ns)
        if self.all_zero:
            self._flush_zeros()
        st = self._writer().commit()
        return PartRecord(
            self.size, self.all_zero, self.digest(), st.st_size, st.st_ino, st.st_mtime_ns
        )

    def abort(self) -> None:
        """Drop a half-written part."""
        if self.writer is not None:
            self.writer.abort()


def trusted(folder: SafeDir, index: int, record: PartRecord | None, keep_null: bool) -> bool:
    """Whether the part file still is exactly what ``record`` describes (a regular file).

    ``keep_null``: an all-zero part is stored whole (always so for a short final part).
    A short final part that an older coldvault stored as a 0-byte file is therefore not
    trusted and is written again, whole, into the new snapshot (older ones keep reading
    it through their manifest).
    """
    if record is None:
        return False
    st = folder.lstat(part_name(index))
    if st is None or not stat.S_ISREG(st.st_mode):
        return False
    expected = 0 if record.zero and not keep_null else record.size
    return (st.st_ino, st.st_size, st.st_mtime_ns) == (
        record.ino,
        record.stored,
        record.mtime_ns,
    ) and record.stored == expected
