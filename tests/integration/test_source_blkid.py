"""``uuid:``/``label:``/``partuuid:`` sources without udev: the ``blkid`` fallback.

The host runs no udevd, so ``/dev/disk/by-*`` does not exist: exactly the case of
a container or a rescue system. A real loop device carrying a real ext4 file
system (label, UUID) is looked up. Partition scanning of loop devices does not work
in this host's container (``losetup -P`` makes no ``loopNp1``), so PARTUUID is
covered by the parser test with recorded ``blkid`` output.
"""

from __future__ import annotations

import logging
import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root

from coldvault.config.model import SourceRef
from coldvault.errors import JobError
from coldvault.platform import linux

LABEL = "cv test's disk"  # a space and a quote: blkid escapes both in its export format


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, input=stdin).stdout


@pytest.fixture
def formatted(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loop device carrying ext4 with a label and a known UUID: (device, uuid)."""
    require_root()
    require_programs("losetup", "mkfs.ext4", "blkid")
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(64 << 20)
    fs_uuid = str(uuidlib.uuid4())
    sh("mkfs.ext4", "-q", "-L", LABEL, "-U", fs_uuid, str(image))
    loop = Path(sh("losetup", "-f", "--show", str(image)).strip())
    try:
        yield loop, fs_uuid
    finally:
        subprocess.run(["losetup", "-d", str(loop)], check=False)


def test_blkid_finds_uuid_and_label_without_udev_links(
    formatted: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    part, fs_uuid = formatted
    no_udev = tmp_path / "dev-disk"  # what /dev/disk looks like without udev: nothing
    caplog.set_level(logging.INFO, logger="coldvault.platform")
    assert linux.resolve(SourceRef("uuid", fs_uuid.upper()), no_udev) == part
    assert linux.resolve(SourceRef("label", LABEL), no_udev) == part
    assert caplog.messages[0] == f"uuid:{fs_uuid.upper()} is {part} (found through blkid " + (
        f"(no link in {no_udev / 'by-uuid'}: is udev running?))"
    )
    with pytest.raises(JobError, match=r"looked in .*, then asked blkid"):
        linux.resolve(SourceRef("label", "cv no such label"), no_udev)


def test_udev_links_win_over_blkid(
    formatted: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    part, fs_uuid = formatted
    disk = tmp_path / "dev-disk"
    (disk / "by-uuid").mkdir(parents=True)
    (disk / "by-uuid" / fs_uuid).symlink_to(part)
    caplog.set_level(logging.INFO, logger="coldvault.platform")
    assert linux.resolve(SourceRef("uuid", fs_uuid), disk) == part
    assert f"found through {disk / 'by-uuid'}" in caplog.messages[0]


def test_blkid_export_parsing() -> None:
    text = (
        "DEVNAME=/dev/sda1\nLABEL=my\\ lab\\'el\nUUID=0F3E-12AB\nTYPE=vfat\n\n"
        "DEVNAME=/dev/sdb1\nUUID=0f3e-12ab\nPARTUUID=a1-01\n"
    )
    assert linux.parse_blkid_export(text, SourceRef("label", "my lab'el")) == [Path("/dev/sda1")]
    both = [Path("/dev/sda1"), Path("/dev/sdb1")]
    assert linux.parse_blkid_export(text, SourceRef("uuid", "0f3e-12AB")) == both
    assert linux.parse_blkid_export(text, SourceRef("partuuid", "A1-01")) == [Path("/dev/sdb1")]
    assert linux.parse_blkid_export(text, SourceRef("label", "my lab")) == []
