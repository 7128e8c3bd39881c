"""Image jobs on real block devices (loop devices) and a real full filesystem (tmpfs)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root
from tests.unit.image_env import (
    KiB,
    MiB,
    folder_state,
    make_job,
    patch,
    restore_bytes,
    run,
    snapshots,
    write_source,
)

from coldvault import platform
from coldvault.config.model import SourceRef
from coldvault.errors import JobError
from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.image.runner import ImageRunner
from coldvault.progress import no_progress
from coldvault.system.cancel import CancelToken

PART = 256 * KiB

Loop = Callable[[Path], Path]


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def loop() -> Iterator[Loop]:
    """Attach files as loop devices (``losetup -f --show``); always detached afterwards."""
    require_root()
    require_programs("losetup")
    attached: list[str] = []

    def attach(image: Path) -> Path:
        dev = sh("losetup", "-f", "--show", str(image))
        attached.append(dev)
        return Path(dev)

    try:
        yield attach
    finally:
        for dev in reversed(attached):
            subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Mount points to unmount at the end, also when the test fails."""
    points: list[Path] = []
    try:
        yield points
    finally:
        for point in reversed(points):
            subprocess.run(["umount", str(point)], check=False)


def test_loop_device_as_source_and_restore_target(tmp_path: Path, loop: Loop) -> None:
    size = 3 * MiB + 512 * 7  # a device size that is not a multiple of the part size
    img = tmp_path / "src.img"
    data = write_source(img, [(MiB, True), (MiB + 512 * 7, False), (MiB, True)])
    assert len(data) == size
    dev = loop(img)
    fd = os.open(dev, os.O_RDONLY)
    try:
        assert platform.size_of(fd) == size  # from the device (BLKGETSIZE64), not stat
    finally:
        os.close(fd)
    assert os.stat(dev).st_size == 0
    job = make_job(dev)
    result = run(job, tmp_path / "b")
    assert result.bytes_read == size
    patch(img, MiB + 100, b"dirty")  # the loop device sees the change
    subprocess.run(["blockdev", "--flushbufs", str(dev)], check=True)
    second = run(job, tmp_path / "b")
    assert second.bytes_written == PART

    target_img = tmp_path / "target.img"
    target_img.write_bytes(b"")
    os.truncate(target_img, size + 4096)
    target = loop(target_img)
    ImageRunner(job).restore(
        tmp_path / "b", RestoreRequest(dest=target), no_progress, CancelToken()
    )
    subprocess.run(["cmp", "-n", str(size), str(dev), str(target)], check=True)


def test_restore_refuses_a_too_small_device(tmp_path: Path, loop: Loop) -> None:
    img = tmp_path / "src.img"
    write_source(img, [(2 * MiB, True)])
    job = make_job(img)
    run(job, tmp_path / "b")
    small = tmp_path / "small.img"
    small.write_bytes(b"")
    os.truncate(small, MiB)
    dev = loop(small)
    with pytest.raises(JobError, match=f"{dev} has {MiB} bytes, the image needs {2 * MiB}"):
        ImageRunner(job).restore(
            tmp_path / "b", RestoreRequest(dest=dev), no_progress, CancelToken()
        )


def test_mounted_source_and_destination_are_refused(
    tmp_path: Path, loop: Loop, mounts: list[Path]
) -> None:
    require_programs("mkfs.ext4", "mount")
    img = tmp_path / "fs.img"
    img.write_bytes(b"")
    os.truncate(img, 8 * MiB)
    sh("mkfs.ext4", "-q", str(img))
    dev = loop(img)
    point = tmp_path / "mnt"
    point.mkdir()
    sh("mount", str(dev), str(point))
    mounts.append(point)
    job = make_job(dev)
    with pytest.raises(JobError, match="mounted read-write at"):
        run(job, tmp_path / "b")
    assert not (tmp_path / "b" / "snapshot-inprogress").exists()
    run(make_job(dev, allow_mounted=True), tmp_path / "b")
    sh("mount", "-o", "remount,ro", str(point))
    run(job, tmp_path / "b")  # read-only is consistent enough
    with pytest.raises(JobError, match="is mounted at"):
        ImageRunner(job).restore(
            tmp_path / "b", RestoreRequest(dest=dev), no_progress, CancelToken()
        )


