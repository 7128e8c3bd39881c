"""Two (or more) plain-folder backup disks with their own tokens, for rotation tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tests.conftest import ROOT


@dataclass(frozen=True)
class FolderDisk:
    """A backup disk made of a plain folder; ``device`` present = the disk is attached."""

    name: str
    device: Path  # the file the daemon waits for
    root: Path  # the backup root (mount point, a plain folder)
    hash_file: Path

    def plug(self) -> None:
        self.device.write_bytes(b"")

    def unplug(self) -> None:
        self.device.unlink(missing_ok=True)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": str(self.device),
            "mount": {"point": str(self.root), "require_mount": False},
            "token": {"hash_file": str(self.hash_file)},
        }


def folder_disk(tmp: Path, name: str) -> FolderDisk:
    """A disk with a fresh random token (absent until plugged)."""
    root = tmp / f"disk-{name}"
    root.mkdir()
    token = os.urandom(64)
    (root / ".token").write_bytes(token)
    hash_file = tmp / f"{name}.sha512"
    hash_file.write_text(f"{hashlib.sha512(token).hexdigest()}  .token\n")
    return FolderDisk(name, tmp / f"dev-{name}", root, hash_file)


def write_config(
    path: Path, tmp: Path, disks: list[FolderDisk], jobs: list[dict[str, Any]], **settings: Any
) -> None:
    data = {
        "disks": [d.config() for d in disks],
        "settings": {
            "state_file": str(tmp / "state.json"),
            "runtime_dir": str(tmp / "run"),
            "lock_file": str(tmp / "lock"),
            "poll_seconds": 0.5,
            **settings,
        },
        "jobs": jobs,
    }
    path.write_text(yaml.safe_dump(data))


def run_cli(config: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """The real ``coldvault --config CONFIG ARGS...`` of this tree, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "coldvault", "--config", str(config), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def copy_disk(disk: FolderDisk, to: Path) -> None:
    """A byte copy of the disk's folder (hard links kept as copies: a clone of the disk)."""
    shutil.copytree(disk.root, to, symlinks=True)


def restore_disk(disk: FolderDisk, copy: Path) -> None:
    """Put an older copy of the disk back in its place (the disk went back in time)."""
    shutil.rmtree(disk.root)
    shutil.copytree(copy, disk.root, symlinks=True)


def _image_job(name: str, source: Path, **extra: Any) -> dict[str, Any]:
    job = {"name": name, "type": "image", "source": str(source), "part_size": "1M"}
    return {**job, "block_size": "64k", "every": "1d", **extra}


class Env:
    """Two plain-folder disks, home and office, a config and the real CLI."""

    def __init__(self, tmp: Path, *, with_photos: bool = False, **root: Any) -> None:
        self.tmp = tmp
        self.config = tmp / "config.yaml"
        self.source = tmp / "source.img"
        self.source.write_bytes(os.urandom(1 << 20))
        self.home, self.office = folder_disk(tmp, "home"), folder_disk(tmp, "office")
        jobs = [_image_job("root", self.source, **root)]
        if with_photos:
            jobs.append(_image_job("photos", self.source, target="p", disks=["office"]))
        write_config(self.config, tmp, [self.home, self.office], jobs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, timeout=120)

    def state(self, disk: str) -> dict[str, dict[str, object]]:
        raw = json.loads((self.tmp / "state.json").read_text())
        jobs: dict[str, dict[str, object]] = raw["disks"][disk].get("jobs", {})
        return jobs
