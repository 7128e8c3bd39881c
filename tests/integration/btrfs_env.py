"""Real Btrfs filesystems on loop devices for the btrfs job tests.

Each filesystem is a sparse image file in the test's temp folder, attached
with ``losetup -f --show`` and mounted; the fixture always unmounts and
detaches, also when the test fails.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root

from coldvault.config.model import BtrfsJob, Retention
from coldvault.jobs.base import JobResult
from coldvault.jobs.btrfs.runner import BtrfsRunner
from coldvault.progress import Progress
from coldvault.system.cancel import CancelToken

MiB = 1 << 20


def sh(*argv: str | os.PathLike[str]) -> str:
    """Run a setup command; fail loudly with its stderr."""
    done = subprocess.run([os.fspath(a) for a in argv], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Fs:
    """A mounted loop-backed filesystem."""

    image: Path
    device: str
    mount: Path


MakeFs = Callable[..., Fs]


@pytest.fixture
def make_fs(tmp_path: Path) -> Iterator[MakeFs]:
    """Factory: ``make_fs("src", size_mib=300, fstype="btrfs")`` -> mounted :class:`Fs`."""
    yield from _fs_factory(tmp_path)


@pytest.fixture(scope="module")
def module_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeFs]:
    """Like ``make_fs``, but the filesystems live for a whole test module.

    For cases that each work in folders of their own (own job name, own source
    subvolume), so that making filesystems does not dominate the run time.
    """
    yield from _fs_factory(tmp_path_factory.mktemp("fs"))


def _fs_factory(tmp_path: Path) -> Iterator[MakeFs]:
    require_root()
    require_programs("btrfs", "mkfs.btrfs", "losetup", "mount", "umount")
    made: list[Fs] = []

    def make(name: str, size_mib: int = 300, fstype: str = "btrfs") -> Fs:
        known = next((fs for fs in made if fs.mount.name == name), None)
        if known is not None:  # a module's filesystems are made once
            return known
        image = tmp_path / f"{name}.img"
        with open(image, "wb") as f:
            f.truncate(size_mib * MiB)
        device = sh("losetup", "-f", "--show", image).strip()
        fs = Fs(image, device, tmp_path / name)
        made.append(fs)
        if fstype == "btrfs":
            sh("mkfs.btrfs", "-q", device)
        else:
            sh(f"mkfs.{fstype}", "-q", device)
        fs.mount.mkdir()
        sh("mount", device, fs.mount)
        return fs

    try:
        yield make
    finally:
        for fs in reversed(made):
            if (
                subprocess.run(["umount", fs.mount], check=False, capture_output=True).returncode
                != 0
            ):
                subprocess.run(["umount", "-l", fs.mount], check=False, capture_output=True)
            subprocess.run(["losetup", "-d", fs.device], check=False, capture_output=True)


def random_file(path: Path, size: int) -> None:
    """A file from /dev/urandom (fast, for bigger volumes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open("/dev/urandom", "rb") as src, open(path, "wb") as dst:
        left = size
        while left:
            chunk = src.read(min(left, 4 * MiB))
            dst.write(chunk)
            left -= len(chunk)


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of content (files), link target (symlinks) or 'dir'."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(folder) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = "link:" + os.readlink(full)
            elif full.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


def create_subvolume(path: Path) -> Path:
    """``btrfs subvolume create``."""
    sh("btrfs", "subvolume", "create", path)
    return path


def job_for(
    *sources: Path,
    name: str = "data",
    snapshot_dir: Path | None = None,
    source_keep: int | None = 3,
    target_keep: int | None = 30,
) -> BtrfsJob:
    """A btrfs job over ``sources``."""
    return BtrfsJob(
        name=name,
        sources=tuple(sources),
        target=name,
        snapshot_dir=snapshot_dir,
        source_retention=Retention(keep_last=source_keep),
        target_retention=Retention(keep_last=target_keep),
    )


def run_job(job: BtrfsJob, job_dir: Path, cancel: CancelToken | None = None) -> JobResult:
    """One backup run, collecting progress."""
    seen: list[Progress] = []
    result = BtrfsRunner(job).run(job_dir, seen.append, cancel or CancelToken())
    assert seen, "the runner reported no progress"
    return result


def subvol_field(path: Path, field: str) -> str:
    """One field of ``btrfs subvolume show`` (for assertions independent of our parser)."""
    for line in sh("btrfs", "subvolume", "show", path).splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == field:
            return value.strip()
    raise AssertionError(f"{field} not in btrfs subvolume show {path}")


def snapshot_names(folder: Path) -> list[str]:
    """Names in a snapshot folder but the links and coldvault's hidden files."""
    return sorted(p.name for p in folder.iterdir() if not p.is_symlink() and p.name[0] != ".")


def damage_first_block(device: str, path: Path) -> None:
    """Overwrite the first 4 KiB data block of ``path`` on ``device``, behind Btrfs's back.

    Needs ``filefrag`` and ``btrfs-map-logical`` (callers ``require_programs`` them) and a
    single data profile. Bit rot as a disk would cause it: Btrfs's checksum no longer fits.
    """
    sh("sync")
    extents = [ln.split() for ln in sh("filefrag", "-v", "-b4096", path).splitlines()]
    first = next(f for f in extents if f and f[0] == "0:")
    logical = int(first[3].rstrip(".:")) * 4096  # Btrfs reports its logical address
    offset = None
    for line in sh("btrfs-map-logical", "-l", str(logical), device).splitlines():
        words = line.split()
        if "physical" in words:
            offset = int(words[words.index("physical") + 1])
            break
    assert offset is not None, f"btrfs-map-logical found no mapping for {logical}"
    with open(device, "r+b") as dev:
        dev.seek(offset)
        dev.write(b"\xff" * 4096)
        dev.flush()
        os.fsync(dev.fileno())


def wait_group_gone(pgid: int, seconds: float = 60) -> None:
    """Wait until no process of group ``pgid`` is left (send/receive orphaned by a kill)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "send/receive did not exit after the kill"
        time.sleep(0.05)
