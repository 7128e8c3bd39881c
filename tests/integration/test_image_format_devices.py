"""The original script's tail cases restored onto loop devices of exactly the source size."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root
from tests.unit.image_env import KiB, make_job, write_source
from tests.unit.test_image_format import original_layout, original_read

from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.image.runner import ImageRunner
from coldvault.progress import no_progress
from coldvault.system.cancel import CancelToken

PART = 256 * KiB

# A loop device's size is whole 512-byte sectors, so the short tails are too here.
TAILS = {
    "short-data-tail": [(PART, True), (PART, False), (1536, True)],
    "short-zero-tail": [(PART, True), (1536, False)],
    "exact-multiple-zero-last": [(PART, True), (PART, False)],
}


@pytest.fixture
def loop() -> Iterator[Callable[[Path], Path]]:
    """Attach files as loop devices (``losetup -f --show``); always detached afterwards."""
    require_root()
    require_programs("losetup")
    attached: list[str] = []

    def attach(image: Path) -> Path:
        out = subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
        )
        attached.append(out.stdout.strip())
        return Path(attached[-1])

    try:
        yield attach
    finally:
        for dev in reversed(attached):
            subprocess.run(["losetup", "-d", dev], check=False)


def _device_bytes(dev: Path, size: int) -> bytes:
    fd = os.open(dev, os.O_RDONLY)
    try:
        return os.pread(fd, size + 1, 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", sorted(TAILS))
def test_original_folder_restores_onto_an_exact_size_device(
    tmp_path: Path, loop: Callable[[Path], Path], case: str
) -> None:
    src = tmp_path / "src"
    data = write_source(src, TAILS[case])
    job_dir = tmp_path / "b"
    original_layout(data, job_dir / "snapshot-2020-01-02-030405")
    target_img = tmp_path / "target.img"
    target_img.write_bytes(b"\x55" * len(data))  # exactly the source size, not zeros
    dev = loop(target_img)
    ImageRunner(make_job(src)).restore(
        job_dir, RestoreRequest(dest=dev), no_progress, CancelToken()
    )
    assert _device_bytes(dev, len(data)) == data  # all of it, nothing past the end


@pytest.mark.parametrize("case", sorted(TAILS))
def test_our_backup_of_a_device_reads_back_the_original_way(
    tmp_path: Path, loop: Callable[[Path], Path], case: str
) -> None:
    img = tmp_path / "src.img"
    data = write_source(img, TAILS[case])
    dev = loop(img)
    job = make_job(dev, snapshots=0)
    ImageRunner(job).run(tmp_path / "b", no_progress, CancelToken())
    assert original_read(tmp_path / "b") == data
    target_img = tmp_path / "target.img"
    target_img.write_bytes(b"\x55" * len(data))
    target = loop(target_img)
    ImageRunner(job).restore(
        tmp_path / "b", RestoreRequest(dest=target), no_progress, CancelToken()
    )
    assert _device_bytes(target, len(data)) == data
