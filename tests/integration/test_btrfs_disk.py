"""btrfs jobs on a hostile backup disk, renamed snapshots, damage marks, progress estimates.

Real Btrfs filesystems on loop devices, shared by the module's tests (each test has
its own job name and source subvolume); real symlinks, FIFOs and folders planted
where snapshots belong; a real damaged block for the damage marks.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from tests.integration.btrfs_env import (
    MakeFs,
    MiB,
    create_subvolume,
    damage_first_block,
    job_for,
    module_fs,
    random_file,
    run_job,
    sh,
    snapshot_names,
    subvol_field,
    tree_digest,
)

from coldvault.errors import ColdvaultError
from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.btrfs import diskstate
from coldvault.jobs.btrfs.runner import BtrfsRunner
from coldvault.progress import Progress
from coldvault.system.beneath import UnexpectedEntry
from coldvault.system.cancel import CancelToken

__all__ = ["module_fs"]  # the fixture is used by name


def _fs(module_fs: MakeFs) -> tuple[Path, Path]:
    return module_fs("src", 1200).mount, module_fs("dst", 1200).mount


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_symlinked_job_folder_is_refused(module_fs: MakeFs, tmp_path: Path) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "evil1")
    random_file(vol / "a.bin", 4096)
    host = tmp_path / "host"
    host.mkdir()
    (dst / "evil1").symlink_to(host)
    with pytest.raises(UnexpectedEntry, match="symlink") as caught:
        run_job(job_for(vol, name="evil1"), dst / "evil1")
    assert str(dst / "evil1") in caught.value.message
    assert list(host.iterdir()) == []


def test_symlinked_source_folder_is_refused(module_fs: MakeFs, tmp_path: Path) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "evil2")
    random_file(vol / "a.bin", 4096)
    host = tmp_path / "host"
    host.mkdir()
    (dst / "evil2").mkdir()
    (dst / "evil2" / "evil2").symlink_to(host)
    with pytest.raises(UnexpectedEntry, match="symlink"):
        run_job(job_for(vol, name="evil2"), dst / "evil2")
    assert list(host.iterdir()) == []
    # Nothing was left unsent on the source either: the refusal came first.
    assert not (src / ".coldvault-snapshots" / "evil2" / "evil2").exists() or not snapshot_names(
        src / ".coldvault-snapshots" / "evil2" / "evil2"
    )


def test_job_folder_swapped_for_a_symlink_mid_run_is_not_followed(
    module_fs: MakeFs, tmp_path: Path
) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "swap")
    random_file(vol / "a.bin", MiB)
    host = tmp_path / "host"
    host.mkdir()
    job_dir = dst / "swap"
    job_dir.mkdir()
    moved = dst / "swap.moved"

    def swap(_progress: Progress) -> None:
        # The first progress report comes while the job folder is held open.
        if not moved.exists():
            job_dir.rename(moved)
            job_dir.symlink_to(host)

    result = BtrfsRunner(job_for(vol, name="swap")).run(job_dir, swap, CancelToken())
    assert moved.exists(), "the runner reported no progress: nothing was swapped"
    assert list(host.iterdir()) == []  # not a byte through the symlink
    copy = dst / "swap.moved" / "swap" / str(result.snapshot)
    assert tree_digest(copy) == tree_digest(vol)
    assert os.readlink(dst / "swap.moved" / "swap" / "latest") == result.snapshot


def test_entries_named_like_snapshots_are_left_alone(
    module_fs: MakeFs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "plant")
    random_file(vol / "a.bin", MiB)
    job = job_for(vol, name="plant", source_keep=1, target_keep=1)
    job_dir = dst / "plant"
    first = run_job(job, job_dir)
    target = job_dir / "plant"
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep.txt").write_text("host file")
    # The only copy is replaced by a symlink to a good copy elsewhere: not a parent.
    stash = dst / "stash"
    stash.mkdir()
    snap = src / ".coldvault-snapshots" / "plant" / "plant" / str(first.snapshot)
    subprocess.run(f"btrfs send -q {snap} | btrfs receive {stash}", shell=True, check=True)
    sh("btrfs", "subvolume", "delete", target / str(first.snapshot))
    (target / str(first.snapshot)).symlink_to(stash / str(first.snapshot))
    (target / "plant.20000101T000000Z").symlink_to(host)
    (target / "plant.20000102T000000Z").mkdir()  # a plain folder, not a subvolume
    os.mkfifo(target / "plant.20000103T000000Z")
    (target / "latest").unlink()
    (target / "latest").symlink_to(host / "keep.txt")

    random_file(vol / "b.bin", 4096)
    with caplog.at_level(logging.WARNING, logger="coldvault.jobs.btrfs"):
        second = run_job(job, job_dir)
        third = run_job(job, job_dir)
    assert "full" in second.summary  # the symlinked "copy" was not taken as the parent
    assert f"incremental from {second.snapshot}" in third.summary
    warned = _warnings(caplog)
    for name, kind in (
        (str(first.snapshot), "symlink"),
        ("plant.20000101T000000Z", "symlink"),
        ("plant.20000102T000000Z", "folder that is not a subvolume"),
        ("plant.20000103T000000Z", "FIFO"),
    ):
        assert any(str(target / name) in w and f"is a {kind}" in w for w in warned), name
        assert os.path.lexists(target / name), f"{name} was touched"
    assert (target / str(first.snapshot)).is_symlink()
    assert (target / "plant.20000101T000000Z").is_symlink()
    assert (host / "keep.txt").read_text() == "host file"  # latest replaced, never followed
    assert os.readlink(target / "latest") == third.snapshot
    assert subvol_field(stash / str(first.snapshot), "Flags") == "readonly"
    # Retention (keep 1) deleted the older real copy only.
    assert [n for n in snapshot_names(target) if n.startswith("plant.2026")] == [third.snapshot]


def test_renamed_snapshots_are_still_parents_and_never_pruned(
    module_fs: MakeFs, caplog: pytest.LogCaptureFixture
) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "ren")
    random_file(vol / "a.bin", 4 * MiB)
    job = job_for(vol, name="ren", source_keep=1, target_keep=1)
    job_dir = dst / "ren"
    first = run_job(job, job_dir)
    snaps = src / ".coldvault-snapshots" / "ren" / "ren"
    target = job_dir / "ren"
    sh("mv", snaps / str(first.snapshot), snaps / "before-upgrade")
    sh("mv", target / str(first.snapshot), target / "before-upgrade-copy")

    random_file(vol / "b.bin", 4096)
    second = run_job(job, job_dir)
    assert "incremental from before-upgrade" in second.summary  # found by received_uuid
    assert second.bytes_written < MiB
    random_file(vol / "c.bin", 4096)
    third = run_job(job, job_dir)
    assert tree_digest(target / str(third.snapshot)) == tree_digest(vol)
    # Retention counts pattern names only: the renamed pair stays.
    assert "before-upgrade" in snapshot_names(snaps)
    assert "before-upgrade-copy" in snapshot_names(target)
    assert str(second.snapshot) not in snapshot_names(target)


def test_damaged_copy_is_marked_and_never_a_parent(
    module_fs: MakeFs, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import require_programs

    require_programs("filefrag", "btrfs-map-logical")
    src, dst = _fs(module_fs)
    dst_dev = module_fs("dst").device
    vol = create_subvolume(src / "rot")
    random_file(vol / "a.bin", MiB)
    job = job_for(vol, name="rot")
    job_dir = dst / "rot"
    runner = BtrfsRunner(job)
    first = run_job(job, job_dir)
    random_file(vol / "b.bin", MiB)  # only in the second copy
    second = run_job(job, job_dir)
    copy = job_dir / "rot" / str(second.snapshot)
    damage_first_block(dst_dev, copy / "b.bin")  # bit rot behind Btrfs's back

    report = runner.verify(job_dir, None, False, lambda _: None, CancelToken())
    assert not report.ok
    marks = json.loads((job_dir / "rot" / diskstate.FILE).read_text())["damaged"]
    [(uuid, mark)] = marks.items()
    assert uuid == subvol_field(copy, "UUID") and mark["name"] == second.snapshot
    assert any("b.bin" in p for p in mark["problems"])

    random_file(vol / "c.bin", 4096)
    with caplog.at_level(logging.INFO, logger="coldvault.jobs.btrfs"):
        third = run_job(job, job_dir)
    assert f"incremental from {first.snapshot}" in third.summary  # the older good parent
    logged = [r.getMessage() for r in caplog.records]
    assert any(str(second.snapshot) in m and "marked damaged" in m for m in logged)
    assert any("an older good parent" in m for m in logged)
    assert tree_digest(job_dir / "rot" / str(third.snapshot)) == tree_digest(vol)
    again = runner.verify(job_dir, None, False, lambda _: None, CancelToken())
    assert again.ok, again.problems
    # The damaged copy stays marked until a verify reads it back well; list shows it.
    assert uuid in json.loads((job_dir / "rot" / diskstate.FILE).read_text())["damaged"]
    assert f"{second.snapshot}: marked damaged by verify" in runner.list(job_dir)
    # Restore onto the source filesystem: the damaged copy is not the incremental base.
    back = src / "rot-restored"
    back.mkdir()
    request = RestoreRequest(snapshot=str(third.snapshot), dest=back)
    message = runner.restore(job_dir, request, lambda _: None, CancelToken())
    assert f"incrementally against {first.snapshot}" in message
    assert tree_digest(back / str(third.snapshot)) == tree_digest(vol)


def test_progress_shows_an_estimated_total(module_fs: MakeFs) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "est")
    random_file(vol / "a.bin", 2 * MiB)
    job = job_for(vol, name="est")
    job_dir = dst / "est"
    runs: list[list[Progress]] = []
    results = []
    for i in range(3):
        random_file(vol / f"f{i}.bin", 256 * 1024)
        seen: list[Progress] = []
        results.append(BtrfsRunner(job).run(job_dir, seen.append, CancelToken()))
        runs.append([p for p in seen if p.phase == "sending"])
    full, first_incremental, second_incremental = runs
    assert full[0].total_bytes and full[0].total_is_estimate  # the source's used space
    assert "of about" in full[0].describe()
    assert first_incremental[0].total_bytes is None  # no incremental send measured yet
    assert second_incremental[0].total_bytes == results[1].bytes_written
    assert second_incremental[0].total_is_estimate
    assert second_incremental[-1].total_bytes == max(
        results[1].bytes_written, results[2].bytes_written
    )


def test_verify_and_list_report_planted_entries(module_fs: MakeFs, tmp_path: Path) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "lv")
    random_file(vol / "a.bin", 4096)
    job = job_for(vol, name="lv")
    job_dir = dst / "lv"
    result = run_job(job, job_dir)
    (job_dir / "lv" / "lv.20000101T000000Z").symlink_to(tmp_path)
    runner = BtrfsRunner(job)
    report = runner.verify(job_dir, None, True, lambda _: None, CancelToken())
    assert [p for p in report.problems if "lv.20000101T000000Z" in p and "symlink" in p]
    assert report.snapshots == (result.snapshot,)
    listed = runner.list(job_dir)
    assert "lv.20000101T000000Z" in listed and "symlink" in listed
    with pytest.raises(ColdvaultError, match="not a finished backup"):
        runner.verify(job_dir, "lv.20000101T000000Z", False, lambda _: None, CancelToken())


def test_subvolume_delete_never_follows_a_symlink(module_fs: MakeFs) -> None:
    """``btrfs subvolume delete DIR/name`` realpath()s a symlink ``name`` and deletes
    its target (seen with btrfs-progs 6.2, even through /proc/PID/fd); the ioctl
    coldvault uses looks the name up in the held folder and refuses."""
    from coldvault.errors import JobError
    from coldvault.jobs.btrfs import subvol
    from coldvault.system.beneath import SafeDir

    _, dst = _fs(module_fs)
    victim = create_subvolume(dst / "victim")
    folder = dst / "delfolder"
    folder.mkdir()
    (folder / "snap.20260101T000000Z").symlink_to(victim)
    with SafeDir.open_root(folder) as held:
        assert subvol.info_at(held, "snap.20260101T000000Z") is None
        with pytest.raises(JobError, match="cannot delete subvolume"):
            subvol.destroy(held, "snap.20260101T000000Z")
        assert subvol_field(victim, "Name") == "victim"
        create_subvolume(folder / "real")
        # Names made after the folder was opened are listed (Btrfs lists, per open
        # descriptor, only entries older than it: SafeDir.names() reopens the folder).
        assert "real" in held.names()
        subvol.destroy(held, "real")
        subvol.commit(held)
    assert not (folder / "real").exists()
    assert (folder / "snap.20260101T000000Z").is_symlink()


def test_planted_state_files_are_never_followed(
    module_fs: MakeFs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "st")
    random_file(vol / "a.bin", 4096)
    job = job_for(vol, name="st")
    job_dir = dst / "st"
    first = run_job(job, job_dir)
    host = tmp_path / "host.txt"
    host.write_text("host file\n")
    folder = job_dir / "st"
    (folder / ".coldvault-btrfs.json").unlink()  # written by the first run
    (folder / ".coldvault-btrfs.json").symlink_to(host)
    (folder / ".coldvault-unsent").symlink_to(host)
    random_file(vol / "b.bin", 4096)
    with caplog.at_level(logging.WARNING, logger="coldvault.jobs.btrfs"):
        second = run_job(job, job_dir)
        report = BtrfsRunner(job).verify(job_dir, None, True, lambda _: None, CancelToken())
    assert f"incremental from {first.snapshot}" in second.summary
    assert report.ok, report.problems
    assert host.read_text() == "host file\n"
    assert (folder / ".coldvault-btrfs.json").is_symlink()
    assert (folder / ".coldvault-unsent").is_symlink()
    assert any(".coldvault-btrfs.json" in w for w in _warnings(caplog))


def test_cli_names_a_symlinked_folder_without_traceback(
    module_fs: MakeFs, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    from tests.integration.test_btrfs_faults import cli, write_config

    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "clisym")
    random_file(vol / "a.bin", 4096)
    host = tmp_path / "host"
    host.mkdir()
    (dst / "clisym").symlink_to(host)
    config = write_config(tmp_path, dst, [vol], name="clisym")
    done = cli(coldvault_cmd, config, "run", "clisym")
    assert done.returncode != 0, done.stderr
    assert f"{dst / 'clisym'} is a symlink" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(host.iterdir()) == []
    listed = cli(coldvault_cmd, config, "verify", "clisym")
    assert "Traceback" not in listed.stderr and listed.returncode != 0


def test_only_copy_marked_damaged_means_a_full_send(
    module_fs: MakeFs, caplog: pytest.LogCaptureFixture
) -> None:
    from coldvault.system.beneath import SafeDir

    src, dst = _fs(module_fs)
    vol = create_subvolume(src / "onlybad")
    random_file(vol / "a.bin", MiB)
    job = job_for(vol, name="onlybad")
    job_dir = dst / "onlybad"
    first = run_job(job, job_dir)
    copy = job_dir / "onlybad" / str(first.snapshot)
    with SafeDir.open_root(job_dir / "onlybad") as folder:  # as verify records a finding
        state = diskstate.with_verified(
            diskstate.load(folder),
            {},
            {subvol_field(copy, "UUID"): (str(first.snapshot), ("a.bin: cannot be read back",))},
        )
        diskstate.save(folder, state)
    random_file(vol / "b.bin", 4096)
    with caplog.at_level(logging.INFO, logger="coldvault.jobs.btrfs"):
        second = run_job(job, job_dir)
    assert "full" in second.summary and second.bytes_written > MiB
    assert any("no good snapshot shared" in r.getMessage() for r in caplog.records)
    assert tree_digest(job_dir / "onlybad" / str(second.snapshot)) == tree_digest(vol)
