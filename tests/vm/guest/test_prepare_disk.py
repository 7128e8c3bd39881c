"""``coldvault disk init`` / ``disk add-mirror`` from blank loop devices on a real kernel.

Names differ from the shared backup disk of ``conftest.py`` (``cvprep`` instead
of ``backup``) so the two never meet; every scenario tears down what it built.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, require
from tests.vm.guest.conftest import mounted, sh

NAME = "cvprep"
ARRAY = Path(f"/dev/md/{NAME}")
LUKS = f"{NAME}-enc"
VG, LV = NAME, "data"
LV_DEV = Path(f"/dev/mapper/{VG}-{LV}")
PASSPHRASE = "guest passphrase, typed by a human"
CHEAP_KDF = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")


@dataclass
class Prep:
    """Blank loop devices and the host-side paths one scenario uses."""

    tmp: Path
    loops: list[Path]
    passfile: Path
    key_file: Path
    hash_file: Path
    point: Path
    config: Path

    def cli(self, *args: object, config: bool = False) -> subprocess.CompletedProcess[str]:
        """Run this checkout's coldvault (with ``-c CONFIG`` when ``config``)."""
        argv = [sys.executable, "-m", "coldvault"]
        if config:
            argv += ["-c", str(self.config)]
        return subprocess.run(
            [*argv, *map(str, args)],
            check=False,
            text=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=900,
            cwd=ROOT,
        )

    def init(self, disk: Path, *extra: object) -> subprocess.CompletedProcess[str]:
        """``disk init`` with this scenario's names and a cheap key derivation."""
        return self.cli(
            "disk", "init", disk,
            "--passphrase-file", self.passfile, *CHEAP_KDF,
            "--label", NAME, "--array", ARRAY, "--luks-name", LUKS, "--vg", VG, "--lv", LV,
            "--key-file", self.key_file, "--hash-file", self.hash_file,
            "--mount-point", self.point, *extra,
        )  # fmt: skip

    def layers_open(self) -> dict[str, bool]:
        """Which layers of the prepared disk are up, seen directly."""
        return {
            "array": ARRAY.exists(),
            "luks": Path(f"/dev/mapper/{LUKS}").exists(),
            "lvm": LV_DEV.exists(),
            "mount": mounted(self.point),
        }


def _close_everything(point: Path) -> None:
    if mounted(point):
        sh("umount", point, check=False)
    sh("vgchange", "--activate", "n", VG, check=False)
    sh("cryptsetup", "close", LUKS, check=False)
    sh("mdadm", "--stop", ARRAY, check=False)
    sh("udevadm", "settle", check=False)


@pytest.fixture
def prep(tmp_path: Path) -> Iterator[Prep]:
    """Two blank 160 MiB loop devices with partition scanning, removed afterwards."""
    require(os.environ.get("COLDVAULT_IN_GUEST") == "1", "runs only inside the VM guest")
    loops = []
    point = tmp_path / "media" / "backup"
    try:
        for n in range(2):
            image = tmp_path / f"disk{n}.img"
            sh("truncate", "-s", "160M", image)
            loops.append(Path(sh("losetup", "-f", "--show", "--partscan", image).stdout.strip()))
        passfile = tmp_path / "passphrase"
        passfile.write_text(PASSPHRASE + "\n")
        yield Prep(
            tmp_path,
            loops,
            passfile,
            tmp_path / "etc" / "backup.key",
            tmp_path / "etc" / "token.sha512",
            point,
            tmp_path / "etc" / "config.yaml",
        )
    finally:
        _close_everything(point)
        for loop in loops:
            sh("losetup", "-d", loop, check=False)


def _snapshot(dev: Path) -> tuple[str, str]:
    blkid = sh("blkid", "-p", dev, check=False).stdout
    return blkid, sh("wipefs", "--no-act", "--json", dev).stdout


