"""A full backup disk must not stick: issue 11's exact sequence on a real 64 MiB tmpfs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root
from tests.unit.image_env import KiB, MiB, folder_state, make_job, restore_bytes, run, snapshots

from coldvault.errors import JobError
from coldvault.jobs.image.runner import ImageRunner
from coldvault.progress import no_progress
from coldvault.system.cancel import CancelToken


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs as the backup disk; unmounted afterwards, also on failure."""
    require_root()
    require_programs("mount", "umount")
    point = tmp_path / "backup"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(point)], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False)


def _grow(path: Path, size: int, seed: int) -> None:
    """Keep the first bytes, fill up to ``size`` with fresh random data."""
    have = path.stat().st_size if path.exists() else 0
    with path.open("ab") as f:
        f.write(_random(size - have, seed))


def _random(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def _verify_all(job_dir: Path, src: Path) -> None:
    report = ImageRunner(make_job(src, part_size=MiB)).verify(
        job_dir, None, True, no_progress, CancelToken()
    )
    assert report.ok, report.problems


def test_grow_past_the_disk_then_shrink_back_succeeds(
    disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    job = make_job(src, part_size=MiB, block_size=64 * KiB)
    job_dir = disk / "img"
    # a new source image each time (as `dd` of a fresh file would make): every part changes
    src.write_bytes(_random(12 * MiB, seed=1))
    run(job, job_dir)
    first = snapshots(job_dir)[0]
    before = folder_state(first)
    first_bytes = src.read_bytes()

    src.write_bytes(_random(80 * MiB, seed=2))
    with pytest.raises(JobError, match="backup disk full while writing part_") as err:
        run(job, job_dir)
    assert err.value.hint and "next run resumes" in err.value.hint

    src.write_bytes(_random(16 * MiB, seed=3))
    caplog.clear()
    with caplog.at_level("INFO", logger="coldvault"):
        result = run(job, job_dir)
    assert result.snapshot is not None
    assert "past the end of the source" in caplog.text
    assert folder_state(first) == before
    assert restore_bytes(job, job_dir, tmp_path / "out") == src.read_bytes()
    assert restore_bytes(job, job_dir, tmp_path / "o1", snapshot=first.name) == first_bytes
    _verify_all(job_dir, src)


def test_still_short_after_dropping_frees_unshared_in_progress_parts(
    disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    job = make_job(src, part_size=MiB, block_size=64 * KiB)
    job_dir = disk / "img"
    _grow(src, 12 * MiB, seed=1)
    run(job, job_dir)
    first = snapshots(job_dir)[0]
    before = folder_state(first)

    _grow(src, 80 * MiB, seed=2)
    with pytest.raises(JobError, match="backup disk full"):
        run(job, job_dir)
    work = job_dir / "snapshot-inprogress"
    written = max(int(n[5:]) for n in os.listdir(work) if n.startswith("part_"))
    # the source changes everywhere after its first 12 MiB and still covers every part
    # the failed run wrote, so nothing is past its end; and the disk has no room for
    # even one more part (another file took it)
    with src.open("r+b") as f:
        f.seek(12 * MiB)
        f.write(_random((written + 1 - 12) * MiB, seed=3))
    os.truncate(src, written * MiB + 1)  # as many parts, the last one byte: it fits
    filler = disk / "filler"
    with filler.open("wb") as f, pytest.raises(OSError):
        while True:
            f.write(bytes(256 * KiB))
            f.flush()
    caplog.clear()
    with caplog.at_level("INFO", logger="coldvault"):
        try:
            result = run(job, job_dir)
        finally:
            filler.unlink()
    assert "backup disk full: freed" in caplog.text
    assert "that no snapshot shares" in caplog.text
    assert result.snapshot is not None
    assert folder_state(first) == before
    assert restore_bytes(job, job_dir, tmp_path / "out") == src.read_bytes()
    _verify_all(job_dir, src)
