"""Offsite copies of an image job to a local restic repository, through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.conftest import ROOT
from tests.integration.offsite_env import OffsiteEnv

MiB = 1 << 20


@pytest.fixture
def env(tmp_path: Path) -> OffsiteEnv:
    e = OffsiteEnv(tmp_path)
    e.add_target("local", str(tmp_path / "repo"))
    e.ok("offsite", "init", "local")
    return e


def restic_json(env: OffsiteEnv, *args: str) -> object:
    pass_env = {**os.environ, "RESTIC_PASSWORD_FILE": str(env.password)}
    argv = ["restic", "-r", str(env.tmp / "repo"), "--json", *args]
    return json.loads(subprocess.run(argv, env=pass_env, capture_output=True, check=True).stdout)


def restic_ok(env: OffsiteEnv, *args: str) -> subprocess.CompletedProcess[str]:
    pass_env = {**os.environ, "RESTIC_PASSWORD_FILE": str(env.password)}
    argv = ["restic", "-r", str(env.tmp / "repo"), *args]
    return subprocess.run(argv, env=pass_env, capture_output=True, text=True, check=False)


def lock_holder(env: OffsiteEnv) -> subprocess.Popen[bytes]:
    """A restic that holds a lock until killed: a backup waiting for its standard input."""
    return subprocess.Popen(
        ["restic", "-r", str(env.tmp / "repo"), "backup", "--stdin"],
        env={**os.environ, "RESTIC_PASSWORD_FILE": str(env.password)},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_readable_lock(env: OffsiteEnv) -> None:
    """Until restic can read the holder's lock: a lock file killed half-written (empty) is
    one restic 0.14 ignores, which would make the test about nothing."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for lock in (env.tmp / "repo" / "locks").iterdir():
            if restic_ok(env, "cat", "lock", lock.name, "--no-lock").returncode == 0:
                return
        time.sleep(0.05)
    raise AssertionError("restic made no readable lock to test with")


def test_init_twice_reports_the_existing_repository(env: OffsiteEnv) -> None:
    assert "exists already (not created again)" in env.ok("offsite", "init", "local")


def test_copy_restore_and_nothing_twice(env: OffsiteEnv) -> None:
    env.ok("run")
    first = env.ok("offsite", "run", "local")
    assert "17 new, 0 changed, 0 unchanged files" in first
    assert "already in the repository" in env.ok("offsite", "run", "local")
    dest = env.tmp / "restored.img"
    out = env.ok("restore", "root", str(dest), "--from", "local")
    assert "16 parts" in out and "every part checked" in out
    assert dest.read_bytes() == env.source.read_bytes()
    listing = env.ok("offsite", "list", "local", "root")
    assert "1 snapshot(s) in offsite local" in listing and "4.0 MiB" in listing
    state = env.offsite_state()["disks"]["local"]["jobs"]["root"]
    assert state["result"] == "success" and state["last_success"]
    snaps = restic_json(env, "snapshots")
    assert isinstance(snaps, list) and len(snaps) == 1
    assert "coldvault-job=root" in snaps[0]["tags"]


