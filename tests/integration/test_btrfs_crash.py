"""Crash campaign, btrfs half: a real ``coldvault run`` child SIGKILLed at named points.

Each case has its own job and source subvolume on two shared filesystems. Two runs
make history (retention keeps two on each side, so the killed run prunes both sides),
then a run is killed at a point chosen with ``COLDVAULT_CRASH_AT`` (the hook in
``coldvault.system.crashpoint``, shared with image jobs), sometimes twice in a row.
After the kill: a run completes, ``verify --all`` passes, no partial copy or unsent
source snapshot is left, ``latest`` names the newest copy, and every received copy
holds exactly what the source held when its run started.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from tests.integration.btrfs_env import (
    MakeFs,
    MiB,
    create_subvolume,
    module_fs,
    random_file,
    snapshot_names,
    subvol_field,
    tree_digest,
    wait_group_gone,
)

__all__ = ["module_fs"]  # the fixture is used by name

# (case, kill points in order: each is one killed run)
CASES = [
    ("snaptaken", ["btrfs.snapshot-taken"]),  # snapshot made, send not started
    ("sendstart", ["btrfs.streamed:1"]),  # during send: first bytes relayed
    ("midstream", ["btrfs.streamed:40"]),  # during receive, mid-stream
    ("received", ["btrfs.received"]),  # receive done, before the read-only/uuid check
    ("accepted", ["btrfs.accepted"]),  # copy accepted, unsent mark not yet cleared
    ("prunetarget", ["btrfs.prune-target"]),  # target retention: deleted, not committed
    ("prunesource", ["btrfs.prune-source"]),  # source retention
    ("swaplatest", ["btrfs.link-swap:1"]),  # target `latest`: new link made, not renamed
    ("swapprevious", ["btrfs.link-swap:2"]),  # target `previous` swap
    ("linkstarget", ["btrfs.links-target"]),  # target links done, source links not
    ("swapsource", ["btrfs.link-swap:3"]),  # source `latest` swap
    ("twice", ["btrfs.streamed:40", "btrfs.partial-deleted"]),  # killed while cleaning up
    ("twiceunsent", ["btrfs.snapshot-taken", "btrfs.streamed:1"]),
]


# What the first kill must have left behind (proof that it hit where it says).
LEFT_BY_KILL = {
    "midstream": "partial",
    "twice": "partial",
    "received": "complete-unlinked",
    "swaplatest": "target:.latest.new",
    "swapprevious": "target:.previous.new",
    "swapsource": "source:.latest.new",
    "snaptaken": "unsent",
}


def _left_behind(target: Path, snaps: Path) -> set[str]:
    found = set()
    names = snapshot_names(target)
    if any(subvol_field(target / n, "Received UUID") == "-" for n in names):
        found.add("partial")
    if names and os.readlink(target / "latest") != names[-1]:
        found.add("complete-unlinked")
    if set(snapshot_names(snaps)) - set(names):
        found.add("unsent")
    for side, folder in (("target", target), ("source", snaps)):
        found.update(f"{side}:{n}" for n in os.listdir(folder) if n.endswith(".new"))
    return found


def _config(tmp: Path, backup_root: Path, source: Path, name: str) -> Path:
    config = tmp / f"{name}.yaml"
    config.write_text(
        f"""
disk:
  mount:
    point: {backup_root}
    require_mount: false
settings:
  state_file: {tmp}/{name}-state.json
  runtime_dir: {tmp}/{name}-run
  lock_file: {tmp}/{name}-lock
jobs:
  - name: {name}
    type: btrfs
    sources: [{source}]
    source_retention: {{keep_last: 2}}
    target_retention: {{keep_last: 2}}
"""
    )
    return config


def _run(cmd: list[str], config: Path, *args: str, crash: str | None = None) -> tuple[int, str]:
    """Run the CLI in its own session; after a kill, wait for its orphaned send/receive."""
    env = dict(os.environ)
    env.pop("COLDVAULT_CRASH_AT", None)
    if crash:
        env["COLDVAULT_CRASH_AT"] = crash
    child = subprocess.Popen(
        [*cmd, "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = child.communicate(timeout=300)
        wait_group_gone(child.pid)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return child.returncode, out


def _new_names(folder: Path, before: set[str]) -> list[str]:
    return [n for n in snapshot_names(folder) if n not in before]


@pytest.mark.parametrize(("case", "kills"), CASES, ids=[c for c, _ in CASES])
def test_sigkill_then_complete_run_and_verify(
    module_fs: MakeFs,
    tmp_path: Path,
    coldvault_cmd: list[str],
    request: pytest.FixtureRequest,
    case: str,
    kills: list[str],
) -> None:
    src, dst = module_fs("src", 1500), module_fs("dst", 1500)
    vol = create_subvolume(src.mount / case)
    config = _config(tmp_path, dst.mount, vol, case)
    target = dst.mount / case / case
    snaps = src.mount / ".coldvault-snapshots" / case / case
    expected: dict[str, dict[str, str]] = {}  # received name -> source content at its run

    def step(i: int, *, size: int, crash: str | None = None) -> tuple[int, str]:
        random_file(vol / f"f{i}.bin", size)
        content = tree_digest(vol)
        before = set(snapshot_names(target)) if target.exists() else set()
        rc, out = _run(coldvault_cmd, config, "run", case, crash=crash)
        for name in _new_names(target, before) if target.exists() else []:
            expected[name] = content
        return rc, out

    for i in range(2):
        rc, out = step(i, size=64 * 1024)
        assert rc == 0, out
    for k, crash in enumerate(kills):
        rc, out = step(10 + k, size=8 * MiB, crash=crash)
        assert rc == -signal.SIGKILL, f"{crash} was never reached (exit {rc}):\n{out}"
        assert "Traceback" not in out
        if k == 0 and case in LEFT_BY_KILL:
            assert LEFT_BY_KILL[case] in _left_behind(target, snaps)

    rc, out = step(20, size=64 * 1024)
    assert rc == 0, out
    if kills[0] == "btrfs.snapshot-taken":
        assert "deleting source snapshot" in out  # the unsent one, and the log says so

    verified = _run(coldvault_cmd, config, "verify", case, "--all")
    assert verified[0] == 0, verified[1]

    copies = snapshot_names(target)
    assert copies, "no received copy"
    for name in copies:  # complete, and exactly the source's content at its run
        assert subvol_field(target / name, "Flags") == "readonly", name
        assert subvol_field(target / name, "Received UUID") != "-", name
        assert tree_digest(target / name) == expected[name], name
    assert os.readlink(target / "latest") == copies[-1]
    assert tree_digest(target / copies[-1]) == tree_digest(vol)
    # No "SOURCE yes / BACKUP -": every source snapshot has its copy on the disk.
    assert set(snapshot_names(snaps)) <= set(copies)
    assert len(snapshot_names(snaps)) <= 2 and len(copies) <= 3
    assert not [n for n in os.listdir(target) if n.endswith(".new")]
