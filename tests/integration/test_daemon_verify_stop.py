"""SIGTERM during a scheduled verification: the real daemon stops it, keeps its position, exits 0.

A received Btrfs copy holding a large sparse file makes the verification long
enough to be caught while running (reading holes costs no disk I/O, only time).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.btrfs_env import MakeFs, create_subvolume, make_fs, random_file
from tests.integration.daemon_env import DaemonEnv, daemon_env

__all__ = ["make_fs"]  # the fixture, used by name
GiB = 1 << 30
MiB = 1 << 20


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DaemonEnv]:
    with daemon_env(tmp_path) as e:
        yield e


def test_sigterm_stops_a_scheduled_verify_and_keeps_its_position(
    env: DaemonEnv, make_fs: MakeFs
) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "a.bin", MiB)
    with open(vol / "sparse.bin", "wb") as f:  # 1 TiB of holes
        f.truncate(1024 * GiB)
    job = {"name": "data", "type": "btrfs", "sources": [str(vol)], "every": "1d"}
    env.write_config([job], disk={"mount": {"point": str(dst.mount), "require_mount": False}})
    env.disk.write_bytes(b"")
    env.start()
    env.notify.wait_for(lambda m: "STATUS=data: verifying (scheduled)" in m)
    assert env.proc is not None
    asked = time.monotonic()
    assert env.stop() == 0
    took = time.monotonic() - asked
    state = env.job_state("data")
    assert state is not None and state["result"] == "success"  # the backup came first
    v = state["verify"]
    assert v["position"] is not None and v["result"] is None, v
    assert v["position"]["file"] == "sparse.bin" and v["position"]["offset"] > 0
    assert v["round_bytes"] < 1024 * GiB
    assert "scheduled verification stopped" in env.log_text()
    print(f"stop took {took:.2f} s")  # a figure for the notes, not an assertion
