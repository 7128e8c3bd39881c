"""One backup pass: read the source once, write only the parts whose hash changed.

For each part the manifest record is trusted only while the part file still
has the recorded inode, size and mtime. A trusted part is compared by hash
(the backup disk is not read); an untrusted or missing part is streamed to a
new file while it is read, so a first backup reads the source once.

The pass (read, zero test, hash, write) runs on one worker thread while the
calling thread waits for it and for a stop request (:mod:`coldvault.system.beside`).
Committing a written part (fsync, rename, folder fsync) runs on a third
thread so the next part is read while the previous one is flushed; at most
one commit is outstanding, so memory and unsaved work stay bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from coldvault import platform
from coldvault.errors import ColdvaultError
from coldvault.jobs.image.manifest import Manifest, PartRecord, save
from coldvault.jobs.image.parts import part_indexes, part_name
from coldvault.jobs.image.reader import blocks
from coldvault.jobs.image.sink import PartSink, trusted
from coldvault.progress import ProgressMeter, human_bytes
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir
from coldvault.system.beside import Abandoned, Guard, run_beside
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")

SAVE_EVERY_SECONDS = 5.0  # in-progress manifest: bounds the work a crash repeats


@dataclass(frozen=True)
class Layout:
    """How a source of ``size`` bytes is cut into parts."""

    size: int
    part_size: int
    block_size: int

    @property
    def count(self) -> int:
        """Number of parts (the last may be shorter)."""
        return -(-self.size // self.part_size)

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of part ``index`` in the source."""
        start = index * self.part_size
        return start, min(self.part_size, self.size - start)


@dataclass
class Stats:
    """What a pass did."""

    parts: int = 0
    changed: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    removed: int = 0