def _add_jobs(prep: Prep) -> tuple[Path, Path]:
    """Append settings and an image and a btrfs job to the written config; return sources."""
    source_image = prep.tmp / "source.img"
    source_image.write_bytes(os.urandom(2 << 20) + bytes(2 << 20) + os.urandom(1 << 20))
    src_img = prep.tmp / "srcfs.img"
    sh("truncate", "-s", "160M", src_img)
    sh("mkfs.btrfs", "-q", src_img)
    src_mnt = prep.tmp / "srcfs"
    src_mnt.mkdir()
    sh("mount", "-o", "loop", src_img, src_mnt)
    sh("btrfs", "subvolume", "create", src_mnt / "data")
    (src_mnt / "data" / "hello.txt").write_text("hello from disk init\n")
    runtime = prep.tmp / "run"
    with prep.config.open("a") as f:
        f.write(
            "settings:\n"
            f"  state_file: {runtime}/state.json\n"
            f"  runtime_dir: {runtime}\n"
            f"  lock_file: {runtime}/lock\n"
            "jobs:\n"
            f"  - {{name: img, type: image, source: {source_image}, part_size: 1M}}\n"
            f"  - {{name: subvols, type: btrfs, sources: [{src_mnt / 'data'}]}}\n"
        )
    return source_image, src_mnt


