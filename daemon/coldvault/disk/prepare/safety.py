"""Look at a device before anything is written to it, and refuse what must not be destroyed.

Everything here only reads: ``lsblk`` for size, model, serial and partitions,
``wipefs`` (listing mode, which never erases) for every signature, mountinfo and
``/proc/swaps`` for use, ``/sys/class/block/*/holders`` for active RAID arrays
and device-mapper users (LUKS, LVM), and the kernel's own answer (an ``O_EXCL``
open, see :mod:`coldvault.system.blockdev`) for uses this namespace cannot see.
The system disk is the disk (or disks, through partitions, RAID and device-mapper)
holding ``/``.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldvault.errors import DiskError
from coldvault.progress import human_bytes
from coldvault.system import blockdev, proc
from coldvault.system.mounts import device_number, is_mount_of, mount_at, mounts

SYS_BLOCK = Path("/sys/class/block")
PROC_SWAPS = Path("/proc/swaps")
_LSBLK_COLUMNS = "NAME,PATH,TYPE,SIZE,MODEL,SERIAL,MAJ:MIN"


@dataclass(frozen=True)
class Signature:
    """One signature ``wipefs`` found: a filesystem, RAID/LVM/LUKS header or partition table."""

    device: str
    offset: str
    type: str
    label: str | None = None
    uuid: str | None = None

    def describe(self) -> str:
        """``loop0p1: btrfs at 0x10040 (label "data")``."""
        text = f"{self.device}: {self.type} at {self.offset}"
        if self.label:
            text += f' (label "{self.label}")'
        return text


@dataclass(frozen=True)
class BlockDevice:
    """A block device and its partitions as ``lsblk`` reports them."""

    name: str
    path: Path
    type: str  # "disk", "loop", "part", "raid1", "crypt", "lvm", ...
    size: int
    model: str | None
    serial: str | None
    major: int
    minor: int
    children: tuple[BlockDevice, ...] = ()

    def walk(self) -> list[BlockDevice]:
        """This device and every device below it in lsblk's tree."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


@dataclass(frozen=True)
class DeviceReport:
    """What is on a device and who uses it: the basis of every refusal."""

    given: str  # the path exactly as the user typed it
    device: BlockDevice
    signatures: tuple[Signature, ...]
    mounts: tuple[str, ...]  # "loop0p1 is mounted on /mnt" / "... is active swap"
    holders: tuple[str, ...]  # "loop0p1 is used by md127 (an active RAID array)"
    system_disk: bool  # the device is, or is a partition of, the disk holding /

    @property
    def blank(self) -> bool:
        """No signature and no partition: nothing would be destroyed."""
        parts = [d for d in self.device.walk() if d.type == "part"]
        return not self.signatures and not parts

    def describe(self) -> str:
        """Several lines for the user: size, model, serial, and everything found on it."""
        d = self.device
        lines = [
            f"{self.given} ({d.path}): {human_bytes(d.size)} ({d.size} bytes), "
            f"model {d.model or 'unknown'}, serial {d.serial or 'unknown'}"
        ]
        parts = [p for p in d.walk() if p.type == "part"]
        for p in parts:
            lines.append(f"  partition {p.path}: {human_bytes(p.size)}")
        for sig in self.signatures:
            lines.append(f"  signature {sig.describe()}")
        for used in (*self.mounts, *self.holders):
            lines.append(f"  in use: {used}")
        if self.blank:
            lines.append("  no partition table and no known signature found")
        return "\n".join(lines)


