"""Restore and verify of image backups on real files; folders of the original script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.unit.image_env import (
    KiB,
    load_manifest,
    make_job,
    part_inodes,
    patch,
    restore_bytes,
    run,
    snapshots,
    write_source,
)

from coldvault.errors import IntegrityError, JobError
from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.image.runner import ImageRunner
from coldvault.progress import no_progress
from coldvault.system.cancel import CancelToken

PART = 256 * KiB
BS = 64 * KiB


def _verify(job_dir: Path, **kw: object) -> list[str]:
    job = make_job("/unused")
    report = ImageRunner(job).verify(
        job_dir,
        kw.get("snapshot"),  # type: ignore[arg-type]
        bool(kw.get("all", False)),
        no_progress,
        CancelToken(),
    )
    return list(report.problems)


def _two_snapshots(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = tmp_path / "src"
    write_source(src, [(3 * PART + 100, True), (PART, False)])
    job = make_job(src)
    run(job, tmp_path / "b")
    patch(src, 0, b"changed")
    run(job, tmp_path / "b")
    old, new = snapshots(tmp_path / "b")
    return src, old, new


def test_verify_clean_backup(tmp_path: Path) -> None:
    _two_snapshots(tmp_path)
    assert _verify(tmp_path / "b", all=True) == []
    assert _verify(tmp_path / "b") == []


def test_verify_names_corrupt_and_missing_parts(tmp_path: Path) -> None:
    _, old, new = _two_snapshots(tmp_path)
    assert part_inodes(old)["part_00000002"] == part_inodes(new)["part_00000002"]
    patch(new / "part_00000002", 1234, b"\xff\xfe")  # shared by both snapshots
    (new / "part_00000001").unlink()
    problems = _verify(tmp_path / "b", all=True)
    assert f"{new}/part_00000001: missing" in problems
    corrupt = [p for p in problems if ": corrupt" in p]
    assert sorted(corrupt) == sorted(
        [
            f"{old}/part_00000002: corrupt: blake3 hash differs from the manifest",
            f"{new}/part_00000002: corrupt: blake3 hash differs from the manifest",
        ]
    )
    assert len(problems) == 3
    assert _verify(tmp_path / "b", snapshot=old.name) == [
        corrupt[0] if old.name in corrupt[0] else corrupt[1]
    ]


def test_verify_detects_data_in_a_null_part_and_truncation(tmp_path: Path) -> None:
    _, _, new = _two_snapshots(tmp_path)
    (new / "part_00000004").write_bytes(b"x")  # a 0-byte null part now holds data
    os.truncate(new / "part_00000000", 10)  # the newest part: not shared
    problems = _verify(tmp_path / "b")
    assert any("part_00000004" in p for p in problems)
    assert f"{new}/part_00000000: has 10 bytes, expected {PART}" in problems


def test_restore_latest_and_older_snapshot(tmp_path: Path) -> None:
    src, old, _ = _two_snapshots(tmp_path)
    job = make_job(src)
    assert restore_bytes(job, tmp_path / "b", tmp_path / "new.img") == src.read_bytes()
    older = restore_bytes(job, tmp_path / "b", tmp_path / "old.img", snapshot=old.name)
    assert older[:7] != b"changed" and older[7:] == src.read_bytes()[7:]
    subprocess.run(["cmp", src, tmp_path / "new.img"], check=True)


def test_restore_refuses_corrupt_part(tmp_path: Path) -> None:
    src, _, new = _two_snapshots(tmp_path)
    patch(new / "part_00000000", 5, b"!")
    with pytest.raises(IntegrityError, match="part_00000000 is corrupt"):
        restore_bytes(make_job(src), tmp_path / "b", tmp_path / "out")


def test_restore_resumes_at_start_part(tmp_path: Path) -> None:
    src, _, _ = _two_snapshots(tmp_path)
    job = make_job(src)
    dest = tmp_path / "dest"
    full = src.read_bytes()
    dest.write_bytes(full[: 2 * PART])  # an interrupted restore wrote parts 0 and 1
    got = restore_bytes(job, tmp_path / "b", dest, start_part=2)
    assert got == full


def test_restore_skip_zeros_leaves_zero_parts_unwritten(tmp_path: Path) -> None:
    src = tmp_path / "src"
    full = write_source(src, [(PART, True), (PART, False), (PART + 100, True), (50, False)])
    run(make_job(src), tmp_path / "b")
    dest = tmp_path / "dest"
    dest.write_bytes(b"\x55" * (5 * PART))
    got = restore_bytes(make_job(src), tmp_path / "b", dest, skip_zeros=True)
    assert len(got) == 5 * PART > len(full)  # a destination file is never shrunk
    assert got[:PART] == full[:PART]
    assert got[PART : 2 * PART] == b"\x55" * PART  # the 0-byte null part 1 skipped
    assert got[2 * PART : len(full)] == full[2 * PART :]  # the short zero tail is stored
    assert got[len(full) :] == b"\x55" * (5 * PART - len(full))  # past the end: left alone
    got = restore_bytes(make_job(src), tmp_path / "b", dest)
    assert got[: len(full)] == full


def test_restore_unknown_snapshot_is_clear(tmp_path: Path) -> None:
    src, _, _ = _two_snapshots(tmp_path)
    with pytest.raises(JobError, match="no snapshot snapshot-1999"):
        ImageRunner(make_job(src)).restore(
            tmp_path / "b",
            RestoreRequest(snapshot="snapshot-1999-01-01-000000", dest=tmp_path / "x"),
            no_progress,
            CancelToken(),
        )


def test_list_shows_snapshots_and_changes(tmp_path: Path) -> None:
    src, old, new = _two_snapshots(tmp_path)
    text = ImageRunner(make_job(src)).list(tmp_path / "b")
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["SNAPSHOT", "PARTS", "CHANGED"]
    assert lines[1].split()[:3] == [old.name, "5", "5"]
    assert lines[2].split()[:3] == [new.name, "5", "1"]
    assert "256.0 KiB" in lines[2]  # the one new part is all the new space


# ---- folders written by the original multipart script --------------------------------------


def original_script_backup(src: Path, folder: Path, part_size: int, bs: int) -> None:
    """Build a backup the original script's way: one `dd` per part, zeros as 0-byte files."""
    folder.mkdir(parents=True)
    size = src.stat().st_size
    data = src.read_bytes()
    for index in range(-(-size // part_size)):
        part = folder / f"part_{index:08d}"
        subprocess.run(
            [
                "dd",
                f"if={src}",
                f"of={part}",
                f"bs={bs}",
                f"skip={index * part_size // bs}",
                f"count={part_size // bs}",
                "status=none",
            ],
            check=True,
        )
        if not data[index * part_size : (index + 1) * part_size].strip(b"\0"):
            subprocess.run(["truncate", "-s", "0", str(part)], check=True)


@pytest.mark.parametrize("snapshots_kept", [0, 3])
def test_original_script_folder_is_restored_and_continued(
    tmp_path: Path, snapshots_kept: int
) -> None:
    src = tmp_path / "src"
    write_source(src, [(PART, True), (2 * PART, False), (PART + 777, True)])
    job_dir = tmp_path / "b"
    legacy = job_dir if snapshots_kept == 0 else job_dir / "snapshot-2020-01-02-030405"
    original_script_backup(src, legacy, PART, BS)
    assert (legacy / "part_00000001").stat().st_size == 0
    job = make_job(src, snapshots=snapshots_kept)
    # restore straight from the original script's folder (no manifest at all)
    assert restore_bytes(job, job_dir, tmp_path / "r0") == src.read_bytes()
    legacy_inodes = part_inodes(legacy)
    patch(src, 3 * PART + 5, b"new")
    result = run(job, job_dir)
    assert result.bytes_written == PART  # only the changed part 3
    latest = job_dir if snapshots_kept == 0 else snapshots(job_dir)[-1]
    assert restore_bytes(job, job_dir, tmp_path / "r1") == src.read_bytes()
    if snapshots_kept:
        assert part_inodes(legacy) == legacy_inodes  # the old folder's parts untouched
        adopted = load_manifest(legacy)
        assert adopted is not None and adopted.adopted
        assert _verify(job_dir, all=True) == []
    m = load_manifest(latest)
    assert m is not None and m.source_size == 4 * PART + 777


def test_kept_null_part_with_data_is_caught(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(PART, True), (PART, False)])
    job = make_job(src, keep_null_parts=True)
    run(job, tmp_path / "b")
    (snap,) = snapshots(tmp_path / "b")
    assert (snap / "part_00000001").stat().st_size == PART
    patch(snap / "part_00000001", 99, b"\x01")
    assert _verify(tmp_path / "b") == [f"{snap}/part_00000001: corrupt: expected all zeros"]
    with pytest.raises(IntegrityError, match="should hold only zero bytes"):
        restore_bytes(job, tmp_path / "b", tmp_path / "out")
