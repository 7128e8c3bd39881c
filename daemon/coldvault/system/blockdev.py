"""Is this block device in use? One answer for image sources, restore destinations,
``disk init`` and the mount layer.

Two witnesses, each covering the other's blind spot:

- the kernel: an ``O_EXCL`` open of a block device fails with ``EBUSY`` while a
  filesystem on it is mounted, in *any* mount namespace (the hardened service's own
  ``PrivateMounts=`` namespace is one), while it is active swap, and while md,
  device-mapper (LUKS, LVM) or another program holds it exclusively. It cannot say
  where or by whom, and it refuses a read-only mounted device just the same;
- ``/proc/self/mountinfo`` (matched by device number *and* by source device, since
  Btrfs shows an anonymous ``0:N`` number), ``/proc/swaps`` and sysfs ``holders/``:
  where it is mounted and what holds it, for the message, and whether every mount
  is read-only. They are blind to other mount namespaces.

A device counts as in use when either witness says so; a use that only the kernel
sees is reported as such ("mounted in another mount namespace, or held open
exclusively by another program"). A whole disk is in use when one of its
partitions is, or a device stacked on it (RAID, LUKS, LVM) is.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from coldvault.system.mounts import MountInfo, device_number, is_mount_of, mounts

SYS_BLOCK = Path("/sys/class/block")
PROC_SWAPS = Path("/proc/swaps")


@dataclass(frozen=True)
class Mounted:
    """A visible mount of the device or of a device on it."""

    node: Path  # the device that is mounted (the device itself, a partition, a volume on it)
    mount: MountInfo


@dataclass(frozen=True)
class DeviceUse:
    """Everything that uses a block device, as far as this process can tell."""

    device: Path
    mounts: tuple[Mounted, ...] = ()
    swaps: tuple[Path, ...] = ()  # nodes that are active swap
    holders: tuple[str, ...] = ()  # "/dev/loop0p1 is used by md127 (an active RAID array)"
    hidden: tuple[Path, ...] = ()  # nodes the kernel reports busy with no use visible here

    @property
    def in_use(self) -> bool:
        """Whether anything uses the device (or a partition or volume on it)."""
        return bool(self.mounts or self.swaps or self.holders or self.hidden)

    @property
    def only_read_only_mounts(self) -> bool:
        """In use, but only by mounts whose filesystems are read-only: nothing can change it."""
        return (
            bool(self.mounts)
            and not (self.swaps or self.holders or self.hidden)
            and all(m.mount.filesystem_read_only for m in self.mounts)
        )

    def mount_points(self, *, writable_only: bool = False) -> list[str]:
        """The visible mount points, in mountinfo order (only read-write ones on request)."""
        points = [
            str(m.mount.mount_point)
            for m in self.mounts
            if not (writable_only and m.mount.filesystem_read_only)
        ]
        return list(dict.fromkeys(points))

    def describe(self) -> str:
        """Every use in one line, naming mount points and holders."""
        found: list[str] = []
        for m in self.mounts:
            mode = "read-only" if m.mount.filesystem_read_only else "read-write"
            who = "mounted" if m.node == self.device else f"{m.node} is mounted"
            found.append(f"{who} at {m.mount.mount_point} ({m.mount.fstype}, {mode})")
        found += [f"{n} is active swap" for n in self.swaps]
        found += list(self.holders)
        for node in self.hidden:
            who = "it" if node == self.device else str(node)
            found.append(
                f"the kernel reports {who} busy, but no mount or holder of it is visible here: "
                "it is mounted in another mount namespace, or held open exclusively by "
                "another program"
            )
        return "; ".join(dict.fromkeys(found)) if found else "not in use"


def exclusive_busy(path: Path) -> bool:
    """Whether the kernel refuses an exclusive open of the block device ``path`` (EBUSY)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno == errno.EBUSY
    os.close(fd)
    return False


