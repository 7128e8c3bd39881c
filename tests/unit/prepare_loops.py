"""Real loop devices for the ``disk init`` / ``add-mirror`` host tests, always cleaned up."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import require_programs, require_root

PROGRAMS = ("losetup", "lsblk", "wipefs", "blkid", "sgdisk", "partx", "mkfs.btrfs", "mount")


def sh(*argv: str | Path, stdin: bytes | None = None) -> str:
    """Run a command in a test (not product code) and return its stdout."""
    done = subprocess.run(
        [str(a) for a in argv], input=stdin, capture_output=True, check=True, timeout=120
    )
    return done.stdout.decode()


def require_loop_tools() -> None:
    """Root and the block-device tools the host tests drive."""
    require_root()
    require_programs(*PROGRAMS)


def _mounts_under(dev: str) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].split()[1].startswith(dev):
            points.append(line.split()[4])
    return points


@contextlib.contextmanager
def loop_device(folder: Path, size: str = "256M", name: str = "disk.img") -> Iterator[Path]:
    """A fresh sparse image attached with partition scanning; detached even on failure."""
    image = folder / name
    sh("truncate", "-s", size, image)
    dev = sh("losetup", "--find", "--show", "--partscan", image).strip()
    try:
        yield Path(dev)
    finally:
        for point in reversed(_mounts_under(dev)):
            subprocess.run(["umount", "-l", point], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
        image.unlink(missing_ok=True)


def partition(dev: Path, label: str = "data") -> Path:
    """One GPT partition over the whole device; returns its node once the kernel shows it."""
    sh("sgdisk", "--clear", "--new=1:0:0", f"--change-name=1:{label}", dev)
    subprocess.run(["partx", "--update", str(dev)], check=False)
    part = Path(f"{dev}p1")
    assert part.exists(), f"{part} did not appear"
    return part


def snapshot(dev: Path) -> tuple[str, str, str]:
    """What a destructive command would change: blkid, wipefs and lsblk views."""
    blkid = subprocess.run(["blkid", "-p", str(dev)], capture_output=True, check=False)
    wipefs = sh("wipefs", "--no-act", "--json", dev)
    tree = sh("lsblk", "--json", "--bytes", "--output", "NAME,SIZE", dev)
    return blkid.stdout.decode(), wipefs, tree
