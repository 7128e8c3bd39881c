"""Btrfs jobs on two loop-mounted Btrfs disks in turn: per-disk parents, source retention
keeping each disk's parent (proved by an incremental send to the disk that was away)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import ROOT
from tests.integration.btrfs_env import (
    MakeFs,
    _fs_factory,
    create_subvolume,
    random_file,
    snapshot_names,
    subvol_field,
)

MiB = 1 << 20


@pytest.fixture
def disks_fs(tmp_path: Path) -> Iterator[MakeFs]:
    """A source filesystem and two backup disks, each a Btrfs on its own loop device."""
    yield from _fs_factory(tmp_path / "fs")


def _disk(tmp: Path, name: str, mount: Path) -> dict[str, Any]:
    token = os.urandom(64)
    (mount / ".token").write_bytes(token)
    hash_file = tmp / f"{name}.sha512"
    hash_file.write_text(f"{hashlib.sha512(token).hexdigest()}  .token\n")
    return {
        "name": name,
        "device": str(tmp / f"dev-{name}"),  # present while this file exists
        "mount": {"point": str(mount), "require_mount": False},
        "token": {"hash_file": str(hash_file)},
    }


def test_each_disk_keeps_its_parent_on_the_source(disks_fs: MakeFs, tmp_path: Path) -> None:
    (tmp_path / "fs").mkdir()
    src_fs, home, office = disks_fs("src"), disks_fs("home"), disks_fs("office")
    data = create_subvolume(src_fs.mount / "data")
    random_file(data / "a.bin", 4 * MiB)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "disks": [
                    _disk(tmp_path, "home", home.mount),
                    _disk(tmp_path, "office", office.mount),
                ],
                "settings": {
                    "state_file": str(tmp_path / "state.json"),
                    "runtime_dir": str(tmp_path / "run"),
                    "lock_file": str(tmp_path / "lock"),
                },
                "jobs": [
                    {
                        "name": "data",
                        "type": "btrfs",
                        "sources": [str(data)],
                        "source_retention": {"keep_last": 1},
                        "target_retention": {"keep_last": 5},
                    }
                ],
            }
        )
    )
    local = src_fs.mount / ".coldvault-snapshots" / "data" / "data"

    def run(disk: str) -> str:
        for other in ("home", "office"):
            (tmp_path / f"dev-{other}").unlink(missing_ok=True)
        (tmp_path / f"dev-{disk}").write_bytes(b"")  # only this disk is attached
        done = subprocess.run(
            [sys.executable, "-m", "coldvault", "--config", str(config), "run"],
            env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stderr

    run("home")
    [home_first] = snapshot_names(home.mount / "data" / "data")
    random_file(data / "b.bin", MiB)
    run("office")  # full: office holds nothing yet
    random_file(data / "c.bin", MiB)
    run("office")  # incremental on office
    office_newest = snapshot_names(office.mount / "data" / "data")[-1]
    kept = snapshot_names(local)
    # keep_last 1 keeps office's newest; home's newest is kept too: home's next parent.
    assert home_first in kept and len(kept) == 2, kept

    random_file(data / "d.bin", MiB)
    back = run("home")
    assert f"sending incrementally against {home_first}" in back, back
    newest = snapshot_names(home.mount / "data" / "data")[-1]
    assert newest != home_first
    # An incremental receive has a parent; a full one has none ("-").
    assert subvol_field(home.mount / "data" / "data" / newest, "Parent UUID") != "-"
    assert home_first not in snapshot_names(local)  # no disk needs it any more

    listed = subprocess.run(
        [sys.executable, "-m", "coldvault", "--config", str(config), "list", "data"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "disks (this is home; the others as this host remembers them):" in listed.stdout
    assert "disk home (last seen " in listed.stdout and f"newest data/{newest}" in listed.stdout
    assert "kept on the source as that disk's next parent" in listed.stdout
    # The table: which disks hold each snapshot, and why each side keeps it.
    rows = {
        line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("  data.")
    }
    assert "office (newest)" in rows[office_newest], listed.stdout
    assert "source: next parent for office" in rows[office_newest], listed.stdout
    assert "home" in rows[newest] and "next parent for home" in rows[newest], listed.stdout
    assert "disk: next parent, newest, last 5" in rows[newest], listed.stdout