def _str(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _block_device(node: dict[str, Any]) -> BlockDevice:
    major, minor = (int(x) for x in str(node["maj:min"]).split(":"))
    return BlockDevice(
        name=str(node["name"]),
        path=Path(str(node["path"])),
        type=str(node["type"]),
        size=int(node["size"]),
        model=_str(node.get("model")),
        serial=_str(node.get("serial")),
        major=major,
        minor=minor,
        children=tuple(_block_device(c) for c in node.get("children", ())),
    )


def block_device(path: Path) -> BlockDevice:
    """``lsblk``'s view of the block device at ``path`` with its partitions."""
    text = proc.run_text(["lsblk", "--json", "--bytes", "--output", _LSBLK_COLUMNS, path])
    nodes = json.loads(text)["blockdevices"]
    if not nodes:
        raise DiskError(f"lsblk does not know {path}")
    return _block_device(nodes[0])


def signatures(path: Path) -> tuple[Signature, ...]:
    """Every signature on ``path`` (``wipefs`` without ``--all`` only lists)."""
    text = proc.run_text(["wipefs", "--json", path])
    if not text.strip():
        return ()  # wipefs prints nothing at all when it finds nothing
    return tuple(
        Signature(
            device=str(s["device"]),
            offset=str(s["offset"]),
            type=str(s["type"]),
            label=_str(s.get("label")),
            uuid=_str(s.get("uuid")),
        )
        for s in json.loads(text).get("signatures", ())
    )


def holders(dev: BlockDevice) -> tuple[str, ...]:
    """Who holds ``dev`` or its partitions open: RAID arrays, LUKS, LVM (from sysfs)."""
    found: list[str] = []
    for node in dev.walk():
        folder = SYS_BLOCK / node.name / "holders"
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        found.extend(f"{node.path} is used by {h} ({blockdev.holder_kind(h)})" for h in names)
    return tuple(found)


def _same_device(source: str, node: BlockDevice) -> bool:
    return source.startswith("/") and device_number(source) == (node.major, node.minor)


def uses(dev: BlockDevice) -> tuple[str, ...]:
    """Mounts and swap on ``dev`` or its partitions, as far as this namespace shows them.

    A mount is matched by device number and by its source device, because Btrfs
    reports an anonymous device number in mountinfo.
    """
    nodes = dev.walk()
    found: list[str] = []
    for m in mounts():
        for node in nodes:
            if is_mount_of(m, (node.major, node.minor)):
                found.append(f"{node.path} is mounted on {m.mount_point}")
    try:
        swaps = PROC_SWAPS.read_text().splitlines()[1:]
    except OSError:
        swaps = []
    for line in swaps:
        source = line.split()[0] if line.split() else ""
        found.extend(f"{n.path} is active swap" for n in nodes if _same_device(source, n))
    return tuple(dict.fromkeys(found))


def hidden_uses(path: Path) -> tuple[str, ...]:
    """Uses only the kernel sees: the device or a partition refuses an exclusive open
    although no mount, swap or holder of it is visible here (a mount in another mount
    namespace, such as the service's own, or another program's exclusive open)."""
    return tuple(
        f"{node} is in use, but no mount or holder of it is visible here: it is mounted in "
        "another mount namespace, or held open exclusively by another program"
        for node in blockdev.probe(path).hidden
    )


def _name_of_number(major: int, minor: int) -> str | None:
    link = Path(f"/sys/dev/block/{major}:{minor}")
    return link.resolve().name if link.exists() else None


def _disks_below(name: str, seen: set[str] | None = None) -> set[str]:
    """The whole disks under a block device: through partitions, RAID members, dm slaves."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    entry = SYS_BLOCK / name
    if (entry / "partition").exists():
        return _disks_below(entry.resolve().parent.name, seen)
    slaves = sorted(p.name for p in (entry / "slaves").iterdir()) if entry.is_dir() else []
    if not slaves:
        return {name}
    disks: set[str] = set()
    for slave in slaves:
        disks |= _disks_below(slave, seen)
    return disks


def system_disks(root: Path = Path("/")) -> set[str]:
    """Kernel names of the disks holding the filesystem mounted at ``root``.

    Empty when ``root`` is not on a local block device (overlay, network, tmpfs).
    """
    m = mount_at(root)
    if m is None:
        return set()
    name = None
    if m.source.startswith("/dev/"):
        try:
            st = os.stat(m.source)
            if stat.S_ISBLK(st.st_mode):
                name = _name_of_number(os.major(st.st_rdev), os.minor(st.st_rdev))
        except OSError:
            name = None
    if name is None and m.major != 0:
        name = _name_of_number(m.major, m.minor)
    return _disks_below(name) if name else set()


def resolve_block_device(given: str) -> Path:
    """The real block device behind ``given`` (by-id links resolved); DiskError otherwise."""
    path = Path(given)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DiskError(
            f"cannot prepare {given}: {exc.strerror}",
            hint="give the whole disk, e.g. /dev/disk/by-id/usb-...; see `lsblk -o +MODEL,SERIAL`",
        ) from None
    if not stat.S_ISBLK(st.st_mode):
        raise DiskError(f"cannot prepare {given}: it is not a block device")
    return path.resolve()


def inspect(given: str, *, system_root: Path = Path("/")) -> DeviceReport:
    """Gather everything the refusal rules need about the device the user named."""
    path = resolve_block_device(given)
    dev = block_device(path)
    sigs: list[Signature] = []
    for node in dev.walk():
        if node.type in ("disk", "loop", "part"):
            sigs.extend(signatures(node.path))
    own_disks = _disks_below(dev.name)
    return DeviceReport(
        given=given,
        device=dev,
        signatures=tuple(sigs),
        mounts=uses(dev) + hidden_uses(path),
        holders=holders(dev),
        system_disk=bool(own_disks & system_disks(system_root)),
    )


def check_can_destroy(report: DeviceReport, yes_destroy: str | None) -> None:
    """Raise DiskError unless ``report``'s device may be wiped.

    Never: the system disk or a partition of it, a partition at all (a whole
    disk is prepared), a device in use (mounted, swap, RAID, LUKS, LVM). Only
    with ``--yes-destroy`` repeating the exact path: a device holding a partition
    table or any signature.
    """
    given = report.given
    dev = report.device
    if report.system_disk:
        what = "a partition of the system disk" if dev.type == "part" else "the system disk"
        raise DiskError(f"refusing {given}: it is {what} (it holds /)", hint="pick the backup disk")
    if dev.type not in ("disk", "loop"):
        raise DiskError(
            f"refusing {given}: it is a {dev.type}, not a whole disk",
            hint="give the whole backup disk; coldvault partitions it itself",
        )
    busy = (*report.mounts, *report.holders)
    if busy:
        raise DiskError(
            f"refusing {given}: it is in use: " + "; ".join(busy),
            hint="unmount it / stop the array / close the LUKS and LVM volumes first "
            "(nothing was changed)",
        )
    if yes_destroy is not None and yes_destroy != given:
        raise DiskError(
            f"refusing {given}: --yes-destroy names {yes_destroy!r}, not {given!r}",
            hint=f"repeat the exact device path: --yes-destroy {given}",
        )
    if not report.blank and yes_destroy != given:
        raise DiskError(
            f"refusing {given}: it holds data (see above); everything on it would be destroyed",
            hint=f"if that is what you want, repeat the device: --yes-destroy {given}",
        )
