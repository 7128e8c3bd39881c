"""The real CLI on a hostile backup disk: exit codes and messages, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

from tests.integration.test_image_crash import PART, Env
from tests.unit.image_env import patch, write_source

MANIFEST = ".coldvault-manifest.json"


def _two_snapshots(tmp_path: Path) -> Env:
    env = Env(tmp_path)
    write_source(env.src, [(3 * PART + 7, True)])
    env.ok("run", "img")
    patch(env.src, 3, b"two")
    env.ok("run", "img")
    return env


def test_damaged_manifest_verify_exits_6_and_checks_the_rest(tmp_path: Path) -> None:
    env = _two_snapshots(tmp_path)
    old, new = env.snapshots()
    (env.job_dir / old / MANIFEST).write_text('{"source_size": 1, "part_size": 0}')
    (env.job_dir / new / "part_00000001").write_bytes(os.urandom(PART))  # corrupt too
    done = env.cli("verify", "img", "--all")
    assert done.returncode == 6, done.stdout + done.stderr
    assert f"PROBLEM: {env.job_dir / old / MANIFEST}: damaged manifest" in done.stdout
    assert f"{env.job_dir / new / 'part_00000001'}: corrupt" in done.stdout
    restore = env.cli("restore", "img", str(tmp_path / "out"), "--snapshot", old)
    assert restore.returncode == 6
    assert "is damaged" in restore.stderr
    for out in (done, restore):
        assert "Traceback" not in out.stdout + out.stderr
    env.ok("run", "img")  # a new snapshot from the source; the damaged one ages out


def test_symlinked_snapshot_inprogress_fails_the_run_and_writes_nothing(tmp_path: Path) -> None:
    env = _two_snapshots(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("host")
    (env.job_dir / "snapshot-inprogress").symlink_to(host)
    patch(env.src, 3, b"three")
    done = env.cli("run", "img")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{env.job_dir / 'snapshot-inprogress'} is a symlink" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert os.listdir(host) == ["keep"]
    assert len(env.snapshots()) == 2
