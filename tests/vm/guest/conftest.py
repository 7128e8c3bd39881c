"""Guest-side fixtures: a backup disk built from scratch on loop devices, like the
original setup instructions (RAID1 with one member ``missing`` → LUKS → LVM → Btrfs).

The disk is built once per guest session; every scenario starts with the whole
stack closed and a fixture closes whatever a scenario left open. The RAID member
is a device-mapper ``linear`` device over a loop device, so a scenario can swap
its table for ``error`` to inject I/O faults and back again.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

MEMBER_DM = "cv-member"
ARRAY = Path("/dev/md/backup")
LUKS_NAME = "enc-backup"
VG, LV = "backup", "vmhost"
LV_DEV = Path(f"/dev/mapper/{VG}-{LV}")


def sh(
    *argv: object, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command of the test setup (not the code under test)."""
    result = subprocess.run(
        [str(a) for a in argv],
        check=False,
        text=True,
        capture_output=True,
        input=input,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}: {result.stderr}")
    return result


def mounted(point: Path) -> bool:
    """Whether ``point`` is a mount point (mountinfo)."""
    target = f" {point} "
    return any(target in line for line in Path("/proc/self/mountinfo").read_text().splitlines())


def array_state() -> str | None:
    """The md array's array_state, or None when it does not exist."""
    if not ARRAY.exists():
        return None
    name = os.path.basename(os.path.realpath(ARRAY))
    try:
        return Path(f"/sys/block/{name}/md/array_state").read_text().strip()
    except OSError:
        return None


