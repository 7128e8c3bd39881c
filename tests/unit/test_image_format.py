"""The part format, byte for byte as the original multipart script writes and reads it.

The original stores ``part_%08d`` files of ``part_size`` bytes, a short final part
as it is (even all zeros), and a full-size all-zero part as a 0-byte file; its
restore concatenates the parts, writing ``part_size`` zeros for a 0-byte part.
These tests build that layout by hand and read ours the original's way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.unit.image_env import (
    KiB,
    load_manifest,
    make_job,
    part_inodes,
    restore_bytes,
    run,
    snapshots,
    write_source,
)

from coldvault.errors import JobError
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.runner import ImageRunner
from coldvault.jobs.image.verify_steps import image_step
from coldvault.progress import ProgressMeter, no_progress
from coldvault.system.beneath import SafeDir
from coldvault.system.cancel import CancelToken

PART = 256 * KiB

TAILS = {
    "short-data-tail": [(PART, True), (PART, False), (1000, True)],
    "short-zero-tail": [(PART, True), (1000, False)],
    "exact-multiple-zero-last": [(PART, True), (PART, False)],
    "exact-multiple-data-last": [(PART, False), (PART, True)],
    "one-short-zero-part": [(4096, False)],
}


def original_layout(data: bytes, folder: Path, part_size: int = PART) -> None:
    """The original script's folder for ``data``: only full all-zero parts are 0 bytes."""
    folder.mkdir(parents=True)
    for index in range(-(-len(data) // part_size)):
        chunk = data[index * part_size : (index + 1) * part_size]
        full_zero = len(chunk) == part_size and not chunk.strip(b"\0")
        (folder / f"part_{index:08d}").write_bytes(b"" if full_zero else chunk)


def original_read(folder: Path, part_size: int = PART) -> bytes:
    """What the original's restore writes: the parts in order, 0 bytes = a zero part."""
    names = sorted(n for n in os.listdir(folder) if n.startswith("part_"))
    out = []
    for name in names:
        chunk = (folder / name).read_bytes()
        out.append(chunk if chunk else bytes(part_size))
    return b"".join(out)


def parts_of(folder: Path) -> dict[str, bytes]:
    return {
        n: (folder / n).read_bytes() for n in sorted(os.listdir(folder)) if n.startswith("part_")
    }


@pytest.mark.parametrize("case", sorted(TAILS))
def test_original_folder_restores_byte_exactly(tmp_path: Path, case: str) -> None:
    src = tmp_path / "src"
    data = write_source(src, TAILS[case])
    job_dir = tmp_path / "b"
    original_layout(data, job_dir / "snapshot-2020-01-02-030405")
    job = make_job(src)
    out = restore_bytes(job, job_dir, tmp_path / "out")
    assert len(out) == len(data) and out == data


@pytest.mark.parametrize("case", sorted(TAILS))
@pytest.mark.parametrize("kept", [0, 3])
def test_our_folder_is_the_original_layout(tmp_path: Path, case: str, kept: int) -> None:
    src = tmp_path / "src"
    data = write_source(src, TAILS[case])
    job_dir = tmp_path / "b"
    run(make_job(src, snapshots=kept), job_dir)
    ours = job_dir if kept == 0 else snapshots(job_dir)[-1]
    original_layout(data, tmp_path / "orig")
    assert parts_of(ours) == parts_of(tmp_path / "orig")  # file by file, byte by byte
    assert original_read(ours) == data


@pytest.mark.parametrize("case", sorted(TAILS))
def test_original_folder_is_continued_without_rewriting(tmp_path: Path, case: str) -> None:
    src = tmp_path / "src"
    data = write_source(src, TAILS[case])
    job_dir = tmp_path / "b"
    legacy = job_dir / "snapshot-2020-01-02-030405"
    original_layout(data, legacy)
    inodes = part_inodes(legacy)
    job = make_job(src)
    result = run(job, job_dir)
    assert result.bytes_written == 0  # adopted: every part already as we would store it
    new = snapshots(job_dir)[-1]
    assert part_inodes(new) == inodes
    adopted = load_manifest(legacy)
    assert adopted is not None and adopted.source_size == len(data)
    assert original_read(new) == data


def _as_older_coldvault(folder: Path) -> None:
    """Rewrite the short all-zero final part as older coldvault stored it: 0 bytes."""
    with SafeDir.open_root(folder) as d:
        m = manifest_mod.load(d)
        assert m is not None
        last = len(m.parts) - 1
        record = m.parts[last]
        assert record is not None and record.zero and record.size < m.part_size
        name = f"part_{last:08d}"
        os.unlink(folder / name)
        (folder / name).write_bytes(b"")
        st = os.stat(folder / name)
        parts = list(m.parts)
        parts[last] = manifest_mod.PartRecord(record.size, True, None, 0, st.st_ino, st.st_mtime_ns)
        manifest_mod.save(d, m.with_parts(parts))


def test_older_coldvault_zero_byte_short_tail_stays_readable(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = write_source(src, TAILS["short-zero-tail"])
    job_dir = tmp_path / "b"
    job = make_job(src)
    run(job, job_dir)
    (old,) = snapshots(job_dir)
    _as_older_coldvault(old)
    assert (old / "part_00000001").stat().st_size == 0
    # the manifest knows the true size: restore and verify read it right
    assert restore_bytes(job, job_dir, tmp_path / "r0") == data
    report = ImageRunner(job).verify(job_dir, None, True, no_progress, CancelToken())
    assert report.problems == ()
    # the next run stores the tail whole, as the original would; the old folder keeps it
    result = run(job, job_dir)
    assert result.bytes_written == 1000
    new = snapshots(job_dir)[-1]
    assert (new / "part_00000001").stat().st_size == 1000
    assert (old / "part_00000001").stat().st_size == 0
    assert original_read(new) == data
    assert restore_bytes(job, job_dir, tmp_path / "r1", snapshot=old.name) == data
    assert restore_bytes(job, job_dir, tmp_path / "r2") == data


# ---- folders the original's pruning left: a manifest, no parts ------------------------------


def _abandon(folder: Path) -> None:
    for name in os.listdir(folder):
        if name.startswith("part_"):
            os.unlink(folder / name)


def _three_snapshots(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    src = tmp_path / "src"
    write_source(src, [(3 * PART, True)])
    job_dir = tmp_path / "b"
    job = make_job(src, snapshots=5)
    for n in range(3):
        with src.open("r+b") as f:
            f.write(bytes([n + 1]) * 10)
        run(job, job_dir)
    return src, job_dir, snapshots(job_dir)


def test_abandoned_folder_is_listed_and_not_damage(tmp_path: Path) -> None:
    src, job_dir, snaps = _three_snapshots(tmp_path)
    _abandon(snaps[0])
    runner = ImageRunner(make_job(src, snapshots=5))
    text = runner.list(job_dir)
    row = next(line for line in text.splitlines() if line.startswith(snaps[0].name))
    assert "abandoned" in row and row.split()[1] == "0"
    report = runner.verify(job_dir, None, True, no_progress, CancelToken())
    assert report.problems == ()
    meter = ProgressMeter("img", "verifying", no_progress)
    step = image_step(make_job(src, snapshots=5), job_dir, None, None, meter, CancelToken())
    assert step.problems == ()
    assert any("abandoned" in n and snaps[0].name in n for n in step.notes)
    with pytest.raises(JobError, match="abandoned"):
        restore_bytes(runner.job, job_dir, tmp_path / "out", snapshot=snaps[0].name)


def test_abandoned_newest_is_never_the_base_and_retention_deletes_it(tmp_path: Path) -> None:
    src, job_dir, snaps = _three_snapshots(tmp_path)
    _abandon(snaps[-1])
    job = make_job(src, snapshots=5)
    # "latest" skips it
    assert restore_bytes(job, job_dir, tmp_path / "r0")[10:] == src.read_bytes()[10:]
    before = part_inodes(snaps[1])
    result = run(job, job_dir)
    assert result.bytes_written == PART  # part 0 differs from the usable base only
    now = snapshots(job_dir)
    assert snaps[-1] not in now and not snaps[-1].exists()  # deleted by retention
    after = part_inodes(now[-1])
    assert after["part_00000001"] == before["part_00000001"]
    assert after["part_00000002"] == before["part_00000002"]
    assert restore_bytes(job, job_dir, tmp_path / "r1") == src.read_bytes()


def test_an_empty_source_is_not_an_abandoned_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"")
    job = make_job(src)
    run(job, tmp_path / "b")
    run(job, tmp_path / "b")
    first, _ = snapshots(tmp_path / "b")  # both kept: a backup of 0 bytes is complete
    assert "abandoned" not in ImageRunner(job).list(tmp_path / "b")
    assert restore_bytes(job, tmp_path / "b", tmp_path / "out", snapshot=first.name) == b""
