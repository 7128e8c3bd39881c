"""Refusal rules of ``disk init`` / ``add-mirror`` against real loop devices on the host."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.blockdev_env import mounted_elsewhere
from tests.unit.prepare_loops import loop_device, partition, require_loop_tools, sh

from coldvault.disk.prepare import safety
from coldvault.errors import DiskError


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Path]:
    require_loop_tools()
    with loop_device(tmp_path) as dev:
        yield dev


def test_blank_device_may_be_prepared_without_confirmation(loop: Path) -> None:
    report = safety.inspect(str(loop))
    assert report.blank
    assert report.signatures == ()
    assert report.device.size == 256 << 20
    assert report.device.type == "loop"
    safety.check_can_destroy(report, None)
    assert "no partition table and no known signature" in report.describe()


def test_filesystem_needs_the_exact_device_repeated(loop: Path) -> None:
    sh("mkfs.btrfs", "-q", "-L", "olddata", loop)
    report = safety.inspect(str(loop))
    assert not report.blank
    assert [s.type for s in report.signatures] == ["btrfs"]
    assert 'btrfs at 0x10040 (label "olddata")' in report.describe()
    with pytest.raises(DiskError, match="holds data"):
        safety.check_can_destroy(report, None)
    # Another spelling of the same device is not "the exact path given".
    with pytest.raises(DiskError, match="--yes-destroy names"):
        safety.check_can_destroy(report, f"/dev/../dev/{loop.name}")
    safety.check_can_destroy(report, str(loop))


def test_confirmation_naming_another_device_is_refused_even_when_blank(loop: Path) -> None:
    report = safety.inspect(str(loop))
    with pytest.raises(DiskError, match="repeat the exact device path"):
        safety.check_can_destroy(report, "/dev/sdz")


def test_partition_table_is_listed_and_needs_confirmation(loop: Path) -> None:
    part = partition(loop)
    sh("mkfs.btrfs", "-q", part)
    report = safety.inspect(str(loop))
    assert [c.path for c in report.device.children] == [part]
    types = {(s.device, s.type) for s in report.signatures}
    assert (loop.name, "gpt") in types
    assert (part.name, "btrfs") in types
    assert f"partition {part}" in report.describe()
    with pytest.raises(DiskError, match="holds data"):
        safety.check_can_destroy(report, None)
    safety.check_can_destroy(report, str(loop))


def test_a_partition_is_not_a_whole_disk(loop: Path) -> None:
    part = partition(loop)
    report = safety.inspect(str(part))
    with pytest.raises(DiskError, match="not a whole disk"):
        safety.check_can_destroy(report, str(part))


def test_mounted_device_is_refused_even_with_confirmation(loop: Path, tmp_path: Path) -> None:
    sh("mkfs.btrfs", "-q", loop)
    point = tmp_path / "mnt"
    point.mkdir()
    sh("mount", loop, point)
    report = safety.inspect(str(loop))
    assert report.mounts == (f"{loop} is mounted on {point}",)
    with pytest.raises(DiskError, match="in use") as caught:
        safety.check_can_destroy(report, str(loop))
    assert str(point) in str(caught.value)


def test_mounted_partition_makes_the_disk_in_use(loop: Path, tmp_path: Path) -> None:
    part = partition(loop)
    sh("mkfs.btrfs", "-q", part)
    point = tmp_path / "mnt"
    point.mkdir()
    sh("mount", part, point)
    report = safety.inspect(str(loop))
    with pytest.raises(DiskError, match=f"{part} is mounted on {point}"):
        safety.check_can_destroy(report, str(loop))


def test_system_disk_and_its_partitions_are_always_refused(loop: Path, tmp_path: Path) -> None:
    # A loop disk whose partition holds the "root" we point the rule at.
    part = partition(loop)
    sh("mkfs.btrfs", "-q", part)
    root = tmp_path / "root"
    root.mkdir()
    sh("mount", part, root)
    assert safety.system_disks(root) == {loop.name}
    report = safety.inspect(str(part), system_root=root)
    assert report.system_disk
    with pytest.raises(DiskError, match="a partition of the system disk"):
        safety.check_can_destroy(report, str(part))
    whole = safety.inspect(str(loop), system_root=root)
    with pytest.raises(DiskError, match="it is the system disk"):
        safety.check_can_destroy(whole, str(loop))
    # The same device is not the system disk when / lives elsewhere.
    assert not safety.inspect(str(loop), system_root=tmp_path).system_disk


def test_not_a_block_device_is_refused(tmp_path: Path) -> None:
    require_loop_tools()
    plain = tmp_path / "file.img"
    plain.write_bytes(b"\0" * 4096)
    with pytest.raises(DiskError, match="not a block device"):
        safety.inspect(str(plain))
    with pytest.raises(DiskError, match="No such file"):
        safety.inspect(str(tmp_path / "missing"))


def test_by_id_style_symlink_is_resolved(loop: Path, tmp_path: Path) -> None:
    link = tmp_path / "usb-disk"
    link.symlink_to(loop)
    report = safety.inspect(str(link))
    assert report.device.path == loop
    assert report.given == str(link)
    assert report.describe().startswith(f"{link} ({loop})")


def test_mount_only_in_another_namespace_is_in_use(loop: Path, tmp_path: Path) -> None:
    """The kernel's O_EXCL answer sees what this namespace's mountinfo does not."""
    sh("mkfs.ext4", "-q", loop)
    with mounted_elsewhere(loop, tmp_path / "mnt"):
        report = safety.inspect(str(loop))
        assert safety.uses(report.device) == ()  # invisible to mountinfo
        assert any("another mount namespace" in m for m in report.mounts)
        assert "in use: " in report.describe()
        with pytest.raises(DiskError, match=r"it is in use: .*another mount namespace"):
            safety.check_can_destroy(report, str(loop))
    safety.check_can_destroy(safety.inspect(str(loop)), str(loop))  # free again


def test_partition_mounted_in_another_namespace_makes_the_disk_in_use(
    loop: Path, tmp_path: Path
) -> None:
    part = partition(loop)
    sh("mkfs.ext4", "-q", part)
    with mounted_elsewhere(part, tmp_path / "mnt"):
        report = safety.inspect(str(loop))
        with pytest.raises(DiskError, match=f"{part} is in use, but no mount"):
            safety.check_can_destroy(report, str(loop))


def test_dry_run_does_not_call_a_disk_mounted_elsewhere_free(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    sh("mkfs.btrfs", "-q", loop)
    with mounted_elsewhere(loop, tmp_path / "mnt"):
        done = subprocess.run(
            [*coldvault_cmd, "disk", "init", str(loop), "--dry-run", "--yes-destroy", str(loop),
             "--key-file", str(tmp_path / "etc" / "backup.key"),
             "--hash-file", str(tmp_path / "etc" / "token.sha512"),
             "--mount-point", str(tmp_path / "media")],
            check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"in use: {loop} is in use, but no mount or holder" in done.stdout
    assert f"refusing {loop}: it is in use" in done.stderr
    assert "would run" not in done.stdout
