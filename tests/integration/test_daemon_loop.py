"""The real daemon as a subprocess: notify protocol, hot-plug, signals, reload, status, lock."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.daemon_env import (
    DaemonEnv,
    completed_snapshots,
    daemon_env,
    file_digest,
    image_digest,
    image_job,
)

MiB = 1 << 20


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DaemonEnv]:
    with daemon_env(tmp_path) as e:
        yield e


def _small_source(env: DaemonEnv) -> Path:
    src = env.tmp / "source.img"
    src.write_bytes(os.urandom(2 * MiB) + bytes(MiB) + os.urandom(MiB // 2))
    return src


def _big_source(env: DaemonEnv, size: int = 4096 * MiB) -> Path:
    """Sparse, with some data up front: long enough to catch the job running (4k blocks of
    a 4 GiB source take seconds; 512 MiB took one since the pass reads on its hashing thread)."""
    src = env.tmp / "big.img"
    with src.open("wb") as f:
        f.write(os.urandom(4 * MiB))
        f.truncate(size)
    return src


def test_notify_hotplug_backup_and_stop(env: DaemonEnv) -> None:
    src = _small_source(env)
    env.write_config([image_job("home", src)])
    env.start(watchdog_usec=400_000)

    ready = env.notify.wait_for(lambda m: "READY=1" in m)
    assert "STATUS=waiting for disk; due: home" in ready
    pings = 0
    while pings < 3:  # regular pings while idle
        env.notify.wait_for(lambda m: m == "WATCHDOG=1")
        pings += 1
    assert env.job_state("home") is None  # the disk is absent: nothing ran

    env.disk.write_bytes(b"")  # the disk appears after start
    env.notify.wait_for(lambda m: "STATUS=disk present; next: home in 23h" in m)
    state = env.job_state("home")
    assert state is not None and state["result"] == "success", state
    assert state["bytes_read"] == src.stat().st_size
    [snap] = completed_snapshots(env.backup / "home")
    assert image_digest(snap, MiB) == file_digest(src)
    statuses = env.notify.statuses()
    assert statuses[0] == "waiting for disk; due: home"
    assert any(s.startswith(("opening the backup disk", "home:")) for s in statuses)

    assert env.stop() == 0
    stop = env.notify.wait_for(lambda m: "STOPPING=1" in m)
    assert "STATUS=stopping: SIGTERM received" in stop
    # Children (hooks, inhibitor) never talk on our notify socket.
    assert not [m for m in env.notify.messages if "ERRNO=" in m or m.count("READY=1") > 1]
    assert not (env.runtime / "status.json").exists()
    assert "backup disk " in env.log_text() and "appeared" in env.log_text()


def test_live_status_busy_sigterm_mid_job_then_resume(env: DaemonEnv) -> None:
    src = _big_source(env)
    job = image_job("home", src, part_size="4M", block_size="4k")
    env.write_config([job])
    env.disk.write_bytes(b"")
    env.start(watchdog_usec=None)

    # `coldvault status --json` shows the running job's live progress.
    progress: dict[str, object] = {}

    def running() -> bool:
        nonlocal progress
        [entry] = env.status_json()["jobs"]
        progress = entry["progress"] or {}
        return int(str(progress.get("done_bytes", 0))) > 0

    env.wait_until("live progress", running)
    assert env.proc is not None
    # Hold the job where it is (the lock stays held) so a slow machine cannot let it
    # finish before the checks below and the stop.
    env.proc.send_signal(signal.SIGSTOP)
    assert progress["job"] == "home"
    assert progress["phase"] == "reading"
    assert progress["total_bytes"] == src.stat().st_size
    report = env.status_json()
    assert report["daemon"]["pid"] == env.proc.pid if env.proc else False
    assert report["daemon"]["activity"].startswith("home: reading")

    # A one-shot run while the daemon holds the disk: exit 5 with a clear message.
    busy = env.cli("run", "home")
    assert busy.returncode == 5, busy.stderr
    assert "busy" in busy.stderr and str(env.proc.pid if env.proc else "") in busy.stderr

    # SIGTERM in the middle of the job: clean exit, no success claimed, no snapshot made.
    env.proc.send_signal(signal.SIGCONT)
    assert env.stop() == 0
    state = env.job_state("home")
    assert state is not None
    assert state["result"] == "cancelled" and state["last_success"] is None
    assert completed_snapshots(env.backup / "home") == []
    assert "home: backup stopped" in env.log_text()
    assert not (env.runtime / "status.json").exists()

    # The next run completes, and the backup is whole.
    done = env.cli("run", "home", timeout=300)
    assert done.returncode == 0, done.stderr
    state = env.job_state("home")
    assert state is not None and state["result"] == "success"
    [snap] = completed_snapshots(env.backup / "home")
    assert image_digest(snap, 4 * MiB) == file_digest(src)
    assert env.cli("status").returncode == 0  # nothing overdue any more


def test_sighup_reload_keeps_old_config_when_broken(env: DaemonEnv) -> None:
    src = _small_source(env)
    env.write_config([image_job("home", src)])
    env.start(watchdog_usec=None)
    env.notify.wait_for(lambda m: "READY=1" in m)

    env.config.write_text("jobs:\n  - name: broken\n    type: image\n    part_size: -3\n")
    assert env.proc is not None
    env.proc.send_signal(signal.SIGHUP)
    env.wait_until("rejection logged", lambda: "new configuration rejected" in env.log_text())
    assert env.proc.poll() is None
    # (`coldvault status` would read the broken file too: look at the daemon's own status file.)
    live = json.loads((env.runtime / "status.json").read_text())
    assert live["activity"] == "waiting for disk; due: home"

    # The old configuration still works: the disk appears and "home" is backed up.
    env.disk.write_bytes(b"")
    env.wait_until("backup", lambda: (env.job_state("home") or {}).get("result") == "success")

    # A valid new configuration is taken.
    env.write_config([image_job("home", src), image_job("docs", src)])
    env.proc.send_signal(signal.SIGHUP)
    env.wait_until(
        "docs backed up", lambda: (env.job_state("docs") or {}).get("result") == "success"
    )
    assert "configuration reloaded: 2 job(s)" in env.log_text()
    assert env.stop() == 0


def _ptrace(request: int, tid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(request, tid, None, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request}, {tid}): {os.strerror(err)}")


@contextlib.contextmanager
def _main_thread_stopped(pid: int) -> Iterator[None]:
    """Stop only the main thread (ptrace works per thread); the others keep running."""
    seize, interrupt, detach = 0x4206, 0x4207, 17
    _ptrace(seize, pid)
    try:
        _ptrace(interrupt, pid)
        os.waitpid(pid, 0x40000000)  # __WALL: wait for the traced thread to stop
        yield
    finally:
        _ptrace(detach, pid)


def test_watchdog_stops_while_main_loop_is_stuck(env: DaemonEnv) -> None:
    """A main thread stopped for real (its other threads running) stops the pings.

    A configuration on a FIFO used to block the loop; it is now refused without
    blocking, so the test stops the main thread itself.
    """
    src = _small_source(env)
    env.write_config([image_job("home", src)])
    env.start(watchdog_usec=200_000)
    env.notify.wait_for(lambda m: "READY=1" in m)
    env.notify.wait_for(lambda m: m == "WATCHDOG=1")
    assert env.proc is not None
    with _main_thread_stopped(env.proc.pid):
        env.notify.pump(1.0)  # pings already in flight
        stuck = env.notify.pump(3.0)  # 15 ping intervals
        assert "WATCHDOG=1" not in stuck
        assert env.proc.poll() is None
    env.notify.wait_for(lambda m: m == "WATCHDOG=1")  # the loop runs again, pings resume
    assert env.stop() == 0


def test_run_hooks_failure_not_fatal_and_overdue_status(env: DaemonEnv) -> None:
    src = _small_source(env)
    dump = (
        "import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
        "if k.startswith('COLDVAULT_')}, open(sys.argv[1], 'w'))"
    )
    hook = lambda name: ["python3", "-c", dump, str(env.tmp / name)]  # noqa: E731
    env.write_config(
        [
            image_job("good", src, on_success=[hook("good.json"), ["false"]]),
            image_job("bad", env.tmp / "missing.img", on_failure=[hook("bad.json")]),
        ],
        on_failure=[hook("global-bad.json")],
    )
    env.disk.write_bytes(b"")
    out = env.cli("run")
    assert out.returncode == 1, out.stderr  # one job failed
    assert "good: success" in out.stdout and "bad: failed" in out.stdout
    assert "on_success hook failed" in out.stderr  # logged, not fatal

    good = json.loads((env.tmp / "good.json").read_text())
    assert good["COLDVAULT_JOB"] == "good" and good["COLDVAULT_ERROR"] == ""
    for name in ("bad.json", "global-bad.json"):
        bad = json.loads((env.tmp / name).read_text())
        assert bad["COLDVAULT_JOB"] == "bad"
        assert "missing.img" in bad["COLDVAULT_ERROR"]
        assert "missing.img" in bad["COLDVAULT_LOG"]
    assert not (env.tmp / "global-good.json").exists()

    status = env.cli("status", "--json")
    assert status.returncode == 7  # "bad" never succeeded: overdue
    jobs = {j["name"]: j for j in json.loads(status.stdout)["jobs"]}
    assert jobs["good"]["overdue"] is False and jobs["bad"]["overdue"] is True
    assert "missing.img" in jobs["bad"]["error"]

    # Unknown job names are a config error, and nothing runs.
    assert env.cli("run", "nope").returncode == 2  # usage error (issue 12)


def _activity(env: DaemonEnv) -> str:
    """The daemon's own one-line activity, from its runtime status file."""
    try:
        return str(json.loads((env.runtime / "status.json").read_text())["activity"])
    except (OSError, ValueError, KeyError):
        return ""


