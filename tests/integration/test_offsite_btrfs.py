"""Offsite copies of a btrfs job: from the disk's received snapshot and from the source side."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from tests.integration.btrfs_env import MakeFs, create_subvolume, make_fs, random_file, tree_digest
from tests.integration.offsite_env import OffsiteEnv
from tests.integration.rotation_env import FolderDisk

__all__ = ["make_fs"]
MiB = 1 << 20


@pytest.mark.parametrize("offsite_from", ["disk", "source"])
def test_btrfs_job_round_trip(make_fs: MakeFs, tmp_path: Path, offsite_from: str) -> None:
    src_fs, disk_fs = make_fs("src"), make_fs("disk")
    data = create_subvolume(src_fs.mount / "data")
    random_file(data / "a.bin", 3 * MiB)
    (data / "dir").mkdir()
    (data / "dir" / "b.txt").write_text("hello\n")
    os.symlink("dir/b.txt", data / "link")
    env = OffsiteEnv(tmp_path)
    token = os.urandom(64)
    (disk_fs.mount / ".token").write_bytes(token)
    env.disk.hash_file.write_text(f"{hashlib.sha512(token).hexdigest()}  .token\n")
    env.disk = FolderDisk("home", env.disk.device, disk_fs.mount, env.disk.hash_file)
    env.jobs = [
        {"name": "data", "type": "btrfs", "sources": [str(data)], "offsite_from": offsite_from}
    ]
    env.add_target("local", str(tmp_path / "repo"))
    env.ok("offsite", "init", "local")
    env.ok("run")
    if offsite_from == "source":
        env.disk.unplug()  # the laptop left its disk at home: the copy needs no disk
    out = env.ok("offsite", "run", "local")
    assert "restic snapshot" in out, out
    dest = tmp_path / "restored"
    env.ok("restore", "data", str(dest), "--from", "local")
    assert tree_digest(dest / "data") == tree_digest(data)
