"""The image reader on real files: block boundaries, a shrinking source, read errors, hashes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import pytest

from coldvault.errors import JobError
from coldvault.jobs.image.reader import blocks, hash_zeros, new_hasher

KiB = 1 << 10


@contextmanager
def opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_blocks_cover_the_range_in_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = os.urandom(5 * 64 * KiB + 123)
    src.write_bytes(data)
    seen = bytearray()
    offsets = []
    buf = bytearray(64 * KiB)
    with opened(src) as fd:
        for offset, n in blocks(fd, 100, len(data), buf):
            offsets.append((offset, n))
            seen += buf[:n]  # the buffer is reused: copy before the next block
    assert bytes(seen) == data[100:]
    assert offsets[0] == (100, 64 * KiB)
    assert offsets[-1] == (100 + 5 * 64 * KiB, 23)
    assert [o for o, _ in offsets] == sorted(o for o, _ in offsets)


def test_a_source_that_shrank_is_a_job_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(bytes(3 * 64 * KiB))
    with opened(src) as fd:
        os.truncate(src, 64 * KiB + 10)  # shorter than the stream expects
        with pytest.raises(JobError) as err:
            list(blocks(fd, 0, 4 * 64 * KiB, bytearray(64 * KiB)))
    assert "ended at byte 65546, expected 262144 bytes" in err.value.message
    assert err.value.hint is not None and "shrank" in err.value.hint


def test_a_read_error_is_a_job_error(tmp_path: Path) -> None:
    expected = pytest.raises(JobError, match="cannot read the source: Is a directory")
    with opened(tmp_path) as fd, expected:  # a folder: read() fails with EISDIR
        list(blocks(fd, 0, 64 * KiB, bytearray(64 * KiB)))


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_hashers_hash_like_the_reference(algorithm: str) -> None:
    data = os.urandom(3 * 64 * KiB + 5)
    h = new_hasher(algorithm)
    h.update(memoryview(data)[: 64 * KiB])
    h.update(memoryview(data)[64 * KiB :])
    hash_zeros(h, bytes(64 * KiB), 100 * KiB)
    whole = data + bytes(100 * KiB)
    reference = blake3.blake3(whole) if algorithm == "blake3" else hashlib.sha256(whole)
    expected = reference.hexdigest()
    assert h.hexdigest() == expected
