"""First setup of a hand-built disk: ``token init`` opens the stack itself.

Host tier with a mount-only disk (ext4 on a loop device, mounted by coldvault);
the same with MD, LUKS and LVM runs in tests/vm/guest/test_token_init.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root

from coldvault.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from coldvault.system.mounts import mount_at

MiB = 1 << 20


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class Disk:
    def __init__(self, tmp: Path, device: str, cmd: list[str]) -> None:
        self.tmp, self.device, self.cmd = tmp, device, cmd
        self.point = tmp / "backup"
        self.hash_file = tmp / "etc" / "token.sha512"
        self.config = tmp / "config.yaml"
        self.write_config(token=True)

    def write_config(self, *, token: bool) -> None:
        token_text = f"  token:\n    hash_file: {self.hash_file}\n" if token else ""
        self.config.write_text(
            f"disk:\n  mount:\n    point: {self.point}\n    device: {self.device}\n"
            f"    fstype: ext4\n{token_text}"
            f"settings:\n  state_file: {self.tmp / 'state.json'}\n"
            f"  lock_file: {self.tmp / 'lock'}\n  runtime_dir: {self.tmp / 'run'}\n"
            f"jobs:\n  - name: img\n    type: image\n    source: {self.tmp / 'disk.img'}\n"
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.cmd, "-c", str(self.config), *args],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )

    def mounted(self) -> bool:
        return mount_at(self.point) is not None


@pytest.fixture
def disk(tmp_path: Path, coldvault_cmd: list[str]) -> Iterator[Disk]:
    require_root()
    require_programs("mount", "umount", "losetup", "mkfs.ext4")
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(32 * MiB)
    sh("mkfs.ext4", "-q", str(image))
    loop = sh("losetup", "-f", "--show", str(image)).strip()
    made = Disk(tmp_path, loop, coldvault_cmd)
    made.point.mkdir()
    try:
        yield made
    finally:
        subprocess.run(["umount", str(made.point)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", loop], check=False)


def test_first_setup_opens_writes_and_closes(disk: Disk) -> None:
    refused = disk.cli("open")  # the circle this breaks: no hash file yet
    assert refused.returncode == EXIT_CONFIG, refused.stderr
    assert not disk.mounted()

    done = disk.cli("token", "init")
    assert done.returncode == EXIT_OK, done.stderr
    assert "token not checked" in done.stderr and "backup disk closed (mount)" in done.stderr
    assert not disk.mounted()  # closed what it opened
    assert disk.hash_file.is_file()

    opened = disk.cli("open")  # the token now matches
    assert opened.returncode == EXIT_OK, opened.stderr
    assert (disk.point / ".token").stat().st_size == 1024
    assert disk.cli("close").returncode == EXIT_OK


def test_existing_token_is_kept_and_the_disk_still_closed(disk: Disk) -> None:
    assert disk.cli("token", "init").returncode == EXIT_OK
    first = disk.hash_file.read_bytes()
    again = disk.cli("token", "init")
    assert again.returncode == EXIT_FAILURE, again.stderr
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert not disk.mounted()
    assert disk.hash_file.read_bytes() == first
    forced = disk.cli("token", "init", "--force")
    assert forced.returncode == EXIT_OK, forced.stderr
    assert disk.hash_file.read_bytes() != first
    assert disk.cli("open").returncode == EXIT_OK
    assert disk.cli("close").returncode == EXIT_OK


def test_a_disk_mounted_by_hand_stays_mounted(disk: Disk) -> None:
    sh("mount", disk.device, str(disk.point))
    done = disk.cli("token", "init")
    assert done.returncode == EXIT_OK, done.stderr
    assert disk.mounted()  # leave it as found
    assert (disk.point / ".token").is_file()


def test_no_token_configured_is_a_config_error(disk: Disk) -> None:
    disk.write_config(token=False)
    done = disk.cli("token", "init")
    assert done.returncode == EXIT_CONFIG
    assert "no disk.token is configured" in done.stderr
    assert not disk.mounted()