@dataclass
class BackupDisk:
    """The guest's backup disk and a configuration for it."""

    tmp: Path
    loop: Path  # the loop device under the member
    sectors: int
    member: Path  # /dev/mapper/cv-member
    key_file: Path
    hash_file: Path
    point: Path
    config: Path
    runtime: Path
    source_image: Path  # image job source
    btrfs_source: Path  # btrfs job source subvolume

    def cli(self, *args: object, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run this checkout's ``coldvault -c CONFIG ARGS``."""
        argv = [sys.executable, "-m", "coldvault", "-c", str(config or self.config)]
        return subprocess.run(
            [*argv, *map(str, args)],
            check=False,
            text=True,
            capture_output=True,
            timeout=600,
            cwd=ROOT,
        )

    def layers_open(self) -> dict[str, bool]:
        """Which layers are up right now, seen directly (not through coldvault)."""
        state = array_state()
        return {
            "array": state not in (None, "clear", "inactive"),
            "luks": Path(f"/dev/mapper/{LUKS_NAME}").exists(),
            "lvm": LV_DEV.exists(),
            "mount": mounted(self.point),
        }

    def open_by_hand(self, upto: str = "mount") -> None:
        """Open layers like the original script did, bottom up to ``upto``."""
        steps = ["array", "luks", "lvm", "mount"]
        for step in steps[: steps.index(upto) + 1]:
            if step == "array" and array_state() in (None, "clear"):
                sh("mdadm", "--assemble", "--run", ARRAY, self.member)
                sh("udevadm", "settle")
            if step == "luks" and not Path(f"/dev/mapper/{LUKS_NAME}").exists():
                sh("cryptsetup", "open", "--key-file", self.key_file, ARRAY, LUKS_NAME)
            if step == "lvm" and not LV_DEV.exists():
                sh("lvchange", "-ay", f"{VG}/{LV}")
                sh("udevadm", "settle")
            if step == "mount" and not mounted(self.point):
                sh("mount", LV_DEV, self.point)

    def close_by_hand(self) -> None:
        """Close everything that is open, top down, ignoring failures."""
        if mounted(self.point):
            sh("umount", self.point, check=False)
        if LV_DEV.exists():
            sh("lvchange", "-an", f"{VG}/{LV}", check=False)
        if Path(f"/dev/mapper/{LUKS_NAME}").exists():
            sh("cryptsetup", "close", LUKS_NAME, check=False)
        if array_state() is not None:
            sh("mdadm", "--stop", ARRAY, check=False)
        sh("udevadm", "settle", check=False)

    def set_member_table(self, kind: str) -> None:
        """Swap the member's device-mapper table: ``linear`` (healthy) or ``error``."""
        table = (
            f"0 {self.sectors} linear {self.loop} 0"
            if kind == "linear"
            else f"0 {self.sectors} error"
        )
        sh("dmsetup", "suspend", "--noflush", MEMBER_DM)
        sh("dmsetup", "load", MEMBER_DM, input=table + "\n")
        sh("dmsetup", "resume", MEMBER_DM)

    def write_config(self, path: Path, **disk_overrides: object) -> Path:
        """Write a YAML configuration (JSON is YAML) with this disk and two jobs."""
        disk: dict[str, object] = {
            "device": str(self.member),
            "array": {"device": str(ARRAY)},
            "luks": {"key_file": str(self.key_file), "name": LUKS_NAME},
            "lvm": {"vg": VG, "lv": LV},
            "mount": {"point": str(self.point), "fstype": "btrfs"},
            "token": {"hash_file": str(self.hash_file)},
        }
        disk.update(disk_overrides)
        config = {
            "disk": disk,
            "settings": {
                "state_file": str(self.runtime / "state.json"),
                "runtime_dir": str(self.runtime),
                "lock_file": str(self.runtime / "lock"),
            },
            "jobs": [
                {
                    "name": "img",
                    "type": "image",
                    "source": str(self.source_image),
                    "part_size": "1M",
                    "block_size": "256K",
                    "snapshots": 3,
                },
                {"name": "subvols", "type": "btrfs", "sources": [str(self.btrfs_source)]},
            ],
        }
        path.write_text(json.dumps(config, indent=2))
        return path


def _build(tmp: Path) -> BackupDisk:
    """Create the backup disk from scratch, like the original setup instructions."""
    image = tmp / "member.img"
    sh("truncate", "-s", "320M", image)
    loop = Path(sh("losetup", "-f", "--show", image).stdout.strip())
    sectors = 320 * 2048
    sh("dmsetup", "create", MEMBER_DM, input=f"0 {sectors} linear {loop} 0\n")
    member = Path(f"/dev/mapper/{MEMBER_DM}")
    sh(
        "mdadm",
        "--create",
        ARRAY,
        "--run",
        "--level=1",
        "--raid-devices=2",
        "--metadata=1.2",
        member,
        "missing",
    )
    sh("udevadm", "settle")
    key_file = tmp / "keys" / "backup.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_bytes(os.urandom(64))
    key_file.chmod(0o600)
    sh(
        "cryptsetup",
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        key_file,
        ARRAY,
    )
    sh("cryptsetup", "open", "--key-file", key_file, ARRAY, LUKS_NAME)
    sh("pvcreate", "-q", f"/dev/mapper/{LUKS_NAME}")
    sh("vgcreate", "-q", VG, f"/dev/mapper/{LUKS_NAME}")
    sh("lvcreate", "-q", "-y", "-n", LV, "-l", "100%FREE", VG)
    sh("udevadm", "settle")
    sh("mkfs.btrfs", "-q", LV_DEV)
    point = tmp / "media" / "backup"
    point.mkdir(parents=True)
    # The job sources: an 8 MiB image file and a subvolume on a second Btrfs.
    source_image = tmp / "source.img"
    source_image.write_bytes(os.urandom(3 << 20) + bytes(2 << 20) + os.urandom(3 << 20))
    src_img = tmp / "srcfs.img"
    sh("truncate", "-s", "160M", src_img)
    sh("mkfs.btrfs", "-q", src_img)
    src_mnt = tmp / "srcfs"
    src_mnt.mkdir()
    sh("mount", "-o", "loop", src_img, src_mnt)
    sh("btrfs", "subvolume", "create", src_mnt / "data")
    (src_mnt / "data" / "hello.txt").write_text("hello from the guest\n")
    runtime = tmp / "run"
    disk = BackupDisk(
        tmp,
        loop,
        sectors,
        member,
        key_file,
        tmp / "etc" / "token.sha512",
        point,
        tmp / "config.yaml",
        runtime,
        source_image,
        src_mnt / "data",
    )
    disk.write_config(disk.config)
    sh("mount", LV_DEV, point)
    result = disk.cli("token", "init")
    assert result.returncode == 0, result.stderr
    disk.close_by_hand()
    return disk


@pytest.fixture(scope="session")
def backup_disk_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackupDisk]:
    """The backup disk of this guest session (built once)."""
    require(os.environ.get("COLDVAULT_IN_GUEST") == "1", "runs only inside the VM guest")
    tmp = tmp_path_factory.mktemp("disk")
    disk = _build(tmp)
    try:
        yield disk
    finally:
        disk.close_by_hand()
        with contextlib.suppress(AssertionError):
            sh("umount", tmp / "srcfs", check=False)
            sh("dmsetup", "remove", MEMBER_DM, check=False)
            sh("losetup", "-d", disk.loop, check=False)


@pytest.fixture
def disk(backup_disk_session: BackupDisk) -> Iterator[BackupDisk]:
    """The backup disk, fully closed and healthy at the start and end of each scenario."""
    d = backup_disk_session
    d.set_member_table("linear")
    d.close_by_hand()
    (d.runtime / "open-layers.json").unlink(missing_ok=True)
    assert not any(d.layers_open().values()), d.layers_open()
    try:
        yield d
    finally:
        d.set_member_table("linear")
        d.close_by_hand()
        (d.runtime / "open-layers.json").unlink(missing_ok=True)
