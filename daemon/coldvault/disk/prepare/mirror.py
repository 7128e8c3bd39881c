"""``coldvault disk add-mirror``: a second disk joins the backup array.

The new disk gets a partition at the same sectors, with the same label and
type, as the array's current member, then ``mdadm --add`` puts it into the
missing slot (or ``--grow`` makes room for it) and the kernel copies the data
over. Array state comes from sysfs (``/sys/class/block/mdN/md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from coldvault.config.model import DEFAULT_NAME
from coldvault.disk.prepare import safety
from coldvault.disk.prepare.execute import Executor, wait_for_block_device
from coldvault.disk.prepare.init import check_programs
from coldvault.disk.prepare.plan import Step, mirror_plan, partition_path
from coldvault.errors import DiskError
from coldvault.progress import format_duration
from coldvault.system.cancel import CancelToken

SYS_BLOCK = safety.SYS_BLOCK
SECTOR = 512  # sysfs counts partition start/size and md progress in 512-byte sectors
GPT_BACKUP_SECTORS = 33  # backup header + partition entries at the end of a disk
RECOVERY_START_SECONDS = 30.0


@dataclass(frozen=True)
class Member:
    """One device of an md array."""

    name: str  # kernel name of the member, e.g. "loop0p1"
    state: str  # "in_sync", "spare", "faulty", ...
    slot: str  # "0", "1", or "none"


@dataclass(frozen=True)
class ArrayState:
    """An md array as sysfs shows it."""

    path: Path
    name: str  # "md127"
    level: str
    raid_disks: int
    degraded: int
    array_state: str  # "clean", "active", "read-auto", ...
    sync_action: str  # "idle", "recover", "resync", ...
    sync_completed: tuple[int, int] | None  # sectors done, total
    members: tuple[Member, ...]

    @property
    def clean(self) -> bool:
        """Every slot is filled with an in-sync member and nothing is being copied."""
        return self.degraded == 0 and self.sync_action == "idle"

    def describe(self) -> str:
        """``/dev/md/backup: raid1, 2 of 2 in sync, idle``."""
        in_sync = sum(1 for m in self.members if "in_sync" in m.state)
        text = f"{self.path}: {self.level}, {in_sync} of {self.raid_disks} members in sync"
        text += f", {self.sync_action}"
        if self.sync_completed:
            done, total = self.sync_completed
            text += f" {100 * done / total:.1f}%"
        members = ", ".join(f"{m.name} ({m.state})" for m in self.members)
        return f"{text}; members: {members}"


def _read(path: Path) -> str:
    return path.read_text().strip()


def _progress(text: str) -> tuple[int, int] | None:
    done, sep, total = text.partition("/")
    if not sep or not done.strip().isdigit() or not total.strip().isdigit():
        return None  # "none" when no sync is running
    return int(done), int(total)


def array_state(array: Path) -> ArrayState:
    """The state of the running md array ``array``; DiskError if it is not running."""
    name = array.resolve().name
    md = SYS_BLOCK / name / "md"
    if not array.exists() or not md.is_dir():
        raise DiskError(
            f"the array {array} is not running",
            hint="open the backup disk first (`coldvault open`), then add the mirror",
        )
    members = []
    for dev in sorted(md.glob("dev-*")):
        members.append(
            Member(
                name=(dev / "block").resolve().name,
                state=_read(dev / "state"),
                slot=_read(dev / "slot"),
            )
        )
    return ArrayState(
        path=array,
        name=name,
        level=_read(md / "level"),
        raid_disks=int(_read(md / "raid_disks")),
        degraded=int(_read(md / "degraded")) if (md / "degraded").exists() else 0,
        array_state=_read(md / "array_state"),
        sync_action=_read(md / "sync_action") if (md / "sync_action").exists() else "idle",
        sync_completed=_progress(_read(md / "sync_completed"))
        if (md / "sync_completed").exists()
        else None,
        members=tuple(members),
    )


@dataclass(frozen=True)
class PartitionGeometry:
    """Where a partition lies on its disk, and its GPT name."""

    disk: str
    start: int  # 512-byte sectors
    size: int  # 512-byte sectors
    label: str


def geometry(part_name: str) -> PartitionGeometry:
    """The geometry of partition ``part_name`` from sysfs."""
    entry = SYS_BLOCK / part_name
    if not (entry / "partition").exists():
        raise DiskError(
            f"array member {part_name} is not a partition; add-mirror copies a partition layout"
        )
    label = ""
    for line in (entry / "uevent").read_text().splitlines():
        if line.startswith("PARTNAME="):
            label = line.partition("=")[2]
    return PartitionGeometry(
        disk=entry.resolve().parent.name,
        start=int(_read(entry / "start")),
        size=int(_read(entry / "size")),
        label=label or DEFAULT_NAME,
    )


def _logical_sector(disk_name: str) -> int:
    return int(_read(SYS_BLOCK / disk_name / "queue" / "logical_block_size"))


def add_mirror(
    device: str,
    *,
    array: Path,
    yes_destroy: str | None,
    dry_run: bool,
    wait: bool,
    out: TextIO,
    system_root: Path = Path("/"),
    cancel: CancelToken | None = None,
) -> ArrayState:
    """Partition ``device`` like the array's member and add it; return the array's state."""
    state = array_state(array)
    if state.level != "raid1":
        raise DiskError(f"{array} is {state.level}, not a mirror (raid1)")
    source = next((m for m in state.members if "in_sync" in m.state), None)
    if source is None:
        raise DiskError(f"{array} has no in-sync member to copy the partition layout from")
    geo = geometry(source.name)
    report = safety.inspect(device, system_root=system_root)
    print("Device to add (everything on it will be destroyed):", file=out)
    print(report.describe(), file=out)
    safety.check_can_destroy(report, yes_destroy)
    disk = report.device
    lbs = _logical_sector(disk.name)
    needed = (geo.start + geo.size) * SECTOR + GPT_BACKUP_SECTORS * lbs
    if disk.size < needed:
        raise DiskError(
            f"{device} is too small: {disk.size} bytes, the mirror partition needs {needed}",
            hint="use a disk at least as large as the first one",
        )
    first = geo.start * SECTOR // lbs
    last = first + geo.size * SECTOR // lbs - 1
    grow_to = state.raid_disks + 1 if state.degraded == 0 else None
    plan = mirror_plan(
        array,
        disk.path,
        [d.path for d in disk.walk() if d.type == "part"],
        geo.label,
        first,
        last,
        grow_to,
    )
    if state.array_state in ("read-auto", "readonly"):
        # A read-only array does not start the copy onto the new member.
        rw = Step(f"switch {array} to read-write", argv=("mdadm", "--readwrite", str(array)))
        plan = type(plan)((rw, *plan.steps), close_at_end=False)
    if dry_run:
        print("\nDry run: these commands would run (nothing was changed):", file=out)
        print(plan.show(), file=out)
        return state
    check_programs(("wipefs", "sgdisk", "partx", "mdadm"))
    part = partition_path(disk.path)
    Executor(plan, out=out, actions={"wait-partition": lambda: wait_for_block_device(part)}).run()
    return watch_resync(array, out=out, wait=wait, cancel=cancel)


def watch_resync(
    array: Path, *, out: TextIO, wait: bool, cancel: CancelToken | None = None
) -> ArrayState:
    """Report the copy onto the new member; with ``wait``, until the array is clean."""
    cancel = cancel or CancelToken()
    state = array_state(array)
    print(state.describe(), file=out, flush=True)
    last_shown = -1
    waited = 0.0
    while wait and not state.clean:
        cancel.check()
        cancel.wait(1.0)
        waited += 1.0
        state = array_state(array)
        if state.degraded and state.sync_action == "idle" and waited > RECOVERY_START_SECONDS:
            raise DiskError(
                f"{array} is degraded but does not copy onto the new member: {state.describe()}",
                hint="see `mdadm --detail` and the kernel log (dmesg)",
            )
        if state.sync_completed:
            done, total = state.sync_completed
            percent = int(100 * done / total)
            if percent != last_shown:
                print(
                    f"{array}: {state.sync_action} {percent}% after {format_duration(waited)}",
                    file=out,
                    flush=True,
                )
                last_shown = percent
    if state.clean:
        print(f"{array} is a clean {state.raid_disks}-member mirror: {state.describe()}", file=out)
    else:
        print(
            f"the copy continues in the background; see `coldvault disk status` "
            f"or /proc/mdstat ({state.describe()})",
            file=out,
        )
    return state
