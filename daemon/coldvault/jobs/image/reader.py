"""Reading the source: fixed-size blocks from a background thread, hashes, zero detection.

A reader thread fills a small ring of preallocated ``block_size`` buffers with
``preadv`` (which releases the GIL) while the caller hashes, compares and
writes: reading and hashing overlap, memory stays at ``depth`` buffers
whatever the source size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from coldvault.errors import JobError
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")

READ_DEPTH = 4
_CANCEL_POLL = 0.5  # seconds between checks for a stop request while a read is pending
_JOIN_SECONDS = 5.0


class Hasher(Protocol):
    """The part of hashlib's interface we use (blake3 has it too)."""

    def update(self, data: Any, /) -> object:
        """Feed bytes."""

    def hexdigest(self) -> str:
        """The digest as hex."""


def available_algorithm(wanted: str) -> str:
    """``wanted`` if it can be used here; blake3 falls back to sha256 when not installed.

    The manifest records the algorithm actually used, so a later run with
    blake3 available simply rehashes (reads the source, writes nothing new).
    """
    if wanted == "blake3":
        try:
            import blake3  # noqa: F401
        except ImportError:
            log.warning("the blake3 module is not installed (pip install blake3); using sha256")
            return "sha256"
    if wanted not in ("blake3", "sha256"):
        raise JobError(f"unknown hash algorithm {wanted!r}", hint="use blake3 or sha256")
    return wanted


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hash object for ``algorithm`` (see :func:`available_algorithm`)."""
    if algorithm == "blake3":
        import blake3

        # One thread: blake3 hashes 1 MiB blocks at ~3.6 GiB/s on one core, faster
        # than a disk delivers them; AUTO added ~25 % CPU (pool wake-ups per block)
        # and was no faster in wall time when reading is the limit.
        h: Hasher = blake3.blake3(max_threads=1)
        return h
    return hashlib.new(algorithm)


def hash_zeros(hasher: Hasher, zero: bytes, count: int) -> None:
    """Feed ``count`` zero bytes from the preallocated ``zero`` buffer.

    Parts are hashed lazily while they are all zero, so an all-zero part is
    never hashed at all.
    """
    view = memoryview(zero)
    while count > 0:
        step = min(count, len(zero))
        hasher.update(view[:step])
        count -= step


def read_full(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset``; return bytes read (less only at end of file)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


class BlockStream:
    """Sequential blocks of ``[start, end)`` of ``fd``, read ahead by a thread.

    Iterating yields ``(offset, buffer, length)``; the buffer is reused once
    the next block is requested, so callers must finish with it first. While it
    waits for a block, ``cancel`` is checked: a read that never returns (a hung
    device or server) does not keep a stop request from being honoured.
    """

    def __init__(
        self, fd: int, start: int, end: int, block_size: int, cancel: CancelToken | None = None
    ) -> None:
        self.fd, self.start, self.end, self.block_size = fd, start, end, block_size
        self._cancel = cancel
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(READ_DEPTH):
            self._free.put(bytearray(block_size))
        self._full: queue.Queue[tuple[int, bytearray, int] | BaseException | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="image-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        offset = self.start
        try:
            while offset < self.end and not self._stop.is_set():
                buf = self._free.get()
                if self._stop.is_set():
                    break
                want = min(self.block_size, self.end - offset)
                n = read_full(self.fd, memoryview(buf)[:want], offset)
                if n < want:
                    raise JobError(
                        f"the source ended at byte {offset + n}, expected {self.end} bytes",
                        hint="the source shrank while it was read; run the backup again",
                    )
                self._full.put((offset, buf, n))
                offset += n
            self._full.put(None)
        except BaseException as exc:  # handed to the consumer thread
            self._full.put(exc)

    def __iter__(self) -> Iterator[tuple[int, bytearray, int]]:
        previous: bytearray | None = None
        while True:
            if previous is not None:
                self._free.put(previous)
                previous = None
            item = self._next()
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, OSError):
                    raise JobError(f"cannot read the source: {item.strerror}") from item
                raise item
            previous = item[1]
            yield item

    def _next(self) -> tuple[int, bytearray, int] | BaseException | None:
        while True:
            try:
                return self._full.get(timeout=_CANCEL_POLL)
            except queue.Empty:
                if self._cancel is not None:
                    self._cancel.check()

    def close(self) -> None:
        """Stop the reader thread (also when the consumer gave up early).

        A thread stuck in a read that does not return is left behind (it reads
        nothing more once that read ends): waiting for it would hang the stop.
        """
        self._stop.set()
        self._free.put(bytearray(0))  # wake it if it waits for a buffer
        self._thread.join(None if self._cancel is None else _JOIN_SECONDS)
        if self._thread.is_alive():
            log.warning("a read of the source has not returned; not waiting for it")
