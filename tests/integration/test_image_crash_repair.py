"""A run killed (SIGKILL) while it repairs older snapshots: the next run finishes the repair."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from tests.integration.test_image_crash import PART, Env
from tests.unit.image_env import patch, write_source
from tests.unit.test_image_repair import rot


@pytest.mark.parametrize(
    "point",
    [
        "image.repair-linked:1",  # a temporary link made, the damaged name not yet replaced
        "image.repair-renamed:1",  # one snapshot relinked, its manifest not yet updated
        "image.repair-renamed:2",
        "image.manifest-save:2",  # the first healed snapshot's manifest being saved
    ],
)
def test_run_killed_while_repairing(tmp_path: Path, point: str) -> None:
    env = Env(tmp_path)
    write_source(env.src, [(4 * PART + 7, True)])
    env.ok("run", "img")
    patch(env.src, 3 * PART, b"two")
    env.ok("run", "img")
    versions = {name: env.src.read_bytes() for name in env.snapshots()[-1:]}
    old, new = env.snapshots()
    rot(env.job_dir / new / "part_00000001", 5)  # shared by both
    assert env.cli("verify", "img", "--all").returncode == 6
    killed = env.cli("run", "img", crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert (env.job_dir / ".coldvault-repair.json").is_file()  # still to do
    env.ok("run", "img")
    env.check_consistent()  # verify --all exits 0
    assert not (env.job_dir / ".coldvault-repair.json").exists()
    for name in env.snapshots():
        assert not [n for n in os.listdir(env.job_dir / name) if n.endswith(".tmp")]
    assert env.restored(new) == versions[new]
    assert env.restored(env.snapshots()[-1]) == env.src.read_bytes()
    assert old not in env.snapshots()  # snapshots: 2