def test_init_then_open_run_close(prep: Prep) -> None:
    """A blank disk becomes a backup disk that open / run / close accept as configured."""
    disk = prep.loops[0]
    done = prep.init(disk, "--write-config", prep.config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no partition table and no known signature found" in done.stdout
    # init closes what it opened
    assert prep.layers_open() == dict.fromkeys(("array", "luks", "lvm", "mount"), False)
    key = prep.key_file.stat()
    assert key.st_size == 1024 and key.st_mode & 0o777 == 0o600
    part = Path(f"{disk}p1")
    assert sh("blkid", "-p", "-s", "PART_ENTRY_NAME", "-o", "value", part).stdout.strip() == NAME
    assert sh("blkid", "-p", "-s", "TYPE", "-o", "value", part).stdout.strip() == (
        "linux_raid_member"
    )
    text = prep.config.read_text()
    assert f"device: /dev/disk/by-partlabel/{NAME}" in text
    assert "uuid:" in text and "UUID-FROM" not in text

    source_image, src_mnt = _add_jobs(prep)
    try:
        opened = prep.cli("open", "--wait", "20", config=True)
        assert opened.returncode == 0, opened.stdout + opened.stderr
        assert prep.layers_open() == dict.fromkeys(("array", "luks", "lvm", "mount"), True)
        ran = prep.cli("run", "--keep-open", config=True)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "img: " in ran.stdout and "subvols: " in ran.stdout
        parts = {p.stat().st_ino: p for p in (prep.point / "img").rglob("part_*")}
        # 5 MiB source in 1 MiB parts: 3 parts of data, 2 all-zero parts stored empty.
        sizes = sorted(p.stat().st_size for p in parts.values())
        assert sizes == [0, 0, 1 << 20, 1 << 20, 1 << 20], sorted(map(str, parts.values()))
        assert source_image.stat().st_size == 5 << 20
        received = list((prep.point / "subvols").rglob("hello.txt"))
        assert [p.read_text() for p in received] == ["hello from disk init\n"]
        closed = prep.cli("close", config=True)
        assert closed.returncode == 0, closed.stdout + closed.stderr
        assert prep.layers_open() == dict.fromkeys(("array", "luks", "lvm", "mount"), False)
    finally:
        sh("umount", src_mnt, check=False)


def test_passphrase_slot_then_add_mirror_to_a_clean_two_member_array(prep: Prep) -> None:
    """The passphrase still unlocks the disk (the key file is a second slot); then the
    second disk gets the same partition and the array copies onto it."""
    first, second = prep.loops
    done = prep.init(first, "--keep-open")
    assert done.returncode == 0, done.stdout + done.stderr
    dump = sh("cryptsetup", "luksDump", ARRAY).stdout
    assert re.search(r"^Version:\s+2$", dump, re.M), dump
    assert len(re.findall(r"^\s+\d+: luks2$", dump, re.M)) == 2, dump  # two key slots
    # Typed passphrase, exactly as cryptsetup reads it from a terminal (no newline).
    sh("cryptsetup", "open", "--test-passphrase", "--key-file=-", ARRAY, input=PASSPHRASE)
    sh("cryptsetup", "open", "--test-passphrase", "--key-file", prep.key_file, ARRAY)
    wrong = sh("cryptsetup", "open", "--test-passphrase", "--key-file=-", ARRAY,
               input="not the passphrase", check=False)  # fmt: skip
    assert wrong.returncode != 0

    md = Path(os.path.realpath(ARRAY)).name
    assert Path(f"/sys/block/{md}/md/degraded").read_text().strip() == "1"
    before = _snapshot(second)
    dry = prep.cli("disk", "add-mirror", second, "--array", ARRAY, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"mdadm --add {ARRAY} {second}p1" in dry.stdout
    assert _snapshot(second) == before
    added = prep.cli("disk", "add-mirror", second, "--array", ARRAY)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "clean 2-member mirror" in added.stdout
    sysfs = Path(f"/sys/block/{md}/md")
    assert (sysfs / "degraded").read_text().strip() == "0"
    assert (sysfs / "sync_action").read_text().strip() == "idle"
    states = sorted((d / "state").read_text().strip() for d in sysfs.glob("dev-*"))
    assert states == ["in_sync", "in_sync"]
    for loop in (first, second):
        assert Path(f"/sys/class/block/{loop.name}p1/start").read_text().strip() == "2048"
    sizes = {Path(f"/sys/class/block/{lp.name}p1/size").read_text() for lp in (first, second)}
    assert len(sizes) == 1
    # The mirror is refused a second time: it is now an array member.
    again = prep.cli("disk", "add-mirror", second, "--array", ARRAY, "--yes-destroy", second)
    assert again.returncode == 1
    assert "an active RAID array" in again.stderr


def _refused(prep: Prep, disk: Path, expected: str) -> None:
    before = _snapshot(disk)
    done = prep.init(disk, "--yes-destroy", disk)
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(disk) == before
    assert not prep.key_file.exists()


def test_array_member_refused_while_active_needs_confirmation_when_stopped(
    prep: Prep,
) -> None:
    disk = prep.loops[0]
    sh("mdadm", "--create", ARRAY, "--run", "--level=1", "--raid-devices=2",
       "--metadata=1.2", disk, "missing")  # fmt: skip
    _refused(prep, disk, "(an active RAID array)")
    sh("mdadm", "--stop", ARRAY)
    before = _snapshot(disk)
    assert "linux_raid_member" in before[0]
    refused = prep.init(disk)
    assert refused.returncode == 1 and "holds data" in refused.stderr
    dry = prep.init(disk, "--dry-run", "--yes-destroy", disk)
    assert dry.returncode == 0, dry.stderr
    assert f"wipefs --all {disk}" in dry.stdout
    assert _snapshot(disk) == before


def test_refuses_a_device_opened_by_luks(prep: Prep) -> None:
    disk = prep.loops[0]
    sh("cryptsetup", "luksFormat", "--batch-mode", *CHEAP_KDF, "--key-file=-", disk,
       input="x")  # fmt: skip
    sh("cryptsetup", "open", "--key-file=-", disk, LUKS, input="x")
    _refused(prep, disk, f"(the open LUKS/crypt mapping {LUKS})")


def test_refuses_a_device_with_an_active_lvm_volume(prep: Prep) -> None:
    disk = prep.loops[0]
    sh("pvcreate", "-q", disk)
    sh("vgcreate", "-q", VG, disk)
    sh("lvcreate", "-q", "-y", "-n", LV, "-l", "50%FREE", VG)
    _refused(prep, disk, f"(the active LVM volume {VG}-{LV})")
