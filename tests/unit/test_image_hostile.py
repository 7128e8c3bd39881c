"""Image jobs on a hostile backup disk: planted symlinks, FIFOs, damaged manifests.

Real symlinks, FIFOs and files on a real file system; the "host" folder stands for
anything outside the disk that a planted symlink could point at.
"""

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
    patch,
    restore_bytes,
    run,
    snapshots,
    write_source,
)

from coldvault.errors import EXIT_CORRUPT, ColdvaultError, IntegrityError
from coldvault.jobs.image.runner import ImageRunner
from coldvault.progress import no_progress
from coldvault.system.beneath import UnexpectedEntry
from coldvault.system.cancel import CancelToken

PART = 256 * KiB
MANIFEST = ".coldvault-manifest.json"


@pytest.fixture
def env(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(source, job folder on the "disk", a host folder outside the disk)."""
    src = tmp_path / "src"
    write_source(src, [(3 * PART + 100, True), (PART, False)])
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_bytes(b"host data")
    disk = tmp_path / "disk"
    disk.mkdir()
    return src, disk / "img", host


def _host_untouched(host: Path) -> None:
    assert sorted(os.listdir(host)) == ["precious"]
    assert (host / "precious").read_bytes() == b"host data"


def _verify(job_dir: Path, src: Path) -> tuple[bool, tuple[str, ...]]:
    report = ImageRunner(make_job(src)).verify(job_dir, None, True, no_progress, CancelToken())
    return report.ok, report.problems


# ---- point 1: symlinks on the backup disk -------------------------------------------------


def test_symlinked_snapshot_inprogress_is_refused_and_nothing_written(
    env: tuple[Path, Path, Path],
) -> None:
    src, job_dir, host = env
    job = make_job(src)
    run(job, job_dir)
    (job_dir / "snapshot-inprogress").symlink_to(host)
    with pytest.raises(UnexpectedEntry, match=r"snapshot-inprogress is a symlink") as err:
        run(job, job_dir)
    assert err.value.hint
    _host_untouched(host)
    assert (job_dir / "snapshot-inprogress").is_symlink()  # left alone
    assert len(snapshots(job_dir)) == 1


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_file_or_fifo_as_snapshot_inprogress_fails_clearly(
    env: tuple[Path, Path, Path], kind: str
) -> None:
    src, job_dir, _ = env
    job_dir.mkdir()
    planted = job_dir / "snapshot-inprogress"
    if kind == "fifo":
        os.mkfifo(planted)
    else:
        planted.write_text("x")
    with pytest.raises(UnexpectedEntry, match=r"snapshot-inprogress is a (FIFO|file)"):
        run(make_job(src), job_dir)
    assert planted.exists() or planted.is_fifo()


def test_symlinked_job_folder_is_refused(env: tuple[Path, Path, Path]) -> None:
    src, job_dir, host = env
    job_dir.symlink_to(host)
    with pytest.raises(UnexpectedEntry, match=r"img is a symlink, expected a folder"):
        run(make_job(src), job_dir)
    _host_untouched(host)


def test_job_folder_under_a_symlinked_target_component_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_source(src, [(PART, True)])
    host = tmp_path / "host"
    host.mkdir()
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "a").symlink_to(host)
    job = make_job(src, target="a/img")
    with pytest.raises(UnexpectedEntry, match=r"disk/a is a symlink"):
        run(job, disk / "a" / "img")
    assert os.listdir(host) == []


def test_symlink_named_like_a_snapshot_is_not_counted_deleted_or_followed(
    env: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    src, job_dir, host = env
    job = make_job(src, snapshots=2)
    job_dir.mkdir()
    planted = job_dir / "snapshot-2001-01-01-000000"
    planted.symlink_to(host)
    for i in range(4):  # retention reaches the planted name every run
        patch(src, 10, bytes([i]) * 8)
        result = run(job, job_dir)
        assert result.snapshot is not None
    assert planted.is_symlink()
    _host_untouched(host)
    real = [p for p in snapshots(job_dir) if not p.is_symlink()]
    assert len(real) == 2  # retention kept two, ignoring the planted name
    assert "snapshot-2001-01-01-000000 is a symlink, not a snapshot folder" in caplog.text
    listing = ImageRunner(job).list(job_dir)
    assert "2001" not in listing.splitlines()[1]
    assert "note:" in listing and "left alone" in listing
    ok, problems = _verify(job_dir, src)
    assert ok, problems


def test_symlink_as_a_part_is_refused_by_restore_and_named_by_verify(
    env: tuple[Path, Path, Path],
) -> None:
    src, job_dir, host = env
    job = make_job(src)
    run(job, job_dir)
    (snap,) = snapshots(job_dir)
    (snap / "part_00000001").unlink()
    (snap / "part_00000001").symlink_to(host / "precious")
    ok, problems = _verify(job_dir, src)
    assert not ok
    assert any("part_00000001: a symlink, not a part file" in p for p in problems)
    with pytest.raises(IntegrityError, match=r"part_00000001 is a symlink"):
        restore_bytes(job, job_dir, job_dir.parent / "out")
    # the next run does not link the planted part into its snapshot; it writes the part
    result = run(job, job_dir)
    new = job_dir / str(result.snapshot)
    assert not (new / "part_00000001").is_symlink()
    assert restore_bytes(job, job_dir, job_dir.parent / "out2") == src.read_bytes()
    _host_untouched(host)


def test_fifo_as_a_part_never_blocks(env: tuple[Path, Path, Path]) -> None:
    src, job_dir, _ = env
    job = make_job(src)
    run(job, job_dir)
    (snap,) = snapshots(job_dir)
    (snap / "part_00000002").unlink()
    os.mkfifo(snap / "part_00000002")
    _, problems = _verify(job_dir, src)
    assert any("part_00000002: a FIFO" in p for p in problems)
    with pytest.raises(IntegrityError, match="FIFO"):
        restore_bytes(job, job_dir, job_dir.parent / "out")


def test_symlinked_part_in_the_work_folder_ends_the_run(env: tuple[Path, Path, Path]) -> None:
    src, job_dir, host = env
    job = make_job(src)
    run(job, job_dir)
    work = job_dir / "snapshot-inprogress"
    work.mkdir()
    (work / "part_00000000").symlink_to(host / "precious")
    with pytest.raises(UnexpectedEntry, match=r"part_00000000 is a symlink"):
        run(job, job_dir)
    _host_untouched(host)


def test_restore_of_a_symlinked_snapshot_name_is_refused(env: tuple[Path, Path, Path]) -> None:
    src, job_dir, _ = env
    job = make_job(src)
    run(job, job_dir)
    (job_dir / "snapshot-2001-01-01-000000").symlink_to(snapshots(job_dir)[0])
    with pytest.raises(ColdvaultError, match="not a snapshot folder"):
        restore_bytes(job, job_dir, job_dir.parent / "out", snapshot="snapshot-2001-01-01-000000")
    with pytest.raises(ColdvaultError, match="no snapshot"):
        restore_bytes(job, job_dir, job_dir.parent / "out", snapshot="../../host")


# ---- point 6: manifests are input too ------------------------------------------------------


def _good_manifest(job_dir: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((snapshots(job_dir)[0] / MANIFEST).read_text())
    return data


DAMAGES: dict[str, object] = {
    "truncated": "TRUNCATE",
    "garbage": b"\x00\xff garbage \x13",
    "part_size 0": {"part_size": 0},
    "string for a number": {"source_size": "1049000"},
    "huge number": {"source_size": 10**30},
    "negative": {"block_size": -65536},
    "huge block": {"block_size": 1 << 40, "part_size": 1 << 40},
    "block not dividing": {"block_size": 3 * KiB},
    "bool for a number": {"part_size": True},
    "unknown algorithm": {"algorithm": "md5"},
    "parts not a list": {"parts": 5},
    "part count": {"source_size": 9 * PART},
    "bad hash": {"parts.0.hash": "zz" * 32},
    "short hash": {"parts.0.hash": "ab"},
    "part size": {"parts.0.size": PART - 1},
    "part not an object": {"parts.0": [1, 2]},
    "deep nesting": "[" * 100000,
    "digits": "{" + '"source_size": ' + "9" * 5000 + "}",
}


def _damage(path: Path, good: dict[str, object], how: object) -> None:
    if how == "TRUNCATE":
        path.write_text(json.dumps(good)[:200])
    elif isinstance(how, bytes):
        path.write_bytes(how)
    elif isinstance(how, str):
        path.write_text(how)
    else:
        assert isinstance(how, dict)
        data = json.loads(json.dumps(good))
        for key, value in how.items():
            *outer, last = key.split(".")
            target = data
            for k in outer:
                target = target[int(k) if k.isdigit() else k]
            target[int(last) if last.isdigit() else last] = value
        path.write_text(json.dumps(data))


@pytest.mark.parametrize("how", DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_manifest_verify_restore_run(env: tuple[Path, Path, Path], how: object) -> None:
    src, job_dir, _ = env
    job = make_job(src)
    first_data = src.read_bytes()
    run(job, job_dir)
    patch(src, 5, b"second")
    run(job, job_dir)
    old, _new = snapshots(job_dir)
    _damage(old / MANIFEST, _good_manifest(job_dir), how)
    # verify names the file, goes on with the other snapshot, reports a problem (exit 6)
    ok, problems = _verify(job_dir, src)
    assert not ok
    assert [p for p in problems if p.startswith(str(old / MANIFEST))], problems
    assert len(problems) == 1, problems
    # restore of that snapshot fails clearly; the other one restores
    with pytest.raises(IntegrityError, match="is damaged") as err:
        restore_bytes(job, job_dir, job_dir.parent / "out", snapshot=old.name)
    assert err.value.exit_code == EXIT_CORRUPT
    assert restore_bytes(job, job_dir, job_dir.parent / "out") == src.read_bytes()
    # move the manifest away: the snapshot restores unverified, as the original script's
    # (whose size is inferred from the parts: an all-zero last part counts as a full one)
    (old / MANIFEST).rename(job_dir.parent / "damaged.json")
    unverified = restore_bytes(job, job_dir, job_dir.parent / "o2", snapshot=old.name)
    assert unverified[: len(first_data)] == first_data


@pytest.mark.parametrize("how", ["garbage", "part_size 0", "string for a number", "bad hash"])
def test_run_on_a_damaged_base_manifest_rehashes_and_is_correct(
    env: tuple[Path, Path, Path], how: str, caplog: pytest.LogCaptureFixture
) -> None:
    src, job_dir, _ = env
    job = make_job(src)
    run(job, job_dir)
    (base,) = snapshots(job_dir)
    _damage(base / MANIFEST, _good_manifest(job_dir), DAMAGES[how])
    damaged = (base / MANIFEST).read_bytes()
    # the stored part 0 is corrupted too: re-hashing must notice and rewrite it
    (base / "part_00000000").write_bytes(os.urandom(PART))
    result = run(job, job_dir)
    assert "is damaged" in caplog.text
    assert result.bytes_written >= PART
    assert restore_bytes(job, job_dir, job_dir.parent / "out") == src.read_bytes()
    assert (base / MANIFEST).read_bytes() == damaged  # evidence left in place
    new = load_manifest(job_dir / str(result.snapshot))
    assert new is not None and new.complete


def test_damaged_in_progress_manifest_is_rehashed(env: tuple[Path, Path, Path]) -> None:
    src, job_dir, _ = env
    job = make_job(src)
    run(job, job_dir)
    work = job_dir / "snapshot-inprogress"
    work.mkdir()
    (work / "part_00000003").write_bytes(os.urandom(PART))  # planted, wrong data
    (work / MANIFEST).write_text('{"source_size": "x"}')
    run(job, job_dir)
    assert restore_bytes(job, job_dir, job_dir.parent / "out") == src.read_bytes()
    ok, problems = _verify(job_dir, src)
    assert ok, problems


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder", "huge"])
def test_manifest_that_is_not_a_small_regular_file(
    env: tuple[Path, Path, Path], kind: str, tmp_path: Path
) -> None:
    src, job_dir, host = env
    job = make_job(src)
    run(job, job_dir)
    patch(src, 5, b"second")
    run(job, job_dir)
    old = snapshots(job_dir)[0]
    path = old / MANIFEST
    good = _good_manifest(job_dir)
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (host / "m.json").write_text(json.dumps(good))
        path.symlink_to(host / "m.json")
    elif kind == "folder":
        path.mkdir()
    else:
        with path.open("wb") as f:
            f.truncate((256 << 20) + 1)  # sparse: larger than any manifest of ours
    ok, problems = _verify(job_dir, src)
    assert not ok and len(problems) == 1 and str(path) in problems[0], problems
    assert "manifest damaged" in ImageRunner(job).list(job_dir)
    run(job, job_dir)  # the damaged snapshot is not the base any more; still fine
    assert restore_bytes(job, job_dir, tmp_path / "out") == src.read_bytes()


def test_verify_names_a_part_past_the_end(env: tuple[Path, Path, Path]) -> None:
    src, job_dir, _ = env
    run(make_job(src), job_dir)
    (snapshots(job_dir)[0] / "part_00000099").write_bytes(b"x")
    ok, problems = _verify(job_dir, src)
    assert not ok and "part_00000099: past the end" in problems[0]


# ---- point 8: retention hides first ---------------------------------------------------------


def test_retention_leftover_is_finished_and_never_shown(env: tuple[Path, Path, Path]) -> None:
    src, job_dir, _ = env
    job = make_job(src, snapshots=2)
    run(job, job_dir)
    patch(src, 5, b"2")
    run(job, job_dir)
    old = snapshots(job_dir)[0]
    # what a retention killed mid-deletion leaves: a hidden folder, some parts gone
    hidden = job_dir / f".deleting-{old.name}"
    old.rename(hidden)
    (hidden / "part_00000000").unlink()
    states = {s.name: folder_state(s) for s in snapshots(job_dir)}
    assert ".deleting" not in ImageRunner(job).list(job_dir)
    ok, problems = _verify(job_dir, src)
    assert ok, problems
    patch(src, 5, b"3")
    run(job, job_dir)
    assert not hidden.exists()
    for s in snapshots(job_dir):
        if s.name in states:
            assert folder_state(s) == states[s.name]


def test_planted_deleting_names_are_left_alone(
    env: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    src, job_dir, host = env
    job = make_job(src, snapshots=1)
    run(job, job_dir)
    old = snapshots(job_dir)[0]
    # a symlink where retention will hide the old snapshot, and another hidden one
    (job_dir / f".deleting-{old.name}").symlink_to(host)
    (job_dir / ".deleting-snapshot-1999-01-01-000000").symlink_to(host)
    patch(src, 5, b"2")
    run(job, job_dir)
    _host_untouched(host)
    assert (job_dir / f".deleting-{old.name}").is_symlink()
    assert old.is_dir()  # could not be hidden, so not deleted: kept whole
    assert f"cannot remove {old.name}" in caplog.text
    ok, problems = _verify(job_dir, src)
    assert ok, problems
