"""A plain-folder backup disk, an image job, and offsite targets: for offsite tests via the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from tests.conftest import require_programs
from tests.integration.rotation_env import FolderDisk, folder_disk, run_cli

PASSWORD = "offsite-test-password\n"


class OffsiteEnv:
    """One folder disk (plugged), an image source, a config with ``offsite:`` targets."""

    def __init__(self, tmp: Path, source_bytes: int = 4 << 20, part_size: str = "256k") -> None:
        require_programs("restic")
        self.tmp = tmp
        self.config = tmp / "config.yaml"
        self.source = tmp / "source.img"
        self.source.write_bytes(os.urandom(source_bytes))
        self.disk: FolderDisk = folder_disk(tmp, "home")
        self.disk.plug()
        self.password = tmp / "restic.pass"
        self.password.write_text(PASSWORD)
        self.password.chmod(0o600)
        self.jobs: list[dict[str, Any]] = [
            {
                "name": "root",
                "type": "image",
                "source": str(self.source),
                "part_size": part_size,
                "block_size": "64k",
                "snapshots": 3,
            }
        ]
        self.targets: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}  # more keys of settings:

    def add_target(self, name: str, repository: str, **extra: Any) -> None:
        self.targets.append(
            {"name": name, "repository": repository, "password_file": str(self.password), **extra}
        )
        self.write()

    def write(self) -> None:
        data = {
            "disks": [self.disk.config()],
            "settings": {
                "state_file": str(self.tmp / "state.json"),
                "runtime_dir": str(self.tmp / "run"),
                "lock_file": str(self.tmp / "lock"),
                **self.settings,
            },
            "jobs": self.jobs,
            "offsite": self.targets,
        }
        self.config.write_text(yaml.safe_dump(data))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, timeout=600)

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout

    def offsite_state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.tmp / "state.offsite.json").read_text())
        return data

    def forget_due(self, target: str = "local") -> None:
        """Make the next offsite run apply retention (as if a day had passed since the last)."""
        path = self.tmp / "state.offsite.json"
        data = json.loads(path.read_text())
        data["disks"][target]["jobs"].pop("(restic forget)", None)
        path.write_text(json.dumps(data))

    def change_source(self, offset: int, length: int) -> None:
        with self.source.open("r+b") as f:
            f.seek(offset)
            f.write(os.urandom(length))
