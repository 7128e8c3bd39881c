"""The real CLI: bit rot found by `verify` (exit 6) is repaired by the next `run` (exit 0)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.integration.test_image_crash import PART, Env
from tests.unit.image_env import patch, write_source
from tests.unit.test_image_repair import rot


def test_rot_verify_run_verify(tmp_path: Path) -> None:
    env = Env(tmp_path)
    first = write_source(env.src, [(3 * PART + 7, True)])
    env.ok("run", "img")
    patch(env.src, 3 * PART, b"two")
    second = env.src.read_bytes()
    env.ok("run", "img")
    _, new = env.snapshots()
    rot(env.job_dir / new / "part_00000000", 77)  # shared by both snapshots
    done = env.cli("verify", "img", "--all")
    assert done.returncode == 6, done.stdout + done.stderr
    assert (env.job_dir / ".coldvault-repair.json").is_file()
    ran = env.cli("run", "img")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    log = ran.stdout + ran.stderr
    assert "repair: 2 flagged, 1 parts rewritten, 2 damaged links replaced in 2 older" in log
    env.check_consistent()  # verify --all exits 0 again
    assert not (env.job_dir / ".coldvault-repair.json").exists()
    assert env.snapshots()[0] == new  # the first snapshot aged out (snapshots: 2) after its repair
    assert env.restored(new) == second
    assert env.restored(env.snapshots()[-1]) == second
    assert first[3 * PART :] != second[3 * PART :]


def test_abandoned_folder_is_not_damage(tmp_path: Path) -> None:
    env = Env(tmp_path)
    write_source(env.src, [(2 * PART, True)])
    env.ok("run", "img")
    patch(env.src, 0, b"two")
    env.ok("run", "img")
    old, _ = env.snapshots()
    for name in os.listdir(env.job_dir / old):  # what the original's pruning leaves
        if name.startswith("part_"):
            os.unlink(env.job_dir / old / name)
    done = env.cli("verify", "img", "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "abandoned" in done.stdout + done.stderr
    assert "abandoned" in env.ok("list", "img")
    env.ok("run", "img")
    assert old not in env.snapshots()  # retention deleted it
