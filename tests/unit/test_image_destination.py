"""Restore destinations: only a regular file or a free block device, never a loop's backing file."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.blockdev_env import loop_with, mounted, mounted_elsewhere, sh
from tests.unit.fifo_guard import fifo_guard
from tests.unit.image_env import MiB, make_job, restore_bytes, run, write_source

from coldvault.config.model import ImageJob
from coldvault.errors import JobError


@pytest.fixture
def backup(tmp_path: Path) -> ImageJob:
    """A job with one snapshot of a 1 MiB source in ``tmp_path/b``."""
    src = tmp_path / "src.img"
    write_source(src, [(MiB, True)])
    job = make_job(src)
    run(job, tmp_path / "b")
    return job


def _restore(job: ImageJob, tmp_path: Path, dest: Path) -> bytes:
    return restore_bytes(job, tmp_path / "b", dest)


def _digest(path: Path) -> tuple[int, str]:
    return path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_fifo_destination_is_refused_without_blocking(backup: ImageJob, tmp_path: Path) -> None:
    fifo = tmp_path / "dest.fifo"
    with (
        fifo_guard(fifo) as stepped_in,
        pytest.raises(JobError, match=f"restore destination {fifo} is a FIFO"),
    ):
        _restore(backup, tmp_path, fifo)
    assert not stepped_in


def test_a_socket_folder_or_character_device_is_refused(backup: ImageJob, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "dest.sock"))
    try:
        for path, kind in (
            (tmp_path / "dest.sock", "socket"),
            (tmp_path / "b", "folder"),
            (Path("/dev/null"), "character device"),
        ):
            with pytest.raises(JobError, match=f"restore destination {path} is a {kind}"):
                _restore(backup, tmp_path, path)
    finally:
        sock.close()


def test_a_new_file_and_a_smaller_file_get_the_image(backup: ImageJob, tmp_path: Path) -> None:
    source = (tmp_path / "src.img").read_bytes()
    assert _restore(backup, tmp_path, tmp_path / "new.img") == source
    small = tmp_path / "small.img"
    small.write_bytes(b"x" * 1000)
    assert _restore(backup, tmp_path, small) == source


def test_a_larger_file_is_never_shrunk(backup: ImageJob, tmp_path: Path) -> None:
    dest = tmp_path / "large.img"
    dest.write_bytes(b"\x77" * (3 * MiB))
    got = _restore(backup, tmp_path, dest)
    assert len(got) == 3 * MiB
    assert got[:MiB] == (tmp_path / "src.img").read_bytes()
    assert got[MiB:] == b"\x77" * (2 * MiB)


def test_the_file_behind_a_mounted_loop_device_is_refused(backup: ImageJob, tmp_path: Path) -> None:
    """The reported case: a 32 MiB ext4 image, mounted through a loop device."""
    with loop_with(tmp_path, "ext4", "32M") as dev, mounted(dev, tmp_path / "mnt") as point:
        image = tmp_path / "ext4.img"
        alias = tmp_path / "alias.img"  # another name of the same file: matched by inode
        os.link(image, alias)
        link = tmp_path / "link.img"
        link.symlink_to(image)
        before = _digest(image)
        for dest in (image, alias, link):
            with pytest.raises(JobError, match=f"backs the loop device {dev}") as info:
                _restore(backup, tmp_path, dest)
            assert f"mounted at {point}" in info.value.message
        assert _digest(image) == before == (32 * MiB, before[1])


def test_the_file_behind_an_unmounted_loop_device_is_refused(
    backup: ImageJob, tmp_path: Path
) -> None:
    with loop_with(tmp_path, "ext4", "8M") as dev:
        message = f"backs the loop device {dev} \\(not in use\\)"
        with pytest.raises(JobError, match=message):
            _restore(backup, tmp_path, tmp_path / "ext4.img")


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Path]:
    with loop_with(tmp_path, "btrfs", "128M") as dev:
        yield dev


def test_a_mounted_btrfs_device_is_refused(backup: ImageJob, tmp_path: Path, device: Path) -> None:
    with mounted(device, tmp_path / "mnt") as point:
        message = f"restore destination {device} is mounted at {point}"
        with pytest.raises(JobError, match=message):
            _restore(backup, tmp_path, device)


def test_a_device_mounted_in_another_namespace_is_refused(
    backup: ImageJob, tmp_path: Path, device: Path
) -> None:
    with (
        mounted_elsewhere(device, tmp_path / "mnt"),
        pytest.raises(JobError, match=r"is in use: .*another mount namespace"),
    ):
        _restore(backup, tmp_path, device)
    got = _restore(backup, tmp_path, device)  # free again: restored
    assert got[:MiB] == (tmp_path / "src.img").read_bytes()


def test_a_device_behind_another_loop_device_is_refused(
    backup: ImageJob, tmp_path: Path, device: Path
) -> None:
    upper = sh("losetup", "--find", "--show", device).strip()
    try:
        with pytest.raises(JobError, match=f"backs the loop device {upper}"):
            _restore(backup, tmp_path, device)
    finally:
        subprocess.run(["losetup", "-d", upper], check=False)
