"""Adopting a folder without a manifest (first run, or made by the original script).

The original multipart script wrote ``part_%08d`` files of ``part_size`` bytes
(the last one shorter, stored as it is even when all zeros) and stored full-size
all-zero parts as 0-byte files, with no metadata: a 0-byte part always stands for
``part_size`` zero bytes, also when it is the last one. Its parts are hashed once to build a
manifest; after that, runs compare against the manifest and never read the backup back.
"""

from __future__ import annotations

import logging
import os

from coldvault.errors import JobError
from coldvault.jobs.image.manifest import Manifest, PartRecord
from coldvault.jobs.image.parts import part_indexes, part_name
from coldvault.jobs.image.reader import hash_zeros, new_hasher, read_full
from coldvault.system.beneath import SafeDir
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")

NOT_ADOPTED = (
    "no manifest yet (a folder of the original script): not yet adopted, nothing to "
    "compare against; the next backup run adopts the newest"
)


def hash_part_file(
    fd: int, algorithm: str, block_size: int, cancel: CancelToken | None = None
) -> tuple[str | None, int, bool]:
    """(hash or None if all zero, size, all-zero) of an opened stored part file.

    With ``cancel``, a stop request ends the read within one block (Cancelled).
    """
    hasher = new_hasher(algorithm)
    buf = bytearray(block_size)
    zero = bytes(block_size)
    all_zero, offset = True, 0
    while True:
        if cancel is not None:
            cancel.check()
        n = read_full(fd, memoryview(buf), offset)
        if n == 0:
            break
        if all_zero and (buf == zero if n == block_size else buf[:n] == zero[:n]):
            offset += n
            continue
        if all_zero:
            hash_zeros(hasher, zero, offset)
            all_zero = False
        hasher.update(memoryview(buf)[:n])
        offset += n
    return (None if all_zero else hasher.hexdigest()), offset, all_zero


def hash_part(
    folder: SafeDir, name: str, algorithm: str, block_size: int
) -> tuple[str | None, int, bool]:
    """:func:`hash_part_file` of the regular file ``name`` (a symlink or FIFO is refused)."""
    fd = folder.open_file(name)
    try:
        return hash_part_file(fd, algorithm, block_size)
    finally:
        os.close(fd)


def adopt(
    folder: SafeDir,
    *,
    part_size: int,
    block_size: int,
    algorithm: str,
    cancel: CancelToken,
) -> Manifest:
    """Build a manifest for the parts in ``folder`` by hashing them once.

    A 0-byte part is ``part_size`` zero bytes, also the last one (the source size is
    then a multiple of ``part_size``). A part of any other unexpected size is
    recorded as unknown and rewritten.
    """
    indexes = part_indexes(folder)
    count = indexes[-1] + 1 if indexes else 0
    records: list[PartRecord | None] = [None] * count
    for index in indexes:
        cancel.check()
        name = part_name(index)
        fd = folder.open_file(name)
        try:
            st = os.fstat(fd)
            if st.st_size == 0:
                records[index] = PartRecord(part_size, True, None, 0, st.st_ino, st.st_mtime_ns)
                continue
            if st.st_size > part_size or (index < count - 1 and st.st_size != part_size):
                log.warning(
                    "%s has %d bytes, expected %d: it will be rewritten",
                    folder.child(name),
                    st.st_size,
                    part_size,
                )
                continue
            digest, size, zero = hash_part_file(fd, algorithm, block_size)
        finally:
            os.close(fd)
        records[index] = PartRecord(size, zero, digest, st.st_size, st.st_ino, st.st_mtime_ns)
    last = records[-1] if count else None
    last_size = last.size if last is not None else part_size
    source_size = (count - 1) * part_size + last_size if count else 0
    log.info("adopted %s: %d parts hashed (no manifest was there)", folder.path, len(indexes))
    return Manifest(
        source_size=source_size,
        part_size=part_size,
        block_size=block_size,
        algorithm=algorithm,
        parts=tuple(records),
        complete=True,
        adopted=True,
    )


def unverified_manifest(
    folder: SafeDir, *, part_size: int, block_size: int, algorithm: str
) -> Manifest:
    """For restoring a folder without manifest (the original script's): sizes, no hashes.

    A 0-byte last part is a full part of zeros, as the original reads it.
    """
    indexes = part_indexes(folder)
    if not indexes:
        raise JobError(f"{folder.path} holds no parts")
    count = indexes[-1] + 1
    last_st = folder.lstat(part_name(count - 1))
    last = (last_st.st_size if last_st else 0) or part_size
    return Manifest(
        source_size=(count - 1) * part_size + last,
        part_size=part_size,
        block_size=block_size,
        algorithm=algorithm,
        parts=(None,) * count,
    )
