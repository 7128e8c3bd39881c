"""Bit rot found by verify is repaired by the next run, in the new and the older snapshots."""

from __future__ import annotations

import json
import logging
import os
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

from coldvault.config.model import ImageJob
from coldvault.jobs.image.repair_flags import FLAGS_NAME
from coldvault.jobs.image.runner import ImageRunner
from coldvault.jobs.image.verify_steps import image_step
from coldvault.progress import ProgressMeter, no_progress
from coldvault.system.cancel import CancelToken

PART = 256 * KiB


def rot(path: Path, offset: int) -> None:
    """Flip one byte and put the mtime back, as bit rot would (``touch -r``)."""
    st = os.stat(path)
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )


def verify(job: ImageJob, job_dir: Path, how: str = "verify") -> list[str]:
    """Verify every snapshot by hand (``coldvault verify --all``) or as scheduled."""
    if how == "scheduled":
        meter = ProgressMeter(job.name, "verifying", no_progress)
        step = image_step(job, job_dir, None, None, meter, CancelToken())
        assert step.position is None
        return list(step.problems)
    report = ImageRunner(job).verify(job_dir, None, True, no_progress, CancelToken())
    return list(report.problems)


def flags_file(job_dir: Path) -> list[dict[str, object]]:
    path = job_dir / FLAGS_NAME
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["flags"])


def two_snapshots(tmp_path: Path) -> tuple[ImageJob, Path, Path, bytes, bytes]:
    """snap1 of src1, then snap2 of src2 (part 3 changed): parts 0-2 shared."""
    src = tmp_path / "src"
    src1 = write_source(src, [(4 * PART + 500, True)])
    job = make_job(src, snapshots=5)
    run(job, tmp_path / "b")
    patch(src, 3 * PART + 7, b"two")
    src2 = src.read_bytes()
    run(job, tmp_path / "b")
    return job, tmp_path / "b", src, src1, src2


