"""The real daemon verifies after the due backups, spreads a round over sessions, reports rot."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.daemon_env import DaemonEnv, completed_snapshots, daemon_env, image_job

MiB = 1 << 20


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DaemonEnv]:
    with daemon_env(tmp_path) as e:
        yield e


def _verify(env: DaemonEnv) -> dict[str, object]:
    state = env.job_state("home")
    return dict(state.get("verify") or {}) if state else {}


def test_scheduled_verify_after_backups_split_over_sessions_then_rot(env: DaemonEnv) -> None:
    src = env.tmp / "source.img"
    src.write_bytes(os.urandom(4 * MiB))  # 4 parts of 1 MiB
    job = image_job("home", src, every="2s", verify={"every": "1h", "max_per_session": "1M"})
    env.write_config([job])
    env.disk.write_bytes(b"")
    env.start()
    env.wait_until("a finished verification", lambda: _verify(env).get("result") == "ok")
    v = _verify(env)
    assert isinstance(v["sessions"], int) and v["sessions"] >= 2, v  # spread over sessions
    assert isinstance(v["items"], int) and v["items"] >= 4, v  # every part of every snapshot
    assert v["problem_count"] == 0 and v["position"] is None

    # Within the first session: the backup finished, then the verification started.
    log = env.log_text().splitlines()
    backup = next(i for i, ln in enumerate(log) if "home: backup finished" in ln)
    started = next(i for i, ln in enumerate(log) if "scheduled verification started" in ln)
    second = next(i for i, ln in enumerate(log) if i > backup and "starting a disk session" in ln)
    assert backup < started < second
    assert any("verification finished" in ln for ln in log)
    assert env.cli("status").returncode in (0, 7)

    # Rot in a part that every snapshot shares; a new round (verify every 1s) finds it.
    part = completed_snapshots(env.backup / "home")[0] / "part_00000002"
    stamp = part.stat()
    with part.open("r+b") as f:
        f.seek(100)
        f.write(b"rot")
    os.utime(part, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    job["verify"] = {"every": "1s", "max_per_session": "1M"}
    env.write_config([job])
    assert env.proc is not None
    env.proc.send_signal(signal.SIGHUP)
    env.wait_until("the damage is found", lambda: _verify(env).get("result") == "problems")
    v = _verify(env)
    problems = v["problems"]
    assert isinstance(problems, list) and all("part_00000002" in p for p in problems)
    status = env.cli("status")
    assert status.returncode == 6, status.stdout + status.stderr
    assert "VERIFY FOUND" in status.stdout and "part_00000002" in status.stdout
    as_json = env.cli("status", "--json")
    assert as_json.returncode == 6 and '"verify_problems": true' in as_json.stdout
    assert "verification failed" in env.log_text()
    assert env.stop() == 0


def test_damaged_state_file_holds_jobs_without_crashing(env: DaemonEnv) -> None:
    src = env.tmp / "source.img"
    src.write_bytes(os.urandom(MiB))
    env.write_config([image_job("home", src)])
    env.state.write_text(
        '{"version": 1, "jobs": {"home": {"last_attempt": "2026-12-01T18:00:00"}}}'
    )
    env.disk.write_bytes(b"")
    env.start()
    env.notify.wait_for(lambda m: "state file unreadable" in m and "jobs.home.last_attempt" in m)
    assert not (env.backup / "home").exists()  # held: nothing ran
    status = env.cli("status")
    assert status.returncode == 1 and "jobs.home.last_attempt" in status.stdout
    assert "Traceback" not in env.log_text() + status.stderr
    assert env.stop() == 0
