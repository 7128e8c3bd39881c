"""A disk that went back in time: noticed, shown, backed up to, not pruned until accepted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.daemon_env import completed_snapshots
from tests.integration.rotation_env import Env, copy_disk, restore_disk


def names(env: Env) -> list[str]:
    return [p.name for p in completed_snapshots(env.office.root / "root")]


def test_older_copy_put_back_is_noticed_and_kept_until_accepted(tmp_path: Path) -> None:
    env = Env(tmp_path, snapshots=1)  # retention keeps one snapshot per run
    env.office.plug()
    env.home.plug()
    assert env.cli("run", "--disk", "office").returncode == 0
    [first] = names(env)
    copy_disk(env.office, tmp_path / "office-old")  # a clone of the disk as it was
    assert env.cli("run", "--disk", "office").returncode == 0
    [second] = names(env)
    assert second != first

    restore_disk(env.office, tmp_path / "office-old")  # the disk went back in time
    done = env.cli("run", "--disk", "office")
    assert done.returncode == 0, done.stderr  # the backup still runs
    assert f"backup disk office went back in time: root: {second} is missing" in done.stderr
    assert "until `coldvault disk accept office`" in done.stderr
    kept = names(env)
    assert first in kept and len(kept) == 2  # retention deleted nothing on that disk

    status = env.cli("status")
    assert status.returncode == 6, status.stdout + status.stderr
    assert f"WARNING: disk office went back in time: root: {second} is missing" in status.stdout
    data = json.loads(env.cli("status", "--json").stdout)
    office = {d["name"]: d for d in data["disks"]}["office"]
    assert office["rolled_back"] == [f"root: {second} is missing"] and data["rolled_back"]

    # Another run: still paused, and the finding is not logged again.
    again = env.cli("run", "--disk", "office")
    assert again.returncode == 0 and "went back in time" not in again.stderr
    assert len(names(env)) == 3

    # home is a different disk: its backups and retention are not affected.
    assert env.cli("run", "--disk", "home").returncode == 0
    assert env.cli("run", "--disk", "home").returncode == 0
    assert len(completed_snapshots(env.home.root / "root")) == 1

    accepted = env.cli("disk", "accept", "office")
    assert accepted.returncode == 0, accepted.stderr
    assert f"cleared: root: {second} is missing" in accepted.stdout
    assert env.cli("status").returncode == 0
    assert env.cli("run", "--disk", "office").returncode == 0
    assert len(names(env)) == 1  # retention runs again


def test_a_replaced_manifest_counts_as_a_different_disk(tmp_path: Path) -> None:
    env = Env(tmp_path, snapshots=2)
    env.office.plug()
    assert env.cli("run", "--disk", "office").returncode == 0
    [snap] = completed_snapshots(env.office.root / "root")
    manifest = snap / ".coldvault-manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(data, indent=1))  # same meaning, other bytes: not ours
    done = env.cli("run", "--disk", "office")
    assert f"root: {snap.name} is not the copy written" in done.stderr, done.stderr


def test_accepting_an_unknown_disk_is_refused(tmp_path: Path) -> None:
    env = Env(tmp_path)
    done = env.cli("disk", "accept", "attic")
    assert done.returncode == 2 and "no disk named 'attic'" in done.stderr
    ok = env.cli("disk", "accept", "home")
    assert ok.returncode == 0 and "nothing was reported" in ok.stdout
