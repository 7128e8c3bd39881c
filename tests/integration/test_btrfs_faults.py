"""btrfs job faults and the per-job commands, driven through the real `coldvault` CLI.

A backup killed with SIGKILL mid-stream, a backup disk that fills up, restore
round trips, list and verify.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.integration.btrfs_env import (
    MakeFs,
    MiB,
    create_subvolume,
    damage_first_block,
    job_for,
    make_fs,
    random_file,
    run_job,
    sh,
    snapshot_names,
    subvol_field,
    tree_digest,
    wait_group_gone,
)

from coldvault.errors import JobError
from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.btrfs.runner import BtrfsRunner
from coldvault.system.cancel import CancelToken

__all__ = ["make_fs"]  # the fixture is used by name


def write_config(tmp: Path, backup_root: Path, sources: list[Path], name: str = "data") -> Path:
    """A config whose backup root is a plain folder on the target Btrfs (no disk stack)."""
    config = tmp / "config.yaml"
    listed = ", ".join(str(s) for s in sources)
    config.write_text(
        f"""
disk:
  mount:
    point: {backup_root}
    require_mount: false
settings:
  state_file: {tmp}/state.json
  runtime_dir: {tmp}/run
  lock_file: {tmp}/lock
jobs:
  - name: {name}
    type: btrfs
    sources: [{listed}]
    source_retention: {{keep_last: 5}}