def test_source_by_uuid_through_dev_disk(tmp_path: Path, loop: Loop) -> None:
    # The host has no udev: make the by-uuid link udev would make, in a private tree.
    img = tmp_path / "src.img"
    write_source(img, [(MiB, True)])
    dev = loop(img)
    disk = tmp_path / "disk"
    (disk / "by-uuid").mkdir(parents=True)
    os.symlink(dev, disk / "by-uuid" / "1234-ABCD")
    from coldvault.platform import linux

    assert linux.resolve(SourceRef("uuid", "1234-abcd"), disk) == dev


def test_backup_disk_full_is_clear_and_keeps_earlier_snapshots(
    tmp_path: Path, mounts: list[Path]
) -> None:
    require_root()
    require_programs("mount")
    point = tmp_path / "backup"
    point.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(point))
    mounts.append(point)
    src = tmp_path / "src"
    write_source(src, [(MiB, True), (3 * MiB, False)])
    job = make_job(src)
    run(job, point / "img")
    first = snapshots(point / "img")[0]
    before = folder_state(first)
    write_source(src, [(4 * MiB, True)], seed=9)  # every part changes: 4 MiB > 3 MiB
    with pytest.raises(JobError, match="backup disk full while writing part_") as err:
        run(job, point / "img")
    assert err.value.hint and "earlier snapshots are intact" in err.value.hint
    assert folder_state(first) == before
    work = point / "img" / "snapshot-inprogress"
    assert not [n for n in os.listdir(work) if n.endswith(".tmp")]
    # more room: the next run resumes and completes
    sh("mount", "-o", "remount,size=16m", str(point))
    result = run(job, point / "img")
    assert result.snapshot is not None
    assert folder_state(first) == before
    assert restore_bytes(job, point / "img", tmp_path / "out") == src.read_bytes()


def _write_mbr(image: Path, start_sector: int, sectors: int) -> None:
    """One Linux partition (type 0x83) in a classic MBR: what `sfdisk` would write."""
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + start_sector.to_bytes(4, "little")
    entry += sectors.to_bytes(4, "little")
    with image.open("r+b") as f:
        f.seek(446)
        f.write(entry + bytes(48) + b"\x55\xaa")


def test_whole_disk_refused_when_a_partition_is_mounted(tmp_path: Path, mounts: list[Path]) -> None:
    require_root()
    require_programs("losetup", "partx", "mkfs.ext4", "mount")
    img = tmp_path / "disk.img"
    img.write_bytes(b"")
    os.truncate(img, 12 * MiB)
    _write_mbr(img, 2048, (12 * MiB - MiB) // 512)
    dev = sh("losetup", "-f", "--show", "-P", str(img))
    try:
        part = Path(dev + "p1")
        if not part.exists():
            # This host kernel does not parse MBRs itself; partx adds the
            # partition the table describes (BLKPG), as the kernel would.
            sh("partx", "-a", dev)
        assert part.exists()
        sh("mkfs.ext4", "-q", str(part))
        point = tmp_path / "mnt"
        point.mkdir()
        sh("mount", str(part), str(point))
        mounts.append(point)
        assert platform.mounted_read_write(Path(dev)) == [str(point)]
        with pytest.raises(JobError, match=f"source {dev} is mounted read-write at {point}"):
            run(make_job(dev), tmp_path / "b")
        run(make_job(dev, allow_mounted=True), tmp_path / "b")
        with pytest.raises(JobError, match="is mounted at"):
            ImageRunner(make_job(dev)).restore(
                tmp_path / "b", RestoreRequest(dest=Path(dev)), no_progress, CancelToken()
            )
        subprocess.run(["umount", str(point)], check=True)
        mounts.remove(point)
        assert platform.mounted_read_write(Path(dev)) == []
        assert run(make_job(dev), tmp_path / "b").bytes_read == 12 * MiB
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