def open_exclusive(path: Path, flags: int) -> int | None:
    """Open the block device ``path`` exclusively; None when it is in use (EBUSY).

    While the descriptor is open nobody can mount the device, assemble it into an
    array or open it exclusively. Other errors raise OSError.
    """
    try:
        return os.open(path, flags | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return None
        raise


def _kernel_name(path: Path) -> str | None:
    number = device_number(path)
    if number is None:
        return None
    link = Path(f"/sys/dev/block/{number[0]}:{number[1]}")
    return link.resolve().name if link.exists() else None


def _list(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def partitions(name: str, sys_block: Path = SYS_BLOCK) -> list[str]:
    """Kernel names of the partitions of the block device ``name``."""
    return [c for c in _list(sys_block / name) if (sys_block / name / c / "partition").exists()]


def holders(name: str, sys_block: Path = SYS_BLOCK) -> list[str]:
    """Kernel names of the devices stacked directly on ``name`` (md, dm)."""
    return _list(sys_block / name / "holders")


def holder_kind(holder: str, sys_block: Path = SYS_BLOCK) -> str:
    """What the holder ``holder`` is, in words: a RAID array, LUKS, LVM, device-mapper."""
    if holder.startswith("md"):
        return "an active RAID array"
    try:
        uuid = (sys_block / holder / "dm" / "uuid").read_text().strip()
        name = (sys_block / holder / "dm" / "name").read_text().strip()
    except OSError:
        return "another block device"
    if uuid.startswith("CRYPT-"):
        return f"the open LUKS/crypt mapping {name}"
    if uuid.startswith("LVM-"):
        return f"the active LVM volume {name}"
    return f"the device-mapper device {name}"


def _number_of(name: str, sys_block: Path) -> tuple[int, int] | None:
    try:
        major, minor = (sys_block / name / "dev").read_text().strip().split(":")
        return int(major), int(minor)
    except (OSError, ValueError):
        return None


def _stacked(name: str, sys_block: Path, seen: list[str]) -> None:
    """``name``, its partitions and everything stacked on them, depth first."""
    if name in seen:
        return
    seen.append(name)
    for child in (*partitions(name, sys_block), *holders(name, sys_block)):
        _stacked(child, sys_block, seen)


def _swap_numbers() -> dict[tuple[int, int], Path]:
    try:
        lines = PROC_SWAPS.read_text().splitlines()[1:]
    except OSError:
        return {}
    found = {}
    for line in lines:
        source = line.split()[0] if line.split() else ""
        number = device_number(source) if source.startswith("/") else None
        if number is not None:
            found[number] = Path(source)
    return found


def probe(device: Path, sys_block: Path = SYS_BLOCK) -> DeviceUse:
    """Who uses the block device ``device``, its partitions and the devices stacked on it."""
    name = _kernel_name(device)
    if name is None:
        return DeviceUse(device)
    family: list[str] = []
    _stacked(name, sys_block, family)
    node_path = {n: (device if n == name else Path("/dev") / n) for n in family}
    numbers = {n: num for n in family if (num := _number_of(n, sys_block)) is not None}
    table = mounts()
    mounted = tuple(
        Mounted(node_path[n], m) for m in table for n, num in numbers.items() if is_mount_of(m, num)
    )
    swaps = _swap_numbers()
    swapping = tuple(node_path[n] for n, num in numbers.items() if num in swaps)
    own = [name, *partitions(name, sys_block)]
    held = tuple(
        f"{node_path[n]} is used by {h} ({holder_kind(h, sys_block)})"
        for n in own
        for h in holders(n, sys_block)
    )
    visible = {m.node for m in mounted} | set(swapping)
    visible |= {node_path[n] for n in own if holders(n, sys_block)}
    hidden = _hidden(device, [node_path[n] for n in own[1:]], visible)
    return DeviceUse(device, mounted, swapping, held, hidden)


def _hidden(device: Path, parts: list[Path], visible: set[Path]) -> tuple[Path, ...]:
    """Nodes the kernel calls busy although nothing visible here explains it.

    A whole disk is busy while any of its partitions is claimed, so its own EBUSY
    is explained by a partition that is in use (visibly or not).
    """
    busy_parts = [p for p in parts if p.exists() and exclusive_busy(p)]
    hidden = [p for p in busy_parts if p not in visible]
    explained = device in visible or bool(busy_parts) or any(p in visible for p in parts)
    if not explained and exclusive_busy(device):
        hidden.insert(0, device)
    return tuple(hidden)


_LOOP_GET_STATUS64 = 0x4C05
_LOOP_INFO64 = struct.Struct("=QQQ")  # lo_device, lo_inode, lo_rdevice: the start of loop_info64
_LOOP_INFO64_SIZE = 232


def _loop_backing(name: str, sys_block: Path) -> tuple[int, int, int] | None:
    """(st_dev, st_ino, st_rdev) of the file behind the bound loop device ``name``.

    From the kernel (``LOOP_GET_STATUS64``), which names the file by device and
    inode; when the node cannot be opened, from sysfs ``backing_file`` (a path,
    resolved in this process's view of the file system).
    """
    try:
        fd = os.open(Path("/dev") / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            raw = fcntl.ioctl(fd, _LOOP_GET_STATUS64, bytes(_LOOP_INFO64_SIZE))
            dev, ino, rdev = _LOOP_INFO64.unpack_from(raw)
            return int(dev), int(ino), int(rdev)
        except OSError:
            return None  # ENXIO: not bound
        finally:
            os.close(fd)
    try:
        text = (sys_block / name / "loop" / "backing_file").read_text().rstrip("\n")
        st = os.stat(text)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_rdev


def loops_backed_by(st: os.stat_result, sys_block: Path = SYS_BLOCK) -> list[Path]:
    """The loop devices whose backing file is the file ``st`` describes (by device and inode).

    A block device backing a loop device is matched by its device number too.
    """
    found = []
    for name in _list(sys_block):
        if not name.startswith("loop") or not (sys_block / name / "loop").is_dir():
            continue
        backing = _loop_backing(name, sys_block)
        if backing is None:
            continue
        dev, ino, rdev = backing
        same_file = (dev, ino) == (st.st_dev, st.st_ino)
        same_device = stat.S_ISBLK(st.st_mode) and rdev != 0 and rdev == st.st_rdev
        if same_file or same_device:
            found.append(Path("/dev") / name)
    return found