"""
    )
    return config


def cli(
    coldvault_cmd: list[str], config: Path, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*coldvault_cmd, "--config", str(config), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _received(folder: Path) -> list[str]:
    return snapshot_names(folder)


def test_sigkill_mid_stream_then_next_run_cleans_up(
    make_fs: MakeFs, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    src, dst = make_fs("src", 800), make_fs("dst", 800)
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "small.bin", MiB)
    config = write_config(tmp_path, dst.mount, [vol])
    first = cli(coldvault_cmd, config, "run", "data")
    assert first.returncode == 0, first.stderr
    target = dst.mount / "data" / "data"
    [first_name] = _received(target)

    random_file(vol / "big.bin", 300 * MiB)
    child = subprocess.Popen(
        [*coldvault_cmd, "--config", str(config), "run", "data"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_received(target)) < 2:  # the receive has created its subvolume
            assert child.poll() is None, "the backup finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.05)  # let some data flow
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        # The orphaned send/receive see the relay vanish and exit; wait for them.
        wait_group_gone(child.pid)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    partial = [n for n in _received(target) if n != first_name]
    assert len(partial) == 1
    assert subvol_field(target / partial[0], "Received UUID") == "-"  # killed mid-stream
    assert os.readlink(target / "latest") == first_name

    again = cli(coldvault_cmd, config, "run", "data")
    assert again.returncode == 0, again.stderr
    assert f"deleting {target / partial[0]}" in again.stderr  # the log says so
    names = _received(target)
    assert partial[0] not in names
    assert len(names) == 2
    newest = names[-1]
    assert os.readlink(target / "latest") == newest
    assert subvol_field(target / newest, "Flags") == "readonly"
    assert tree_digest(target / newest) == tree_digest(vol)


def test_target_too_small_fails_clearly_and_keeps_earlier_backups(make_fs: MakeFs) -> None:
    src, dst = make_fs("src", 600), make_fs("dst", 160)
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "a.bin", 2 * MiB)
    job = job_for(vol)
    job_dir = dst.mount / "data"
    first = run_job(job, job_dir)
    before = tree_digest(job_dir / "data" / str(first.snapshot))

    random_file(vol / "huge.bin", 250 * MiB)
    with pytest.raises(JobError, match="no space left") as caught:
        run_job(job, job_dir)
    assert "earlier backups are intact" in caught.value.message
    assert _received(job_dir / "data") == [first.snapshot]
    assert os.readlink(job_dir / "data" / "latest") == first.snapshot
    assert tree_digest(job_dir / "data" / str(first.snapshot)) == before
    assert subvol_field(job_dir / "data" / str(first.snapshot), "Flags") == "readonly"


def test_restore_round_trip_list_and_verify(
    make_fs: MakeFs, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    src, dst, elsewhere = make_fs("src"), make_fs("dst"), make_fs("elsewhere")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "big.bin", 12 * MiB)
    random_file(vol / "d/e/f.bin", 1000)
    config = write_config(tmp_path, dst.mount, [vol])
    assert cli(coldvault_cmd, config, "run", "data").returncode == 0
    random_file(vol / "d/new.bin", 5000)
    assert cli(coldvault_cmd, config, "run", "data").returncode == 0
    target = dst.mount / "data" / "data"
    older, newest = _received(target)

    listed = cli(coldvault_cmd, config, "list", "data")
    assert listed.returncode == 0, listed.stderr
    rows = {ln.split()[0]: ln.split() for ln in listed.stdout.splitlines() if ln.startswith("  d")}
    assert rows[newest][1:4] == ["yes", "complete", "yes"]
    assert "latest" in rows[newest][-1]
    assert "MiB" in listed.stdout  # sizes from btrfs filesystem du

    verified = cli(coldvault_cmd, config, "verify", "data", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "all good" in verified.stdout

    # Full restore to another filesystem: byte-identical to what was backed up.
    dest = elsewhere.mount / "restore"
    dest.mkdir()
    restored = cli(coldvault_cmd, config, "restore", "data", dest)
    assert restored.returncode == 0, restored.stderr
    assert "in full" in restored.stdout
    assert "btrfs subvolume snapshot" in restored.stdout  # how to make it writable
    snaps = src.mount / ".coldvault-snapshots" / "data" / "data"
    assert tree_digest(dest / newest) == tree_digest(snaps / newest)

    # Never overwrites.
    again = cli(coldvault_cmd, config, "restore", "data", dest)
    assert again.returncode == 1
    assert "never overwrites" in again.stderr + again.stdout

    # Back onto the source filesystem, which still holds the older snapshot: incremental.
    back = src.mount / "restored"
    back.mkdir()
    request = RestoreRequest(snapshot=newest, dest=back)
    message = BtrfsRunner(job_for(vol)).restore(
        dst.mount / "data", request, lambda _: None, CancelToken()
    )
    assert f"incrementally against {older}" in message
    assert tree_digest(back / newest) == tree_digest(snaps / newest)


def test_verify_finds_incomplete_copy(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "a.bin", MiB)
    job = job_for(vol)
    first = run_job(job, dst.mount / "data")
    copy = dst.mount / "data" / "data" / str(first.snapshot)
    # Made writable by hand: btrfs clears received_uuid, so it is no longer a valid copy.
    sh("btrfs", "property", "set", "-f", "-ts", copy, "ro", "false")
    report = BtrfsRunner(job).verify(dst.mount / "data", None, True, lambda _: None, CancelToken())
    assert not report.ok
    assert any("not read-only" in p for p in report.problems)
    assert report.items_checked >= 2


def test_verify_finds_a_damaged_block(make_fs: MakeFs) -> None:
    from tests.conftest import require_programs

    require_programs("filefrag", "btrfs-map-logical")
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "a.bin", MiB)
    random_file(vol / "b.bin", MiB)
    job = job_for(vol)
    first = run_job(job, dst.mount / "data")
    report = BtrfsRunner(job).verify(dst.mount / "data", None, False, lambda _: None, CancelToken())
    assert report.ok, report.problems

    copy = dst.mount / "data" / "data" / str(first.snapshot)
    damage_first_block(dst.device, copy / "a.bin")  # bit rot behind Btrfs's back
    report = BtrfsRunner(job).verify(dst.mount / "data", None, False, lambda _: None, CancelToken())
    assert not report.ok
    assert [p for p in report.problems if "a.bin" in p and "cannot be read back" in p]
    assert not [p for p in report.problems if "b.bin" in p]
