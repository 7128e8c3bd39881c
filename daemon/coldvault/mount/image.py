"""The read-only virtual image: reads map onto the snapshot's parts, each checked once.

The first read that touches a part reads the whole part and checks it against its
hash (or that it is all zeros) before any of its bytes are served; a part that
fails, is missing or is not a regular file reads as EIO from then on, never as
wrong data. A checked part's descriptor stays open, so a later swap of the name on
the disk cannot change what is served. While a sequential reader reads one part, the
next ones are checked in the background (two at a time: the disk read of one overlaps
the hash of the other), so it rarely waits for a hash; random reads (browsing a file
system) check only the parts they touch.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from coldvault.jobs.image.parts import part_name
from coldvault.jobs.image.reader import Hasher, new_hasher, read_full
from coldvault.mount.table import PartSpec, PartTable
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.mount")

CHECK_CHUNK = 4 << 20
PREFETCH_PARTS = 2  # parts checked ahead of a sequential reader
SEQUENTIAL_SLACK = 8 << 20  # concurrent read-ahead requests arrive a little out of order
CHECK_WORKERS = 2
_ZEROS = bytes(CHECK_CHUNK)


def _hasher(algorithm: str) -> Hasher:
    """One thread per hash: the check workers already run two parts side by side."""
    if algorithm == "blake3":
        import blake3

        h: Hasher = blake3.blake3()
        return h
    return new_hasher(algorithm)


class PartFailed(Exception):
    """A part cannot be served; the message says why (for the log)."""


class _Part:
    """The state of one part: unchecked, good (descriptor or zeros) or failed."""

    def __init__(self, spec: PartSpec) -> None:
        self.spec = spec
        self.fd: int | None = None
        self.zeros = False
        self.error = spec.bad or None
        self.checked = bool(spec.bad)
        self.future: Future[None] | None = None


class VirtualImage:
    """Random reads of a snapshot as one image; OSError(EIO) where a part is bad."""

    def __init__(self, folder: SafeDir, table: PartTable) -> None:
        self.folder = folder
        self.table = table
        self.size = table.size
        self._parts = [_Part(spec) for spec in table.parts]
        self._offsets = [i * table.part_size for i in range(len(table.parts))]
        self._lock = threading.Lock()
        self._last_end = 0  # where the previous read ended
        self._pool = ThreadPoolExecutor(max_workers=CHECK_WORKERS, thread_name_prefix="part-check")

    # -- reading ----------------------------------------------------------------------

    def ready(self, offset: int, size: int) -> bool:
        """Whether a read of this range can be answered without checking a part first."""
        first, last = self._range(offset, size)
        return all(self._parts[i].checked for i in range(first, last + 1))

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at the end of the image)."""
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        first, last = self._range(offset, size)
        if abs(offset - self._last_end) <= SEQUENTIAL_SLACK:  # only a sequential reader
            self._prefetch(first + 1)  # gains from parts checked ahead; browsing does not
        self._last_end = offset + size
        if first == last:  # the common case: one pread, no extra copy
            return self._read_part(first, offset - self._offsets[first], size)
        out = bytearray(size)
        view = memoryview(out)
        done = 0
        for index in range(first, last + 1):
            part = self._checked(index)
            begin = offset + done - self._offsets[index]
            step = min(size - done, part.spec.size - begin)
            if not part.zeros:
                assert part.fd is not None
                n = read_full(part.fd, view[done : done + step], begin)
                if n != step:
                    raise self._fail(index, part, f"shrank while mounted (read {n} of {step})")
            done += step
        return bytes(out)

    def _read_part(self, index: int, begin: int, size: int) -> bytes:
        part = self._checked(index)
        if part.zeros:
            return bytes(size)
        assert part.fd is not None
        data = os.pread(part.fd, size, begin)
        if len(data) != size:
            data += self._read_rest(index, part, begin + len(data), size - len(data))
        return data

    def _read_rest(self, index: int, part: _Part, begin: int, size: int) -> bytes:
        assert part.fd is not None
        buf = bytearray(size)
        n = read_full(part.fd, memoryview(buf), begin)
        if n != size:
            raise self._fail(index, part, f"shrank while mounted (read {n} of {size})")
        return bytes(buf)

    def _range(self, offset: int, size: int) -> tuple[int, int]:
        ps = self.table.part_size
        return offset // ps, (offset + max(size, 1) - 1) // ps

    def _checked(self, index: int) -> _Part:
        part = self._parts[index]
        if not part.checked:
            self._start_check(index).result()
        if part.error is not None:
            raise OSError(errno.EIO, f"{part_name(index)}: {part.error}")
        return part

    def _fail(self, index: int, part: _Part, why: str) -> OSError:
        part.error = why
        log.error("%s: %s", self.folder.child(part_name(index)), why)
        return OSError(errno.EIO, why)

    # -- checking ---------------------------------------------------------------------

    def _start_check(self, index: int) -> Future[None]:
        with self._lock:
            part = self._parts[index]
            if part.future is None:
                part.future = self._pool.submit(self._check, index)
            return part.future

    def _prefetch(self, index: int) -> None:
        """Check parts from ``index`` on in the background, for a sequential reader."""
        for ahead in range(index, min(index + PREFETCH_PARTS, len(self._parts))):
            if not self._parts[ahead].checked:
                self._start_check(ahead)

    def _check(self, index: int) -> None:
        part = self._parts[index]
        try:
            part.fd, part.zeros = self._verify(index, part.spec)
        except PartFailed as exc:
            part.error = str(exc)
            log.error("%s: %s; it reads as an I/O error", self.folder.child(part_name(index)), exc)
        except OSError as exc:
            part.error = f"unreadable: {exc.strerror or exc}"
            log.error("%s: %s", self.folder.child(part_name(index)), part.error)
        except Exception as exc:  # an UnexpectedEntry (symlink, FIFO...) or a bug: never data
            part.error = str(exc)
            log.error("%s: %s", self.folder.child(part_name(index)), exc)
        finally:
            part.checked = True

    def _verify(self, index: int, spec: PartSpec) -> tuple[int | None, bool]:
        """(descriptor or None for zeros, zeros) of a part whose content matches ``spec``."""
        fd = self.folder.open_file(part_name(index))
        try:
            stored = os.fstat(fd).st_size
            if stored == 0:
                if not spec.zero:
                    raise PartFailed(f"empty, expected {spec.size} bytes of data")
                os.close(fd)
                return None, True
            if stored != spec.size:
                raise PartFailed(f"has {stored} bytes, expected {spec.size}")
            if self.table.checked:
                self._hash_check(fd, spec)
            return fd, False
        except BaseException:
            os.close(fd)
            raise

    def _hash_check(self, fd: int, spec: PartSpec) -> None:
        assert self.table.algorithm is not None
        hasher = _hasher(self.table.algorithm)
        # The kernel reads the whole part ahead while we hash what already arrived.
        os.posix_fadvise(fd, 0, spec.size, os.POSIX_FADV_WILLNEED)
        buf = bytearray(CHECK_CHUNK)
        offset, nonzero = 0, False
        while offset < spec.size:
            n = read_full(fd, memoryview(buf)[: min(CHECK_CHUNK, spec.size - offset)], offset)
            if n == 0:
                raise PartFailed(f"ended at byte {offset}, expected {spec.size}")
            if spec.zero:
                nonzero = nonzero or buf[:n] != _ZEROS[:n]
            else:
                hasher.update(memoryview(buf)[:n])
            offset += n
        if spec.zero and nonzero:
            raise PartFailed("corrupt: expected all zeros")
        if not spec.zero and hasher.hexdigest() != spec.hash:
            raise PartFailed(f"corrupt: its {self.table.algorithm} hash differs from the manifest")

    def close(self) -> None:
        """Stop checking and close every part's descriptor."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for part in self._parts:
            if part.fd is not None:
                os.close(part.fd)
                part.fd = None