def test_token_rejected_is_not_retried_until_replugged(env: DaemonEnv) -> None:
    src = _small_source(env)
    hash_file = env.tmp / "token.sha512"
    hash_file.write_text(hashlib.sha512(b"right disk").hexdigest() + "  .token\n")
    (env.backup / ".token").write_bytes(b"another disk")
    env.write_config([image_job("home", src)], disk={"token": {"hash_file": str(hash_file)}})
    env.disk.write_bytes(b"")
    env.start(watchdog_usec=None)

    env.wait_until(
        "failure recorded", lambda: (env.job_state("home") or {}).get("result") == "failed"
    )
    state = env.job_state("home")
    assert state is not None and "does not match" in state["error"]
    env.wait_until("status says rejected", lambda: "token mismatch" in _activity(env))
    env.notify.pump(3.0)  # six poll intervals with the wrong disk still attached
    assert env.log_text().count("backup disk rejected") == 1  # no retry loop
    assert list((env.backup).iterdir()) == [env.backup / ".token"]  # nothing written

    # The right disk is plugged in: unplug, fix the token, plug again.
    env.disk.unlink()
    env.wait_until("unplug seen", lambda: "went away" in env.log_text())
    (env.backup / ".token").write_bytes(b"right disk")
    env.disk.write_bytes(b"")
    env.wait_until("backup", lambda: (env.job_state("home") or {}).get("result") == "success")
    assert completed_snapshots(env.backup / "home")
    assert env.stop() == 0


def test_damaged_state_file_holds_jobs_without_crashing(env: DaemonEnv) -> None:
    src = _small_source(env)
    env.write_config([image_job("home", src)])
    env.state.write_text("{ not json")
    env.disk.write_bytes(b"")
    env.start(watchdog_usec=None)
    env.wait_until("status names the problem", lambda: "state file" in _activity(env))
    assert "is damaged" in _activity(env)
    assert completed_snapshots(env.backup / "home") == []  # nothing ran blind

    env.state.unlink()  # the user moved it aside, as the message suggests
    env.wait_until("backup", lambda: (env.job_state("home") or {}).get("result") == "success")
    assert env.log_text().count("is damaged") == 1  # logged once, not every turn
    assert env.stop() == 0
