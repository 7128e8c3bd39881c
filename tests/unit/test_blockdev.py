"""One "is this block device in use" answer, against real loop devices and namespaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.blockdev_env import loop_with, mounted, mounted_elsewhere, sh

from coldvault.system import blockdev
from coldvault.system.mounts import mounts_of_device


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    with loop_with(tmp_path, "ext4") as dev:
        yield dev


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Path]:
    with loop_with(tmp_path, "btrfs") as dev:
        yield dev


def test_an_unmounted_device_is_free(ext4: Path) -> None:
    use = blockdev.probe(ext4)
    assert not use.in_use
    assert use.describe() == "not in use"
    assert not blockdev.exclusive_busy(ext4)
    fd = blockdev.open_exclusive(ext4, os.O_RDONLY)
    assert fd is not None
    try:  # while we hold it, nobody can claim it: the kernel's answer is "busy"
        assert blockdev.exclusive_busy(ext4)
    finally:
        os.close(fd)


def test_a_mounted_btrfs_is_found_by_its_source_device(btrfs: Path, tmp_path: Path) -> None:
    with mounted(btrfs, tmp_path / "mnt") as point:
        rdev = os.stat(btrfs).st_rdev
        (info,) = mounts_of_device(btrfs)
        # mountinfo shows Btrfs with an anonymous device number: only the source matches
        assert (info.major, info.minor) != (os.major(rdev), os.minor(rdev))
        assert info.mount_point == point
        use = blockdev.probe(btrfs)
        assert use.in_use and not use.hidden
        assert use.mount_points() == [str(point)]
        assert use.describe() == f"mounted at {point} (btrfs, read-write)"
        assert not use.only_read_only_mounts
        assert blockdev.open_exclusive(btrfs, os.O_RDONLY) is None


def test_a_mount_in_another_namespace_is_seen_through_the_kernel(
    ext4: Path, tmp_path: Path
) -> None:
    with mounted_elsewhere(ext4, tmp_path / "mnt"):
        assert mounts_of_device(ext4) == []  # invisible to mountinfo here
        use = blockdev.probe(ext4)
        assert use.in_use
        assert use.hidden == (ext4,)
        assert not use.only_read_only_mounts
        assert "another mount namespace" in use.describe()
    assert not blockdev.probe(ext4).in_use  # the holder is gone, so is the mount


def test_a_read_only_mount_is_told_apart(ext4: Path, tmp_path: Path) -> None:
    with mounted(ext4, tmp_path / "mnt", "ro") as point:
        assert blockdev.exclusive_busy(ext4)  # the kernel refuses it all the same
        use = blockdev.probe(ext4)
        assert use.only_read_only_mounts
        assert use.mount_points(writable_only=True) == []
        assert use.describe() == f"mounted at {point} (ext4, read-only)"


def test_a_read_only_bind_of_a_writable_filesystem_is_not_read_only(
    ext4: Path, tmp_path: Path
) -> None:
    with mounted(ext4, tmp_path / "rw") as rw, mounted(rw, tmp_path / "bind", "bind"):
        sh("mount", "-o", "remount,bind,ro", tmp_path / "bind")
        use = blockdev.probe(ext4)
        assert len(use.mounts) == 2
        assert not use.only_read_only_mounts
        assert use.mount_points(writable_only=True) == [str(rw), str(tmp_path / "bind")]
