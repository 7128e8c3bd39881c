"""The image inside: a read-only loop device, and read-only mounts of what is on it.

Every command goes through the process gateway. A file system that was not
unmounted cleanly (a backup of a mounted partition) cannot replay its journal on a
read-only device, so a mount that fails is tried once more with the option that
skips the replay; the caller reports that it was used.
"""

from __future__ import annotations

import logging
import time
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
NODE_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Probe:
    """What ``blkid -p`` found on a device: a file system type, a partition table, or neither."""

    fstype: str | None
    pttype: str | None


def attach(image: Path, *, partitions: bool) -> Path:
    """Attach ``image`` to a free loop device, read-only (``-P``: scan its partitions)."""
    argv: list[str | Path] = ["losetup", "--read-only", "--find", "--show"]
    if partitions:
        argv.append("--partscan")
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


def partitions(loop: Path) -> list[tuple[int, Path]]:
    """(number, device) of each partition the kernel found on ``loop``, by number."""
    found = []
    sysdir = Path("/sys/block") / loop.name
    for child in sysdir.glob(f"{loop.name}p*"):
        try:
            number = int((child / "partition").read_text())
        except (OSError, ValueError):
            continue
        found.append((number, Path("/dev") / child.name))
    found.sort()
    deadline = time.monotonic() + NODE_WAIT_SECONDS
    for _, dev in found:  # the node appears through devtmpfs/udev a moment later
        while not dev.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return found


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
