"""What ``disk init`` and ``disk add-mirror`` will do, as data.

A plan is a list of :class:`Step`: an external command (argv) or a named
action done in Python (write the key file, write the token...). ``--dry-run``
prints the plan and stops; the executor (:mod:`.execute`) runs it. A step that
opens something (array, LUKS mapping, LV, mount) carries the command that
closes it again, so a failure half-way closes what was opened, and a finished
``disk init`` leaves the disk closed unless ``--keep-open``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coldvault.config.model import (
    DEFAULT_HASH_FILE,
    DEFAULT_KEY_FILE,
    DEFAULT_NAME,
    ArrayConfig,
    LuksConfig,
    LvmConfig,
    MountConfig,
    TokenConfig,
    default_lv_name,
)

LINUX_RAID_TYPE = "FD00"  # sgdisk's code for "Linux RAID"


@dataclass(frozen=True)
class InitOptions:
    """Every name and size ``disk init`` uses; the defaults are the design's."""

    part_label: str = DEFAULT_NAME
    array: Path = ArrayConfig.device
    luks_name: str = LuksConfig.name
    key_file: Path = DEFAULT_KEY_FILE
    vg: str = LvmConfig.vg
    lv: str = field(default_factory=default_lv_name)
    lv_size: str = "100%FREE"  # lvcreate: "100%FREE", "80%VG" (extents) or "500G" (size)
    fs_label: str = DEFAULT_NAME
    mount_point: Path = MountConfig.point
    token_file: str = TokenConfig.file
    hash_file: Path = DEFAULT_HASH_FILE
    # cryptsetup cost options; None leaves cryptsetup's defaults (tests pass a cheap PBKDF).
    pbkdf: str | None = None
    pbkdf_iterations: int | None = None
    iter_time_ms: int | None = None
    keep_open: bool = False

    @property
    def mapper(self) -> Path:
        """The opened LUKS volume."""
        return Path("/dev/mapper") / self.luks_name

    @property
    def lv_path(self) -> Path:
        """The logical volume holding the Btrfs filesystem."""
        return Path("/dev") / self.vg / self.lv

    @property
    def token_path(self) -> Path:
        """The token file on the mounted backup filesystem."""
        return self.mount_point / self.token_file


@dataclass(frozen=True)
class Step:
    """One thing a plan does: a command, or an action done in Python."""

    why: str
    argv: tuple[str, ...] = ()
    action: str | None = None  # see execute.ACTIONS; ``argv`` is empty then
    stdin: str | None = None  # name of the secret fed on stdin ("passphrase"), never on argv
    undo: tuple[str, ...] = ()  # closes what this step opened

    def show(self) -> str:
        """One line for ``--dry-run`` and the log."""
        if self.action is not None:
            return f"# {self.why}"
        text = " ".join(_quote(a) for a in self.argv)
        if self.stdin:
            text += f"   (the {self.stdin} on stdin)"
        return f"{text}   # {self.why}"


@dataclass(frozen=True)
class Plan:
    """Steps in order, and which of their ``undo`` commands run at the end."""

    steps: tuple[Step, ...]
    close_at_end: bool = True

    def teardown(self) -> tuple[Step, ...]:
        """The closing commands, in reverse order of opening."""
        return tuple(
            Step(f"close what `{s.argv[0]}` opened", argv=s.undo)
            for s in reversed(self.steps)
            if s.undo
        )

    def show(self) -> str:
        """Every command the plan runs, one per line."""
        lines = [s.show() for s in self.steps]
        if self.close_at_end:
            lines += [s.show() for s in self.teardown()]
        return "\n".join(lines)


def _quote(arg: str) -> str:
    safe = all(c.isalnum() or c in "-_./:=%+,@" for c in arg)
    return arg if safe and arg else "'" + arg.replace("'", "'\\''") + "'"


def partition_path(disk: Path, number: int = 1) -> Path:
    """The kernel's name for partition ``number`` of ``disk`` (``sdb1``, ``loop0p1``)."""
    name = disk.name
    sep = "p" if name[-1:].isdigit() else ""
    return disk.with_name(f"{name}{sep}{number}")


def cost_options(opts: InitOptions) -> list[str]:
    """cryptsetup key-derivation options; empty means cryptsetup's own defaults."""
    out = []
    if opts.pbkdf:
        out.append(f"--pbkdf={opts.pbkdf}")
    if opts.pbkdf_iterations is not None:
        out.append(f"--pbkdf-force-iterations={opts.pbkdf_iterations}")
    if opts.iter_time_ms is not None:
        out.append(f"--iter-time={opts.iter_time_ms}")
    return out


def wipe_steps(disk: Path, partitions: Sequence[Path]) -> list[Step]:
    """Erase old signatures: partitions first (they would reappear in a new one), then the disk."""
    steps = [
        Step(f"erase old signatures on {p}", argv=("wipefs", "--all", str(p))) for p in partitions
    ]
    steps.append(Step(f"erase old signatures on {disk}", argv=("wipefs", "--all", str(disk))))
    return steps


