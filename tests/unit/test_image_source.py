"""The image source: only a regular file or a block device, and never one in use."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.blockdev_env import loop_with, mounted, mounted_elsewhere
from tests.unit.fifo_guard import fifo_guard
from tests.unit.image_env import make_job, run, snapshots

from coldvault.errors import JobError
from coldvault.jobs.image.source import open_source
from coldvault.system import blockdev


def test_a_fifo_source_is_refused_before_any_blocking_open(tmp_path: Path) -> None:
    fifo = tmp_path / "source.fifo"
    with (
        fifo_guard(fifo) as stepped_in,
        pytest.raises(JobError, match=f"image source {fifo} is a FIFO: an image source must"),
    ):
        run(make_job(fifo), tmp_path / "b")
    assert not stepped_in
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_a_socket_folder_or_character_device_is_refused(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "source.sock"))
    try:
        for path, kind in (
            (tmp_path / "source.sock", "socket"),
            (tmp_path, "folder"),
            (Path("/dev/null"), "character device"),
        ):
            with pytest.raises(JobError, match=f"image source {path} is a {kind}"):
                run(make_job(path), tmp_path / "b")
    finally:
        sock.close()


def test_a_symlink_to_a_file_is_a_host_path_and_followed(tmp_path: Path) -> None:
    (tmp_path / "disk.img").write_bytes(os.urandom(300_000))
    (tmp_path / "link.img").symlink_to(tmp_path / "disk.img")
    run(make_job(tmp_path / "link.img"), tmp_path / "b")
    assert len(snapshots(tmp_path / "b")) == 1


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    with loop_with(tmp_path, "ext4", "32M") as dev:
        yield dev


def test_an_unused_device_is_held_exclusively_while_it_is_read(ext4: Path) -> None:
    with open_source(make_job(ext4)) as src:
        assert src.size == 32 << 20
        assert blockdev.exclusive_busy(ext4)  # nobody can mount it meanwhile
    assert not blockdev.exclusive_busy(ext4)


def test_a_mounted_btrfs_source_is_refused_naming_the_mount(tmp_path: Path) -> None:
    with loop_with(tmp_path, "btrfs") as dev, mounted(dev, tmp_path / "mnt") as point:
        with pytest.raises(JobError, match=f"source {dev} is mounted read-write at {point}"):
            run(make_job(dev), tmp_path / "b")
        assert not (tmp_path / "b" / "snapshot-inprogress").exists()


def test_a_mount_in_another_namespace_is_refused(ext4: Path, tmp_path: Path) -> None:
    with mounted_elsewhere(ext4, tmp_path / "mnt"):
        with pytest.raises(JobError, match=r"in use: .*another mount namespace") as info:
            run(make_job(ext4), tmp_path / "b")
        assert f"source {ext4} is in use" in info.value.message
        assert "allow_mounted" in (info.value.hint or "")
        # allow_mounted: the user takes responsibility for a device in use
        run(make_job(ext4, allow_mounted=True), tmp_path / "b")
    assert len(snapshots(tmp_path / "b")) == 1


def test_a_read_only_mount_is_allowed_with_and_without_allow_mounted(
    ext4: Path, tmp_path: Path
) -> None:
    with mounted(ext4, tmp_path / "mnt", "ro"):
        run(make_job(ext4), tmp_path / "b")
        run(make_job(ext4, allow_mounted=True), tmp_path / "b")
    assert len(snapshots(tmp_path / "b")) == 2


def test_a_file_behind_a_mounted_loop_device_is_judged_like_the_device(tmp_path: Path) -> None:
    with loop_with(tmp_path, "ext4", "32M") as dev:
        image = tmp_path / "ext4.img"
        run(make_job(image), tmp_path / "b")  # attached, not mounted: nothing changes it
        with mounted(dev, tmp_path / "mnt") as point:
            message = f"source {image} backs the loop device {dev}: source {dev} is mounted"
            with pytest.raises(JobError, match=f"{message} read-write at {point}"):
                run(make_job(image), tmp_path / "b")
            run(make_job(image, allow_mounted=True), tmp_path / "b")
        with mounted(dev, tmp_path / "mnt", "ro"):
            run(make_job(image), tmp_path / "b")
    assert len(snapshots(tmp_path / "b")) == 3