def test_restore_of_a_damaged_offsite_part_is_refused(env: OffsiteEnv) -> None:
    env.ok("run")
    env.ok("offsite", "run", "local")
    # A snapshot whose part differs from its manifest (made by hand with restic).
    folder = next(p for p in (env.disk.root / "root").iterdir() if p.name.startswith("snapshot-"))
    bad = env.tmp / "bad"
    subprocess.run(["cp", "-a", str(folder), str(bad)], check=True)
    part = sorted(p for p in bad.iterdir() if not p.name.startswith(".") and p.stat().st_size)[0]
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    tagged = ["--tag", "coldvault-job=root", "--tag", "coldvault-snapshot=bad"]
    done = subprocess.run(
        ["restic", "-r", str(env.tmp / "repo"), "backup", *tagged, "."],
        cwd=bad,
        env={**os.environ, "RESTIC_PASSWORD_FILE": str(env.password)},
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = env.cli("restore", "root", str(env.tmp / "r.img"), "--from", "local", "--snapshot", "bad")
    assert out.returncode == 6, out.stderr
    assert "does not match its manifest" in out.stderr and "Traceback" not in out.stderr


def test_wrong_password_is_a_clear_failure_and_the_next_run_works(env: OffsiteEnv) -> None:
    env.ok("run")
    env.password.write_text("not the password\n")
    done = env.cli("offsite", "run", "local")
    assert done.returncode == 1
    assert "the password does not open it" in done.stdout + done.stderr
    assert str(env.tmp / "repo") not in done.stdout + done.stderr  # the repository is masked
    assert env.offsite_state()["disks"]["local"]["jobs"]["root"]["result"] == "failed"
    env.password.write_text("offsite-test-password\n")
    assert "17 new" in env.ok("offsite", "run", "local")


def test_a_password_file_others_can_read_is_refused(env: OffsiteEnv) -> None:
    env.ok("run")
    env.password.chmod(0o644)
    done = env.cli("offsite", "run", "local")
    assert done.returncode == 1 and "chmod 600" in done.stderr, done.stderr


def test_upload_killed_then_next_run_works_and_check_is_clean(env: OffsiteEnv) -> None:
    env.source.write_bytes(os.urandom(64 * MiB))
    env.jobs[0]["part_size"] = "1M"
    env.write()
    env.ok("run")
    cmd = [sys.executable, "-m", "coldvault", "--config", str(env.config), "offsite", "run"]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((env.tmp / "repo" / "data").rglob("*")):
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # coldvault and restic together, as a power cut would
    proc.wait()
    out = env.ok("offsite", "run", "local")
    assert "restic snapshot" in out
    check = restic_ok(env, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    env.ok("restore", "root", str(env.tmp / "r.img"), "--from", "local")
    assert (env.tmp / "r.img").read_bytes() == env.source.read_bytes()


def test_stale_lock_of_a_killed_restic_is_removed_and_said(env: OffsiteEnv) -> None:
    env.ok("run")
    env.ok("offsite", "run", "local")
    holder = lock_holder(env)
    wait_for_readable_lock(env)
    holder.kill()
    holder.wait()
    env.change_source(0, 4096)
    env.ok("run")
    env.forget_due()  # forget takes the exclusive lock the stale one blocks
    done = env.cli("offsite", "run", "local")
    assert done.returncode == 0, done.stderr
    assert "removing the stale lock left by restic PID" in done.stderr, done.stderr
    assert not list((env.tmp / "repo" / "locks").iterdir())


def test_a_lock_of_a_live_restic_is_reported_not_broken(env: OffsiteEnv) -> None:
    env.ok("run")
    env.ok("offsite", "run", "local")
    holder = lock_holder(env)
    try:
        wait_for_readable_lock(env)
        done = env.cli("offsite", "unlock", "local")
        assert done.returncode == 1, done.stderr
        assert f"PID {holder.pid}" in done.stderr and "is locked" in done.stderr
        assert list((env.tmp / "repo" / "locks").iterdir())
    finally:
        holder.kill()
        holder.wait()


def test_a_daemon_session_copies_after_the_backups(env: OffsiteEnv) -> None:
    from coldvault.config.loader import load
    from coldvault.progress import no_progress
    from coldvault.service.runner import run_session
    from coldvault.system.cancel import CancelToken

    config = load(env.config)
    outcome = run_session(
        config, config.jobs, cancel=CancelToken(), progress=no_progress, offsite=True
    )
    assert [o.result for o in outcome.jobs] == ["success"]
    snaps = restic_json(env, "snapshots")
    assert isinstance(snaps, list) and len(snaps) == 1
    done = env.offsite_state()["disks"]["local"]["jobs"]["root"]
    assert done["result"] == "success" and "17 new" in done["summary"]
    # Not due again (every session by default, but the newest backup is already there).
    run_session(config, (), cancel=CancelToken(), progress=no_progress, offsite=True)
    assert len(restic_json(env, "snapshots")) == 1  # type: ignore[arg-type]


def _summary(env: OffsiteEnv) -> dict[str, int]:
    """bytes read and added of the last offsite run, from the offsite state."""
    job = env.offsite_state()["disks"]["local"]["jobs"]["root"]
    return {"read": job["bytes_read"], "added": job["bytes_written"]}


def test_unchanged_and_one_percent_runs_read_and_send_little(tmp_path: Path) -> None:
    size = 1 << 30  # the 1 GiB image, 1 MiB parts
    env = OffsiteEnv(tmp_path, source_bytes=0, part_size="1M")
    with env.source.open("wb") as f:
        for _ in range(size // (64 * MiB)):
            f.write(os.urandom(64 * MiB))
    env.add_target("local", str(tmp_path / "repo"))
    env.ok("offsite", "init", "local")
    env.ok("run")
    env.ok("offsite", "run", "local")
    env.ok("run")  # nothing changed: a new snapshot folder of hard links
    out = env.ok("offsite", "run", "local")
    unchanged = _summary(env)
    assert "1024 unchanged files" in out, out
    assert unchanged["read"] < size // 100 and unchanged["added"] < size // 100, unchanged
    for i in range(10):  # 1 % of the parts: 10 of 1024, 1 MiB each
        env.change_source(i * 100 * MiB, MiB)
    env.ok("run")
    out = env.ok("offsite", "run", "local")
    changed = _summary(env)
    assert "11 changed" in out, out  # the 10 parts and the manifest
    assert 10 * MiB <= changed["added"] < 12 * MiB, changed
    # rchar also counts restic reading back its own temporary pack files to store
    # them (about twice the data added): the source side is the 10 MiB changed.
    assert 10 * MiB <= changed["read"] < 40 * MiB, changed
    print(f"unchanged: {unchanged}, 1 % changed: {changed}")


def test_retention_is_applied_per_job_with_the_shared_mapping(tmp_path: Path) -> None:
    env = OffsiteEnv(tmp_path)
    env.add_target("local", str(tmp_path / "repo"), retention={"keep_last": 2})
    env.ok("offsite", "init", "local")
    ids = []
    for i in range(3):
        env.change_source(i * 4096, 16)
        env.ok("run")
        if i:
            env.forget_due()  # retention runs once a day: make this run's due
        env.ok("offsite", "run", "local")
        snaps = restic_json(env, "snapshots")
        assert isinstance(snaps, list)
        ids.append(snaps[-1]["short_id"])
    kept = restic_json(env, "snapshots")
    assert isinstance(kept, list)
    assert [s["short_id"] for s in kept] == ids[1:]
    assert restic_ok(env, "check").returncode == 0


def test_a_full_remote_is_a_clear_failure_and_the_next_run_works(tmp_path: Path) -> None:
    from tests.conftest import require_root

    require_root()
    env = OffsiteEnv(tmp_path, source_bytes=24 * MiB, part_size="1M")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        env.add_target("local", str(small / "repo"))
        env.ok("offsite", "init", "local")
        env.ok("run")
        done = env.cli("offsite", "run", "local")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "the remote storage is full" in done.stderr and "Traceback" not in done.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        assert "restic snapshot" in env.ok("offsite", "run", "local")
        pass_env = {**os.environ, "RESTIC_PASSWORD_FILE": str(env.password)}
        check = subprocess.run(
            ["restic", "-r", str(small / "repo"), "check"],
            env=pass_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_settings_hooks_run_after_a_copy_with_the_target_named(env: OffsiteEnv) -> None:
    seen = env.tmp / "hook.txt"
    script = f'echo "$COLDVAULT_JOB $COLDVAULT_RESULT $COLDVAULT_OFFSITE" >> {seen}'
    data = yaml.safe_load(env.config.read_text())
    data["settings"]["on_success"] = ["sh", "-c", script]
    data["settings"]["on_failure"] = ["sh", "-c", script]
    env.config.write_text(yaml.safe_dump(data))
    env.ok("run")
    env.ok("offsite", "run", "local")
    env.password.write_text("wrong\n")
    env.change_source(0, 16)
    env.ok("run")
    assert env.cli("offsite", "run", "local").returncode == 1
    assert seen.read_text().splitlines() == [
        "root success ",
        "root success local",
        "root success ",
        "root failed local",
    ]


def test_a_remembered_parent_the_repository_lost_is_looked_up_again(env: OffsiteEnv) -> None:
    env.ok("run")
    env.ok("offsite", "run", "local")
    path = env.tmp / "state.offsite.json"
    data = json.loads(path.read_text())
    marks = data["disks"]["local"]["marks"]["root"]
    key = next(k for k in marks if k.startswith("newest-"))
    marks[key] = "0" * 8 + " " + marks[key].split(" ", 1)[1]  # an id restic never made
    path.write_text(json.dumps(data))
    env.change_source(0, 16)
    env.ok("run")
    done = env.cli("-v", "offsite", "run", "local")
    assert done.returncode == 0, done.stderr
    assert "the remembered parent is gone" in done.stderr
    assert "2 changed, 15 unchanged files" in done.stdout, done.stdout  # a part, the manifest
