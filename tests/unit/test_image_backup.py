"""Image job backups on real files: format, change detection, snapshots, sizes, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.unit.image_env import (
    KiB,
    folder_state,
    load_manifest,
    make_job,
    part_inodes,
    patch,
    restore_bytes,
    run,
    snapshots,
    write_source,
)

from coldvault.errors import Cancelled, JobError
from coldvault.jobs.image.runner import ImageRunner
from coldvault.system.cancel import CancelToken

PART = 256 * KiB


@pytest.mark.parametrize(
    "size",
    [1, 64 * KiB - 1, PART, PART + 1, 3 * PART + 12345, 5 * PART - 7],
)
def test_odd_sizes_round_trip(tmp_path: Path, size: int) -> None:
    src = tmp_path / "src"
    data = write_source(src, [(size, True)])
    job = make_job(src)
    result = run(job, tmp_path / "b")
    (snap,) = snapshots(tmp_path / "b")
    assert result.snapshot == snap.name
    parts = sorted(n for n in os.listdir(snap) if n.startswith("part_"))
    count = -(-size // PART)
    assert parts == [f"part_{i:08d}" for i in range(count)]
    assert (snap / parts[-1]).stat().st_size == size - (count - 1) * PART
    m = load_manifest(snap)
    assert m is not None
    assert (m.source_size, m.part_size, m.block_size) == (size, PART, 64 * KiB)
    assert m.algorithm == "blake3"
    assert restore_bytes(job, tmp_path / "b", tmp_path / "out") == data


def test_zero_parts_are_empty_files_unless_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    # part 0 data, parts 1-2 zeros, part 3 zeros except its last byte, part 4 short zeros
    data = bytearray(write_source(src, [(PART, True), (3 * PART + 1000, False)]))
    data[4 * PART - 1] = 7
    src.write_bytes(bytes(data))
    job = make_job(src)
    run(job, tmp_path / "b")
    (snap,) = snapshots(tmp_path / "b")
    sizes = [(snap / f"part_{i:08d}").stat().st_size for i in range(5)]
    assert sizes == [PART, 0, 0, PART, 1000]  # a short zero tail is stored whole (original)
    m = load_manifest(snap)
    assert m is not None
    assert [p.zero for p in m.parts if p] == [False, True, True, False, True]
    assert m.parts[4] is not None and m.parts[4].size == 1000
    assert restore_bytes(job, tmp_path / "b", tmp_path / "out") == bytes(data)

    kept = make_job(src, keep_null_parts=True)
    run(kept, tmp_path / "k")
    (snap,) = snapshots(tmp_path / "k")
    sizes = [(snap / f"part_{i:08d}").stat().st_size for i in range(5)]
    assert sizes == [PART, PART, PART, PART, 1000]
    assert restore_bytes(kept, tmp_path / "k", tmp_path / "out2") == bytes(data)
    assert ImageRunner(kept).verify(tmp_path / "k", None, True, lambda _: None, CancelToken()).ok


def test_one_byte_change_rewrites_exactly_one_part(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(6 * PART + 999, True)])
    job = make_job(src)
    first = run(job, tmp_path / "b")
    before = folder_state(snapshots(tmp_path / "b")[0])
    patch(src, 3 * PART + 17, b"\x00" if src.read_bytes()[3 * PART + 17] else b"\x01")
    second = run(job, tmp_path / "b")
    old, new = snapshots(tmp_path / "b")
    assert second.bytes_written == PART
    assert "1 changed" in second.summary
    old_ino, new_ino = part_inodes(old), part_inodes(new)
    differing = [n for n in old_ino if old_ino[n] != new_ino[n]]
    assert differing == ["part_00000003"]
    assert folder_state(old) == before  # the earlier snapshot is untouched
    assert first.bytes_written == 6 * PART + 999
    m = load_manifest(new)
    assert m is not None and m.changed == 1


def test_unchanged_run_writes_nothing_and_reads_no_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write_source(src, [(3 * PART, True), (PART, False)])
    job = make_job(src)
    run(job, tmp_path / "b")
    first = snapshots(tmp_path / "b")[0]
    opened: list[str] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, *args: int, **kw: int) -> int:
        opened.append(os.fspath(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", spy)  # records, then does the real open
    result = run(job, tmp_path / "b")
    monkeypatch.undo()
    assert result.bytes_written == 0
    assert part_inodes(snapshots(tmp_path / "b")[1]) == part_inodes(first)
    assert str(src) in opened
    assert not [p for p in opened if Path(p).name.startswith("part_")]


def test_earlier_snapshots_keep_their_bytes_across_many_runs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = write_source(src, [(2 * PART, True), (2 * PART, False), (PART + 5, True)])
    job = make_job(src, snapshots=10)
    run(job, tmp_path / "b")
    states = [folder_state(snapshots(tmp_path / "b")[0])]
    versions = [data]
    for i, offset in enumerate((10, 2 * PART + 3, 4 * PART + 1)):
        patch(src, offset, bytes([i + 1]) * 100)
        versions.append(src.read_bytes())
        run(job, tmp_path / "b")
        states.append(folder_state(snapshots(tmp_path / "b")[-1]))
    snaps = snapshots(tmp_path / "b")
    assert len(snaps) == 4
    for snap, state, version in zip(snaps, states, versions, strict=True):
        assert folder_state(snap) == state
        out = tmp_path / f"out-{snap.name}"
        assert restore_bytes(job, tmp_path / "b", out, snapshot=snap.name) == version


def test_retention_keeps_n_snapshots(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(PART, True)])
    job = make_job(src, snapshots=2)
    for i in range(4):
        patch(src, 0, bytes([i]))
        run(job, tmp_path / "b")
    assert len(snapshots(tmp_path / "b")) == 2
    assert not (tmp_path / "b" / "snapshot-inprogress").exists()


def test_snapshots_zero_keeps_parts_in_the_job_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(2 * PART + 3, True)])
    job = make_job(src, snapshots=0)
    job_dir = tmp_path / "b"
    run(job, job_dir)
    patch(src, PART + 1, b"zz")
    result = run(job, job_dir)
    assert result.snapshot is None
    assert result.bytes_written == PART
    names = sorted(os.listdir(job_dir))
    assert names == [".coldvault-manifest.json", "part_00000000", "part_00000001", "part_00000002"]
    assert restore_bytes(job, job_dir, tmp_path / "out") == src.read_bytes()


def test_source_grows_and_shrinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(3 * PART, True)])
    job = make_job(src)
    run(job, tmp_path / "b")
    with src.open("ab") as f:
        f.write(os.urandom(PART + 10))
    grown = run(job, tmp_path / "b")
    assert grown.bytes_written == PART + 10
    assert restore_bytes(job, tmp_path / "b", tmp_path / "o1") == src.read_bytes()
    os.truncate(src, PART + 100)
    shrunk = run(job, tmp_path / "b")
    assert "removed" in shrunk.summary
    latest = snapshots(tmp_path / "b")[-1]
    assert sorted(part_inodes(latest)) == ["part_00000000", "part_00000001"]
    m = load_manifest(latest)
    assert m is not None and m.source_size == PART + 100 and len(m.parts) == 2
    assert restore_bytes(job, tmp_path / "b", tmp_path / "o2") == src.read_bytes()
    assert len(part_inodes(snapshots(tmp_path / "b")[-2])) == 5  # older snapshot untouched


class CancelAfter(CancelToken):
    """A real cancel token that is set once its flag was looked at ``n`` times."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    @property
    def cancelled(self) -> bool:
        self.left -= 1
        if self.left <= 0:
            self.cancel("test stop")
        return super().cancelled