def partition_steps(disk: Path, label: str, first: str = "0", last: str = "0") -> list[Step]:
    """A new GPT with one Linux RAID partition, made known to the kernel and wiped."""
    part = partition_path(disk)
    return [
        Step(
            f"new GPT on {disk}: partition 1 labelled {label!r}, type Linux RAID",
            argv=(
                "sgdisk",
                "--clear",
                f"--new=1:{first}:{last}",
                f"--typecode=1:{LINUX_RAID_TYPE}",
                f"--change-name=1:{label}",
                str(disk),
            ),
        ),
        Step(f"tell the kernel about {disk}'s partitions", argv=("partx", "--update", str(disk))),
        Step(f"wait until {part} appears", action="wait-partition"),
        Step(f"erase anything left inside {part}", argv=("wipefs", "--all", str(part))),
    ]


def init_plan(opts: InitOptions, disk: Path, partitions: Sequence[Path] = ()) -> Plan:
    """Every step of ``disk init`` on ``disk`` (already resolved to its kernel path)."""
    part = partition_path(disk)
    array = str(opts.array)
    cost = cost_options(opts)
    luks_fmt = ("cryptsetup", "luksFormat", "--batch-mode", "--type=luks2", *cost)
    steps = [
        *wipe_steps(disk, partitions),
        *partition_steps(disk, opts.part_label),
        Step(
            f"RAID1 {array} with {part} and the second member missing",
            argv=(
                "mdadm",
                "--create",
                array,
                "--run",
                "--level=1",
                "--raid-devices=2",
                "--metadata=1.2",
                str(part),
                "missing",
            ),
            undo=("mdadm", "--stop", array),
        ),
        Step(
            f"LUKS2 on {array} with the passphrase",
            argv=(*luks_fmt, "--key-file=-", array),
            stdin="passphrase",
        ),
        Step(f"write a new 1 KiB random key file {opts.key_file} (mode 0600)", action="write-key"),
        Step(
            f"add {opts.key_file} as a second LUKS key",
            argv=(
                "cryptsetup",
                "luksAddKey",
                "--batch-mode",
                *cost,
                "--key-file=-",
                array,
                str(opts.key_file),
            ),
            stdin="passphrase",
        ),
        Step(
            f"open the LUKS volume as {opts.mapper}",
            argv=("cryptsetup", "open", f"--key-file={opts.key_file}", array, opts.luks_name),
            undo=("cryptsetup", "close", opts.luks_name),
        ),
        Step("LVM physical volume", argv=("pvcreate", "--yes", str(opts.mapper))),
        # No autoactivation: udev would otherwise activate the LV whenever LUKS opens,
        # and coldvault, finding it active, would leave it so and fail to close LUKS.
        Step(
            f"volume group {opts.vg}, activated only by coldvault",
            argv=("vgcreate", "--setautoactivation", "n", opts.vg, str(opts.mapper)),
        ),
        Step(
            f"logical volume {opts.vg}/{opts.lv}",
            argv=(
                "lvcreate",
                "--yes",
                "--wipesignatures=y",
                *_lv_size(opts.lv_size),
                f"--name={opts.lv}",
                opts.vg,
            ),
            undo=("lvchange", "--activate=n", f"{opts.vg}/{opts.lv}"),
        ),
        Step(
            f"Btrfs on {opts.lv_path}",
            argv=("mkfs.btrfs", "--quiet", f"--label={opts.fs_label}", str(opts.lv_path)),
        ),
        Step(f"create the mount point {opts.mount_point}", action="mkdir"),
        Step(
            f"mount it on {opts.mount_point}",
            argv=("mount", "-t", "btrfs", str(opts.lv_path), str(opts.mount_point)),
            undo=("umount", str(opts.mount_point)),
        ),
        Step(f"check that {opts.mount_point} is the new filesystem", action="verify-mount"),
        Step(
            f"write a random token {opts.token_path} and its SHA-512 to {opts.hash_file}",
            action="write-token",
        ),
    ]
    return Plan(tuple(steps), close_at_end=not opts.keep_open)


def _lv_size(size: str) -> tuple[str, ...]:
    # "100%FREE" and "80%VG" count extents (-l); anything else is a size (-L).
    return (f"--extents={size}",) if "%" in size else (f"--size={size}",)


def mirror_plan(
    array: Path,
    disk: Path,
    partitions: Sequence[Path],
    label: str,
    first_sector: int,
    last_sector: int,
    grow_to: int | None,
) -> Plan:
    """Every step of ``disk add-mirror``: the same partition on ``disk``, added to ``array``."""
    part = partition_path(disk)
    steps = [
        *wipe_steps(disk, partitions),
        *partition_steps(disk, label, str(first_sector), str(last_sector)),
        Step(f"add {part} to {array}", argv=("mdadm", "--add", str(array), str(part))),
    ]
    if grow_to is not None:
        steps.append(
            Step(
                f"make {array} a {grow_to}-way mirror",
                argv=("mdadm", "--grow", str(array), f"--raid-devices={grow_to}"),
            )
        )
    return Plan(tuple(steps), close_at_end=False)
