"""Mount layer and mount verification on the host with real loop-mounted filesystems."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root
from tests.unit.blockdev_env import mounted_elsewhere

from coldvault.config.model import DiskConfig, MountConfig, TokenConfig
from coldvault.disk import token
from coldvault.disk.mount import MountLayer, fstab_entry, verify_mount
from coldvault.disk.stack import DiskStack
from coldvault.errors import DiskError, TokenRejected
from coldvault.system import blockdev
from coldvault.system.mounts import mount_at


def sh(*argv: object) -> str:
    """Run a test-setup command."""
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


def _umount_all(point: Path) -> None:
    while f" {point} " in Path("/proc/self/mountinfo").read_text():
        if subprocess.run(["umount", str(point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(params=["btrfs", "ext4"])
def loopfs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loop device holding a fresh filesystem; detached (and unmounted) afterwards."""
    fstype: str = request.param
    require_root()
    require_programs("losetup", f"mkfs.{fstype}", "mount", "umount")
    image = tmp_path / f"{fstype}.img"
    sh("truncate", "-s", "128M", image)
    dev = Path(sh("losetup", "-f", "--show", image).strip())
    try:
        sh(f"mkfs.{fstype}", "-q", dev)
        yield dev, fstype
    finally:
        for point in tmp_path.glob("*"):
            if point.is_dir():
                _umount_all(point)
        subprocess.run(["losetup", "-d", str(dev)], check=False)


def test_verify_accepts_a_mount_of_the_expected_device(
    loopfs: tuple[Path, str], tmp_path: Path
) -> None:
    dev, fstype = loopfs
    point = tmp_path / "backup"
    point.mkdir()
    sh("mount", dev, point)
    info = verify_mount(point, dev)
    assert info.fstype == fstype


def test_verify_refuses_an_unmounted_folder(loopfs: tuple[Path, str], tmp_path: Path) -> None:
    dev, _ = loopfs
    point = tmp_path / "backup"
    point.mkdir()
    with pytest.raises(DiskError, match="is not a mount point"):
        verify_mount(point, dev)


def test_verify_refuses_a_mount_of_another_device(loopfs: tuple[Path, str], tmp_path: Path) -> None:
    dev, _ = loopfs
    other = tmp_path / "other.img"
    sh("truncate", "-s", "128M", other)
    sh("mkfs.btrfs", "-q", other)
    point = tmp_path / "backup"
    point.mkdir()
    sh("mount", "-o", "loop", other, point)
    with pytest.raises(DiskError, match="not of the backup device"):
        verify_mount(point, dev)


def test_mount_layer_opens_and_closes_only_what_it_mounted(
    loopfs: tuple[Path, str], tmp_path: Path
) -> None:
    dev, fstype = loopfs
    point = tmp_path / "backup"
    layer = MountLayer(MountConfig(point=point, device=dev, fstype=fstype), None)
    assert not layer.is_open()
    layer.open()
    assert layer.opened_by_us and layer.is_open()
    layer.close()
    assert not layer.is_open()
    sh("mount", dev, point)  # mounted by hand: found open, not ours
    again = MountLayer(MountConfig(point=point, device=dev), None)
    again.open()
    assert again.is_open() and not again.opened_by_us


def test_busy_umount_names_the_process(loopfs: tuple[Path, str], tmp_path: Path) -> None:
    dev, fstype = loopfs
    point = tmp_path / "backup"
    layer = MountLayer(MountConfig(point=point, device=dev, fstype=fstype), None)
    layer.open()
    holder = subprocess.Popen(["sleep", "300"], cwd=point)
    try:
        with pytest.raises(DiskError, match=rf"busy: pid {holder.pid} \(sleep\)"):
            layer.close()
        assert layer.is_open()
    finally:
        holder.kill()
        holder.wait()
    layer.close()
    assert not layer.is_open()


def test_fstab_entry_is_honoured(loopfs: tuple[Path, str], tmp_path: Path) -> None:
    dev, fstype = loopfs
    point = tmp_path / "backup"
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"# comment\n/dev/sda1 / ext4 defaults 0 1\n{dev} {point} {fstype} noatime 0 0\n"
    )
    entry = fstab_entry(point, fstab)
    assert entry is not None and entry.device() == dev and entry.options == ("noatime",)
    layer = MountLayer(MountConfig(point=point), None, fstab=fstab)
    assert layer.device == dev
    point.mkdir()
    # `mount POINT` reads the system fstab, so mount by hand as it would and check adoption.
    sh("mount", "-o", "noatime", dev, point)
    layer.open()
    assert layer.is_open() and not layer.opened_by_us


def test_stack_with_mount_and_token_round_trip(loopfs: tuple[Path, str], tmp_path: Path) -> None:
    """A real mount-only stack: open verifies the token; a wrong token tears down."""
    dev, fstype = loopfs
    point = tmp_path / "backup"
    disk = DiskConfig(
        device=dev,
        mount=MountConfig(point=point, fstype=fstype),
        token=TokenConfig(hash_file=tmp_path / "token.sha512"),
    )
    point.mkdir()
    sh("mount", dev, point)
    assert disk.token is not None
    token.init(point, disk.token)
    sh("umount", point)

    stack = DiskStack(disk)
    assert stack.open() == point
    assert stack.opened_layers == ["mount"]
    stack.close()
    assert stack.opened_layers == []
    assert " " + str(point) + " " not in Path("/proc/self/mountinfo").read_text()

    disk.token.hash_file.write_text("0" * 128 + "  .token\n")
    stack = DiskStack(disk)
    with pytest.raises(TokenRejected):
        stack.open()
    assert " " + str(point) + " " not in Path("/proc/self/mountinfo").read_text()
    assert sorted(p.name for p in point.iterdir()) == []  # the bare folder: nothing written


def test_a_mount_in_another_namespace_is_named_before_mounting(
    loopfs: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Mounting the same filesystem again is safe, but the user learns why close may fail."""
    dev, _ = loopfs
    with mounted_elsewhere(dev, tmp_path / "elsewhere"):
        point = tmp_path / "backup"
        layer = MountLayer(MountConfig(point=point, device=dev), None, fstab=tmp_path / "none")
        with caplog.at_level(logging.WARNING, logger="coldvault.disk.mount"):
            layer.open()
        try:
            assert verify_mount(point, dev).mount_point == point
            assert "another mount namespace" in caplog.text
        finally:
            layer.close()
        assert mount_at(point) is None


def test_a_device_another_program_holds_exclusively_is_named_when_mount_fails(
    loopfs: tuple[Path, str], tmp_path: Path
) -> None:
    dev, _ = loopfs
    point = tmp_path / "backup"
    layer = MountLayer(MountConfig(point=point, device=dev), None, fstab=tmp_path / "none")
    fd = blockdev.open_exclusive(dev, os.O_RDONLY)
    assert fd is not None
    try:
        with pytest.raises(DiskError, match="held open exclusively by another program"):
            layer.open()
    finally:
        os.close(fd)
    assert mount_at(point) is None