class Pass:
    """One backup of ``fd`` into ``work`` against the records of ``base``."""

    def __init__(
        self,
        work: SafeDir,
        fd: int,
        layout: Layout,
        algorithm: str,
        base: Sequence[PartRecord | None],
        *,
        keep_null: bool,
        meter: ProgressMeter,
        cancel: CancelToken,
        template: Manifest,
    ) -> None:
        self.work, self.fd, self.layout, self.algorithm = work, fd, layout, algorithm
        self.keep_null, self.meter, self.cancel = keep_null, meter, cancel
        self.records: list[PartRecord | None] = [
            base[i] if i < len(base) else None for i in range(layout.count)
        ]
        self.template = template
        self.zero = bytes(layout.block_size)
        self.stats = Stats(parts=layout.count)
        self._last_save = time.monotonic()
        self._unsaved = False
        self._pending: tuple[int, Future[PartRecord]] | None = None
        self._sink: PartSink | None = None  # the part being read
        self.guard = Guard()  # the reads a stop request may leave behind
        self.confirmed: set[int] = set()  # parts whose file now holds this source's bytes

    def run(self) -> list[PartRecord | None]:
        """Read the whole source; return the new per-part records.

        The pass runs on a worker thread; this thread only waits, so a stop request
        ends the run even while a read of the source never returns.
        """
        committer = ThreadPoolExecutor(1, thread_name_prefix="image-commit")
        try:
            run_beside(lambda: self._parts(committer), self.cancel, self.guard, "image-pass")
        except BaseException:
            if self.guard.abandoned:  # the worker is parked in a read: its clean-up is ours
                self._clean_up()
            raise
        finally:
            committer.shutdown(wait=True)
        self.meter.emit()
        return self.records

    def _parts(self, committer: ThreadPoolExecutor) -> None:
        """Every part in turn (on the worker thread)."""
        buf = bytearray(self.layout.block_size)  # one buffer, reused for every block
        try:
            for index in range(self.layout.count):
                self._sink = self._read_part(index, buf)  # None: unchanged
                if self._sink is not None:
                    self._submit(committer, index, self._sink)
                    self._sink = None  # the committer's now
            self._collect()
        except Abandoned:
            raise  # the caller has let go of our files: touch nothing
        except BaseException:
            self._clean_up()
            raise

    def _read_part(self, index: int, buf: bytearray) -> PartSink | None:
        """Read, hash (and write if untrusted) part ``index``; the sink to commit, or None."""
        start, length = self.layout.span(index)
        keep = self._keeps(length)
        write = not trusted(self.work, index, self.records[index], keep)
        sink = self._sink = PartSink(
            self.work, index, self.algorithm, self.zero, write=write, keep_null=keep
        )
        detail = f"part {index + 1} of {self.layout.count}, {self.stats.changed} changed"
        for _, n in blocks(self.fd, start, start + length, buf, self.guard):
            if self.cancel.cancelled:
                sink.abort()
                self.cancel.check()
            sink.feed(buf, n)
            self.stats.bytes_read += n
            self.meter.update(self.stats.bytes_read, self.stats.bytes_written, detail)
        return self._finish_part(index, sink)

    def _clean_up(self) -> None:
        """On failure or stop: drop the half-read part, record what was committed."""
        if self._sink is not None:
            self._sink.abort()
            self._sink = None
        try:
            self._collect()  # a part committed before the failure still counts
        except Exception as exc:  # the first error is the one to report
            log.debug("pending part commit failed too: %s", exc)
        self._save_quietly()

    def _keeps(self, length: int) -> bool:
        """Whether an all-zero part of ``length`` bytes is stored as it is.

        As the original script does, only a full-size all-zero part becomes a 0-byte
        file: a 0-byte part always reads as ``part_size`` zeros there, so a short final
        part is stored whole (even all zeros).
        """
        return self.keep_null or length < self.layout.part_size

    def _finish_part(self, index: int, sink: PartSink) -> PartSink | None:
        """The sink to commit for a finished part, or None when it is unchanged."""
        start, length = self.layout.span(index)
        if not sink.write:
            old = self.records[index]
            assert old is not None
            new = PartRecord(length, sink.all_zero, sink.digest(), 0, 0, 0)
            if new.same_data(old):
                platform.drop_cache(self.fd, start, length)
                self.confirmed.add(index)
                return None
            sink = self._reread(index, start, length)
        platform.drop_cache(self.fd, start, length)
        return sink

    def _submit(self, committer: ThreadPoolExecutor, index: int, sink: PartSink) -> None:
        """Commit ``sink`` on the committer thread, after the previous commit finished."""
        self._collect()
        self._pending = (index, committer.submit(sink.commit))

    def _collect(self) -> None:
        """Wait for the outstanding commit and record it (re-raises its error)."""
        if self._pending is None:
            return
        index, future = self._pending
        self._pending = None
        record = future.result()
        self.records[index] = record
        self.confirmed.add(index)
        self.stats.changed += 1
        self.stats.bytes_written += record.stored
        self._unsaved = True
        if time.monotonic() - self._last_save >= SAVE_EVERY_SECONDS:
            self.save_progress()

    def _reread(self, index: int, start: int, length: int) -> PartSink:
        """Write a changed part, reading it again (it is still in the page cache).

        The hash recorded is of the bytes written, even if the source changed
        between the two reads. Returns the sink, ready to commit.
        """
        sink = PartSink(
            self.work, index, self.algorithm, self.zero, write=True, keep_null=self._keeps(length)
        )
        self._sink = sink  # aborted by the clean-up if reading fails
        buf = bytearray(self.layout.block_size)
        for _, n in blocks(self.fd, start, start + length, buf, self.guard):
            sink.feed(buf, n)
        return sink

    def save_progress(self) -> None:
        """Save the in-progress manifest so a resumed run trusts what is already written."""
        save(
            self.work,
            replace(self.template, parts=tuple(self.records), complete=False),
        )
        crashpoint.reached("image.manifest-saved")
        self._last_save = time.monotonic()
        self._unsaved = False

    def _save_quietly(self) -> None:
        """On failure or stop: record what was committed, if that is still possible."""
        if not self._unsaved:
            return
        try:
            self.save_progress()
        except (OSError, ColdvaultError) as exc:  # e.g. disk full: the next run re-checks them
            log.warning("could not save the in-progress manifest: %s", exc)


def drop_unneeded_parts(work: SafeDir, count: int) -> int:
    """Remove the parts at or past ``count`` (the source shrank); return how many.

    Only names are removed: a part shared with an earlier snapshot keeps its data
    there. Done before the pass, so the space is free for the parts that are needed.
    """
    removed = freed = 0
    for index in part_indexes(work):
        if index < count:
            continue
        st = work.lstat(part_name(index))
        work.unlink(part_name(index))
        removed += 1
        freed += st.st_size if st is not None and st.st_nlink == 1 else 0
        crashpoint.reached("image.drop-unneeded")
    if removed:
        work.fsync()
        log.info(
            "%s: removed %d parts past the end of the source (%s freed)",
            work.path,
            removed,
            human_bytes(freed),
        )
    return removed


def free_unshared_parts(work: SafeDir, keep: set[int]) -> tuple[int, int]:
    """Disk full: delete in-progress parts no snapshot shares (link count 1), except ``keep``.

    Such a part was written by an interrupted run and not yet confirmed by this one;
    the next pass writes it again if the source still needs it. Returns (parts, bytes).
    """
    count = size = 0
    for index in part_indexes(work):
        st = work.lstat(part_name(index))
        if index in keep or st is None or st.st_nlink != 1:
            continue
        work.unlink(part_name(index))
        count, size = count + 1, size + st.st_size
    if count:
        work.fsync()
    return count, size
