"""The image inside: a read-only loop device, and read-only mounts of what is on it.

Every command goes through the process gateway. A file system that was not
unmounted cleanly (a backup of a mounted partition) cannot replay its journal on a
read-only device, so a mount that fails is tried once more with the option that
skips the replay; the caller reports that it was used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from coldvault.disk.layers import QUICK_TIMEOUT, SLOW_TIMEOUT
from coldvault.errors import CommandError, JobError
from coldvault.system import proc
from coldvault.system.mounts import mount_at

log = logging.getLogger("coldvault.mount")

# What a damaged or unclean file system needs to mount from a read-only device.
RESCUE_OPTIONS = {
    "ext3": "noload",
    "ext4": "noload",
    "xfs": "norecovery",
    "btrfs": "rescue=nologreplay",
}
# A backup is data to look at, never programs or devices to trust.
BASE_OPTIONS = "ro,nosuid,nodev"
SECTOR = 512  # partx counts 512-byte sectors for an image file


@dataclass(frozen=True)
class Probe:
    """What ``blkid -p`` found on a device: a file system type, a partition table, or neither."""

    fstype: str | None
    pttype: str | None


@dataclass(frozen=True, order=True)
class Partition:
    """One entry of a partition table: number, and its byte range in the image."""

    number: int
    offset: int
    size: int


def attach(image: Path, *, offset: int = 0, size: int | None = None) -> Path:
    """Attach ``image`` (``size`` bytes from ``offset``) to a free loop device, read-only."""
    argv: list[str | Path] = ["losetup", "--read-only", "--find", "--show"]
    if offset or size is not None:
        argv += ["--offset", str(offset)]
    if size is not None:
        argv += ["--sizelimit", str(size)]
    out = proc.run_text([*argv, image], timeout=QUICK_TIMEOUT).strip()
    if not out.startswith("/dev/loop"):
        raise JobError(f"losetup gave no loop device for {image}: {out!r}")
    return Path(out)


def backing_file(loop: Path) -> str | None:
    """The file behind ``loop`` (from sysfs), or None when it is detached."""
    try:
        return (Path("/sys/block") / loop.name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None


def detach(loop: Path, image: str) -> bool:
    """Detach ``loop`` if it still serves ``image``; return whether it did."""
    behind = backing_file(loop)
    if behind is None or behind.removesuffix(" (deleted)") != image:
        return False  # already detached, or reused for something else: not ours
    proc.run(["losetup", "--detach", loop], timeout=QUICK_TIMEOUT)
    return True


def probe(device: Path) -> Probe:
    """Look at the start of ``device`` (the low-level probe; no cache, no udev)."""
    done = proc.run(["blkid", "-p", "-o", "export", device], check=False, timeout=QUICK_TIMEOUT)
    if done.returncode not in (0, 2):  # 2: nothing recognised
        raise CommandError(done.argv, done.returncode, done.stderr.decode(errors="replace")[-500:])
    fields = dict(line.split("=", 1) for line in done.text.splitlines() if "=" in line)
    return Probe(fields.get("TYPE"), fields.get("PTTYPE"))


def partitions(image: Path) -> list[Partition]:
    """The partitions of the table on ``image``, read in user space (``partx``).

    The kernel's own partition scanning (``losetup -P``) needs its partition-table
    parsers, which not every kernel has (this project's test machines do not), and
    device nodes from udev; a loop device per partition over an offset range of the
    image works everywhere.
    """
    out = proc.run_text(
        ["partx", "--show", "--bytes", "--noheadings", "-o", "NR,START,SECTORS", image],
        timeout=QUICK_TIMEOUT,
    )
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            number, start, sectors = map(int, fields)
            if sectors > 0:
                found.append(Partition(number, start * SECTOR, sectors * SECTOR))
    return sorted(found)


def mount_ro(device: Path, point: Path, fstype: str) -> str | None:
    """Mount ``device`` read-only at ``point``; return the rescue option if one was needed."""
    try:
        _mount(device, point, fstype, BASE_OPTIONS)
        return None
    except CommandError as first:
        rescue = RESCUE_OPTIONS.get(fstype)
        if rescue is None:
            raise _mount_error(device, point, fstype, first) from first
        log.info("%s did not mount read-only as it is; trying %s", device, rescue)
        try:
            _mount(device, point, fstype, f"{BASE_OPTIONS},{rescue}")
        except CommandError as second:
            raise _mount_error(device, point, fstype, second) from second
        return rescue


def _mount(device: Path, point: Path, fstype: str, options: str) -> None:
    proc.run(["mount", "-t", fstype, "-o", options, device, point], timeout=SLOW_TIMEOUT)


def _mount_error(device: Path, point: Path, fstype: str, exc: CommandError) -> JobError:
    return JobError(
        f"cannot mount the {fstype} file system of {device} at {point}: {exc.message}",
        hint="`dmesg` says why; `coldvault mount --raw` exposes the image file for "
        "`fsck -n` or a VM",
    )


def unmount(point: Path) -> bool:
    """Unmount ``point`` if something is mounted there; return whether it did."""
    if mount_at(point) is None:
        return False
    proc.run(["umount", point], timeout=QUICK_TIMEOUT)
    return True
