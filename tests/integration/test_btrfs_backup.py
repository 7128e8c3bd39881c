"""btrfs job backups on real Btrfs filesystems (loop devices): full, incremental, parents."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from tests.integration.btrfs_env import (
    MakeFs,
    MiB,
    create_subvolume,
    job_for,
    make_fs,
    random_file,
    run_job,
    sh,
    snapshot_names,
    subvol_field,
    tree_digest,
)

from coldvault.errors import ColdvaultError, JobError
from coldvault.jobs.btrfs.runner import BtrfsRunner
from coldvault.system.cancel import CancelToken

__all__ = ["make_fs"]  # the fixture is used by name


def _snapdir(src_mount: Path, job: str, source: str) -> Path:
    return src_mount / ".coldvault-snapshots" / job / source


def test_full_then_incremental_is_small_and_identical(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "home")
    random_file(vol / "big.bin", 24 * MiB)
    random_file(vol / "docs/a.txt", 4096)
    os.symlink("docs/a.txt", vol / "link")
    job = job_for(vol, name="home")
    job_dir = dst.mount / "home"

    first = run_job(job, job_dir)
    assert "full" in first.summary
    assert first.bytes_written > 24 * MiB

    random_file(vol / "docs/b.txt", 64 * 1024)
    (vol / "docs/a.txt").unlink()
    second = run_job(job, job_dir)
    assert "incremental" in second.summary
    # The incremental stream carries the change, not the 24 MiB that did not change.
    assert second.bytes_written < first.bytes_written / 20

    snaps = _snapdir(src.mount, "home", "home")
    names = sorted(p.name for p in snaps.iterdir() if p.name.startswith("home."))
    assert len(names) == 2
    assert second.snapshot == names[-1]
    for name in names:
        received = job_dir / "home" / name
        assert tree_digest(received) == tree_digest(snaps / name)
        assert subvol_field(received, "Received UUID") == subvol_field(snaps / name, "UUID")
        assert subvol_field(received, "Flags") == "readonly"
    assert "docs/b.txt" in tree_digest(job_dir / "home" / names[-1])
    for side in (snaps, job_dir / "home"):
        assert os.readlink(side / "latest") == names[1]
        assert os.readlink(side / "previous") == names[0]


def test_symlinks_do_not_decide_the_parent(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "big.bin", 16 * MiB)
    job = job_for(vol)
    job_dir = dst.mount / "data"
    run_job(job, job_dir)
    run_job(job, job_dir)
    snaps = _snapdir(src.mount, "data", "data")
    (job_dir / "data" / "latest").unlink()
    (snaps / "latest").unlink()
    os.symlink("does-not-exist", snaps / "previous.tmp")
    os.replace(snaps / "previous.tmp", snaps / "previous")

    random_file(vol / "small.bin", 8192)
    third = run_job(job, job_dir)
    assert "incremental" in third.summary
    assert third.bytes_written < 2 * MiB
    assert os.readlink(job_dir / "data" / "latest") == third.snapshot
    assert os.readlink(snaps / "latest") == third.snapshot
    assert (snaps / "previous").exists()  # repointed at a real snapshot


def test_parent_deleted_on_one_side_falls_back(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "big.bin", 16 * MiB)
    job = job_for(vol, source_keep=5)
    job_dir = dst.mount / "data"
    first = run_job(job, job_dir)
    second = run_job(job, job_dir)
    target = job_dir / "data"

    # Newest shared copy gone on the backup side: the older shared one is the parent.
    sh("btrfs", "subvolume", "delete", target / str(second.snapshot))
    random_file(vol / "c.bin", 4096)
    third = run_job(job, job_dir)
    assert f"incremental from {first.snapshot}" in third.summary
    assert tree_digest(target / str(third.snapshot)) == tree_digest(vol)

    # Every source snapshot gone: nothing shared, so a full send.
    snaps = _snapdir(src.mount, "data", "data")
    for p in snaps.iterdir():
        if p.name.startswith("data.") and not p.is_symlink():
            sh("btrfs", "subvolume", "delete", p)
    fourth = run_job(job, job_dir)
    assert "full" in fourth.summary
    assert fourth.bytes_written > 16 * MiB


def test_multiple_sources_and_nested_warning(
    make_fs: MakeFs, caplog: pytest.LogCaptureFixture
) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    home = create_subvolume(src.mount / "home")
    srv = create_subvolume(src.mount / "srv")
    nested = create_subvolume(home / "cache")
    random_file(home / "h.bin", MiB)
    random_file(srv / "s.bin", MiB)
    random_file(nested / "n.bin", MiB)
    job = job_for(home, srv, name="both")
    job_dir = dst.mount / "both"
    with caplog.at_level(logging.WARNING, logger="coldvault.jobs.btrfs"):
        result = run_job(job, job_dir)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(nested) in w and "NOT part of the backup" in w for w in warnings)
    # Our own snapshots are nested subvolumes of the fs top, never warned about.
    assert not any(".coldvault-snapshots" in w for w in warnings)

    names = str(result.snapshot).split(", ")
    assert len(names) == 2
    for source, name in zip((home, srv), names, strict=True):
        received = job_dir / source.name / name
        assert name.startswith(source.name + ".")
        assert subvol_field(received, "Flags") == "readonly"
        # The nested subvolume is not part of the snapshot (not even as a folder).
        expected = {k: v for k, v in tree_digest(source).items() if not k.startswith("cache")}
        assert tree_digest(received) == expected
    assert not (job_dir / "home" / names[0] / "cache" / "n.bin").exists()


def test_fs_top_level_as_source(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    random_file(src.mount / "top.bin", MiB)
    job = job_for(src.mount, name="top")
    result = run_job(job, dst.mount / "top")
    received = dst.mount / "top" / src.mount.name / str(result.snapshot)
    assert (received / "top.bin").read_bytes() == (src.mount / "top.bin").read_bytes()
    # The snapshot folder inside the source holds no snapshot data in the copy.
    inside = tree_digest(received / ".coldvault-snapshots")
    assert inside
    assert all(v == "dir" or v.startswith("link:") for v in inside.values())


def test_plain_words_errors(make_fs: MakeFs, tmp_path: Path) -> None:
    src, dst, other = make_fs("src"), make_fs("dst"), make_fs("other")
    vol = create_subvolume(src.mount / "data")
    twin = create_subvolume(other.mount / "data")
    plain = src.mount / "plain"
    plain.mkdir()

    with pytest.raises(JobError, match="is not a Btrfs subvolume"):
        run_job(job_for(plain), dst.mount / "data")

    not_btrfs = tmp_path / "not-mounted"
    not_btrfs.mkdir()
    if sh("stat", "-f", "-c", "%T", not_btrfs).strip() != "btrfs":
        with pytest.raises(JobError, match="is not on a Btrfs filesystem"):
            run_job(job_for(vol), not_btrfs / "data")

    with pytest.raises(JobError, match="on another filesystem"):
        run_job(job_for(vol, snapshot_dir=other.mount / "snaps"), dst.mount / "data")

    with pytest.raises(ColdvaultError, match="would both be stored as"):
        run_job(job_for(vol, twin), dst.mount / "x")


def test_retention_keeps_the_shared_parent(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "big.bin", 8 * MiB)
    job = job_for(vol, source_keep=1, target_keep=2)
    job_dir = dst.mount / "data"
    snaps = _snapdir(src.mount, "data", "data")
    results = []
    for i in range(4):
        random_file(vol / f"f{i}.bin", 4096)
        results.append(run_job(job, job_dir))
        if i:
            assert "incremental" in results[-1].summary  # the parent survived pruning
    on_source = snapshot_names(snaps)
    on_target = snapshot_names(job_dir / "data")
    assert on_source == [results[-1].snapshot]
    assert on_target == [results[-2].snapshot, results[-1].snapshot]
    assert not (snaps / "previous").is_symlink()
    assert os.readlink(job_dir / "data" / "previous") == results[-2].snapshot


def test_cancel_deletes_partial_receive(make_fs: MakeFs) -> None:
    src, dst = make_fs("src", 600), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "small.bin", MiB)
    job = job_for(vol)
    job_dir = dst.mount / "data"
    first = run_job(job, job_dir)
    random_file(vol / "big.bin", 200 * MiB)

    cancel = CancelToken()
    seen = []

    def progress(p: object) -> None:
        seen.append(p)
        cancel.cancel("test stop")

    with pytest.raises(ColdvaultError, match="cancel"):
        BtrfsRunner(job).run(job_dir, progress, cancel)
    left = sorted(p.name for p in (job_dir / "data").iterdir() if p.name[0] != ".")
    assert left == sorted([str(first.snapshot), "latest"])
    assert os.readlink(job_dir / "data" / "latest") == first.snapshot
    # The unsent source snapshot is gone too; the next run is incremental from the first.
    snaps = _snapdir(src.mount, "data", "data")
    assert snapshot_names(snaps) == [first.snapshot]
    again = run_job(job, job_dir)
    assert f"incremental from {first.snapshot}" in again.summary


def test_compressed_data_sends_compressed_extents(make_fs: MakeFs) -> None:
    from dataclasses import replace

    from coldvault.jobs.btrfs.transfer import compressed_data_support

    src, dst = make_fs("src"), make_fs("dst")
    sh("mount", "-o", "remount,compress=zstd", src.mount)
    vol = create_subvolume(src.mount / "data")
    line = b"coldvault compresses well when the data repeats itself. " * 64
    (vol / "text.log").write_bytes(line * 4096)  # ~14 MiB
    sh("sync")
    job = replace(job_for(vol), compressed_data=True)
    missing = compressed_data_support()
    if missing is not None:
        with pytest.raises(ColdvaultError, match="compressed_data"):
            run_job(job, dst.mount / "data")
        return
    result = run_job(job, dst.mount / "data")
    received = dst.mount / "data" / "data" / str(result.snapshot)
    assert result.bytes_written < (vol / "text.log").stat().st_size / 4
    assert tree_digest(received) == tree_digest(vol)


def test_ioctl_info_agrees_with_btrfs_subvolume_show(make_fs: MakeFs) -> None:
    from dataclasses import replace

    from coldvault.jobs.btrfs import subvol

    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    result = run_job(job_for(vol), dst.mount / "data")
    snap = src.mount / ".coldvault-snapshots" / "data" / "data" / str(result.snapshot)
    copy = dst.mount / "data" / "data" / str(result.snapshot)
    partial = create_subvolume(dst.mount / "data" / "data" / "writable")
    for path in (snap, copy, vol, src.mount, partial):
        shown = subvol.show(path)
        assert subvol.info(path) == replace(shown, fs_path="")
    assert subvol.info(copy).complete and not subvol.info(partial).complete
    with pytest.raises(JobError, match="is not a Btrfs subvolume"):
        subvol.info(src.mount / ".coldvault-snapshots")  # a plain folder


def test_retention_never_deletes_the_shared_parent_even_when_outranked(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "big.bin", 8 * MiB)
    job = job_for(vol, source_keep=1, target_keep=1)
    job_dir = dst.mount / "data"
    snaps = _snapdir(src.mount, "data", "data")
    first = run_job(job, job_dir)
    # A read-only snapshot with a name from the future (a clock that was wrong once):
    # by name it is the newest, so keep_last=1 alone would keep only it.
    sh("btrfs", "subvolume", "snapshot", "-r", vol, snaps / "data.20991231T000000Z")
    second = run_job(job, job_dir)
    assert f"incremental from {first.snapshot}" in second.summary
    kept = snapshot_names(snaps)
    assert kept == sorted([str(second.snapshot), "data.20991231T000000Z"])
    random_file(vol / "more.bin", 4096)
    third = run_job(job, job_dir)
    assert f"incremental from {second.snapshot}" in third.summary