def test_cancelled_run_is_resumed_and_earlier_snapshot_untouched(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(8 * PART, True)])
    job = make_job(src)
    run(job, tmp_path / "b")
    first = snapshots(tmp_path / "b")[0]
    before = folder_state(first)
    write_source(src, [(8 * PART, True)], seed=2)  # every part changes
    with pytest.raises(Cancelled):
        run(job, tmp_path / "b", CancelAfter(4 * 4 + 2))  # 4 blocks a part: mid part 4
    work = tmp_path / "b" / "snapshot-inprogress"
    assert work.is_dir()
    assert not [n for n in os.listdir(work) if n.endswith(".tmp")]
    assert folder_state(first) == before
    done = [n for n, ino in part_inodes(work).items() if ino != part_inodes(first)[n]]
    assert len(done) == 4  # parts 0-3 were written before the stop
    result = run(job, tmp_path / "b")
    assert result.bytes_written == 4 * PART  # the resumed run wrote only the rest
    assert folder_state(first) == before
    assert restore_bytes(job, tmp_path / "b", tmp_path / "out") == src.read_bytes()


def test_algorithm_change_rehashes_without_writing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(3 * PART, True)])
    run(make_job(src, hash="sha256"), tmp_path / "b")
    job = make_job(src)
    result = run(job, tmp_path / "b")
    assert result.bytes_written == 0
    m = load_manifest(snapshots(tmp_path / "b")[-1])
    assert m is not None and m.algorithm == "blake3"


def test_bad_part_size_rejected(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="multiple of"):
        ImageRunner(make_job(tmp_path / "x", part_size=100 * KiB, block_size=64 * KiB))


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="does not exist"):
        run(make_job(tmp_path / "nope"), tmp_path / "b")


def test_manifest_is_json_with_the_recorded_fields(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(PART, True), (PART, False)])
    run(make_job(src), tmp_path / "b")
    data = json.loads((snapshots(tmp_path / "b")[0] / ".coldvault-manifest.json").read_text())
    assert data["source_size"] == 2 * PART and data["algorithm"] == "blake3"
    assert data["parts"][1]["zero"] is True and data["parts"][1]["hash"] is None
    assert len(data["parts"][0]["hash"]) == 64