@pytest.mark.parametrize("how", ["verify", "scheduled"])
def test_bit_rot_is_repaired_in_the_new_and_older_snapshots(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    job, job_dir, _, src1, src2 = two_snapshots(tmp_path)
    snap1, snap2 = snapshots(job_dir)
    assert part_inodes(snap1)["part_00000001"] == part_inodes(snap2)["part_00000001"]
    damaged_ino = part_inodes(snap2)["part_00000001"]
    rot(snap2 / "part_00000001", 1234)
    problems = verify(job, job_dir, how)
    assert len(problems) == 2 and all("part_00000001: corrupt" in p for p in problems)
    assert {(f["snapshot"], f["part"], f["reason"]) for f in flags_file(job_dir)} == {
        (snap1.name, 1, "corrupt"),
        (snap2.name, 1, "corrupt"),
    }
    caplog.set_level(logging.INFO, "coldvault.image")
    result = run(job, job_dir)
    assert "repair: 2 flagged, 1 parts rewritten, 2 damaged links replaced in 2 older" in (
        result.summary
    )
    assert result.bytes_written == PART  # the one flagged part, though "unchanged"
    snap3 = snapshots(job_dir)[-1]
    good = part_inodes(snap3)["part_00000001"]
    assert good != damaged_ino
    assert part_inodes(snap1)["part_00000001"] == good == part_inodes(snap2)["part_00000001"]
    assert flags_file(job_dir) == []  # cleared
    assert verify(job, job_dir) == []
    assert restore_bytes(job, job_dir, tmp_path / "r1", snapshot=snap1.name) == src1
    assert restore_bytes(job, job_dir, tmp_path / "r2", snapshot=snap2.name) == src2
    assert restore_bytes(job, job_dir, tmp_path / "r3") == src2
    # the healed snapshots' manifests stay trusted: the next run writes nothing
    m1 = load_manifest(snap1)
    assert m1 is not None and m1.parts[1] is not None and m1.parts[1].ino == good
    assert run(job, job_dir).bytes_written == 0


def test_without_repair_the_damaged_inode_would_be_trusted(tmp_path: Path) -> None:
    """The premise: rot keeps (inode, size, mtime), so an unverified run links it on."""
    job, job_dir, _, _, _ = two_snapshots(tmp_path)
    snap2 = snapshots(job_dir)[-1]
    rot(snap2 / "part_00000001", 99)
    assert run(job, job_dir).bytes_written == 0
    snap3 = snapshots(job_dir)[-1]
    assert part_inodes(snap3)["part_00000001"] == part_inodes(snap2)["part_00000001"]
    # verify finds it in all three; the next run repairs all three
    assert len(verify(job, job_dir)) == 3
    result = run(job, job_dir)
    assert "3 damaged links replaced in 3 older snapshot(s)" in result.summary
    assert verify(job, job_dir) == []


def test_rot_whose_source_changed_since_is_unrecoverable_in_the_older_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job, job_dir, src, src1, _ = two_snapshots(tmp_path)
    snap1, _ = snapshots(job_dir)
    rot(snap1 / "part_00000003", 5)  # part 3 changed in the source since snap1
    assert len(verify(job, job_dir)) == 1
    caplog.set_level(logging.INFO, "coldvault.image")
    result = run(job, job_dir)
    assert "0 damaged links replaced in 0 older snapshot(s), 1 unrecoverable" in result.summary
    assert any(
        f"{snap1.name}/part_00000003" in r.message and "unrecoverable" in r.message
        for r in caplog.records
    )
    assert [(f["part"], f["unrecoverable"]) for f in flags_file(job_dir)] == [(3, True)]
    assert restore_bytes(job, job_dir, tmp_path / "new") == src.read_bytes()
    assert [p for p in verify(job, job_dir) if snap1.name not in p] == []  # newest good
    # known unrecoverable: not rewritten again and again
    assert run(job, job_dir).bytes_written == 0
    # if the source holds those bytes again, the next run heals it after all
    src.write_bytes(src1)
    run(job, job_dir)
    assert verify(job, job_dir) == []
    assert restore_bytes(job, job_dir, tmp_path / "old", snapshot=snap1.name) == src1


def test_missing_part_is_restored_into_the_older_snapshot(tmp_path: Path) -> None:
    job, job_dir, _, src1, src2 = two_snapshots(tmp_path)
    snap1, snap2 = snapshots(job_dir)
    (snap2 / "part_00000002").unlink()
    assert verify(job, job_dir) == [f"{snap2}/part_00000002: missing"]
    assert flags_file(job_dir)[0]["reason"] == "missing"
    result = run(job, job_dir)
    assert "1 damaged links replaced in 1 older snapshot(s)" in result.summary
    assert verify(job, job_dir) == []
    assert restore_bytes(job, job_dir, tmp_path / "r1", snapshot=snap1.name) == src1
    assert restore_bytes(job, job_dir, tmp_path / "r2", snapshot=snap2.name) == src2


def test_rot_in_the_job_folder_with_snapshots_zero(tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = write_source(src, [(3 * PART, True), (PART, False)])
    job = make_job(src, snapshots=0)
    job_dir = tmp_path / "b"
    run(job, job_dir)
    before = part_inodes(job_dir)["part_00000002"]
    rot(job_dir / "part_00000002", 0)
    assert len(verify(job, job_dir)) == 1
    assert run(job, job_dir).bytes_written == PART
    assert part_inodes(job_dir)["part_00000002"] != before
    assert verify(job, job_dir) == [] and flags_file(job_dir) == []
    assert restore_bytes(job, job_dir, tmp_path / "out") == data


# ---- the flag file is input from the disk, like any other ----------------------------------


def _plant(job_dir: Path, how: str, host: Path) -> None:
    path = job_dir / FLAGS_NAME
    if path.exists() or path.is_symlink():
        path.unlink()
    if how == "garbage":
        path.write_bytes(b"\x00{not json")
    elif how == "symlink":
        path.symlink_to(host)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "bad-entry":
        bad = {"snapshot": "../../etc", "part": 1, "reason": "corrupt", "unrecoverable": False}
        path.write_text(json.dumps({"version": 1, "flags": [bad]}))
    elif how == "huge-index":
        bad = {"snapshot": ".", "part": 1 << 60, "reason": "corrupt", "unrecoverable": False}
        path.write_text(json.dumps({"version": 1, "flags": [bad]}))


@pytest.mark.parametrize("how", ["garbage", "symlink", "fifo", "bad-entry", "huge-index"])
def test_damaged_or_planted_flag_file(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    job, job_dir, src, _, src2 = two_snapshots(tmp_path)
    host = tmp_path / "host-file"
    host.write_text("host data")
    _plant(job_dir, how, host)
    caplog.set_level(logging.INFO, "coldvault.image")
    run(job, job_dir)  # no crash
    assert any("repair list is not usable" in r.message for r in caplog.records)
    assert host.read_text() == "host data"
    # verify still works; it records anew where it may, and never through a symlink
    snap = snapshots(job_dir)[-1]
    rot(snap / "part_00000000", 3)
    assert len(verify(job, job_dir)) == 3
    assert host.read_text() == "host data"
    if how in ("symlink", "fifo"):
        assert any("could not record" in r.message for r in caplog.records)
        assert run(job, job_dir).bytes_written == 0  # left alone: not repaired, not followed
        (job_dir / FLAGS_NAME).unlink()
    damaged = len(verify(job, job_dir))  # every snapshot linking the rotted part
    assert damaged >= 3
    result = run(job, job_dir)
    assert f"{damaged} damaged links replaced in {damaged} older snapshot(s)" in result.summary
    assert verify(job, job_dir) == []
    assert restore_bytes(job, job_dir, tmp_path / "out") == src2 == src.read_bytes()
