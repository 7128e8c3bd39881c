"""``coldvault disk init``: a whole disk becomes a coldvault backup disk.

GPT with one Linux RAID partition → RAID1 with the second member missing →
LUKS2 (passphrase + random key file) → LVM → Btrfs → token. Nothing is written
before every refusal rule passed and the user saw what will be destroyed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from coldvault.disk.prepare import safety
from coldvault.disk.prepare.config_text import check_writable, disk_section, write_disk_section
from coldvault.disk.prepare.execute import Executor, init_actions
from coldvault.disk.prepare.plan import InitOptions, init_plan, partition_path
from coldvault.errors import DiskError
from coldvault.system import proc

PROGRAMS = ("wipefs", "sgdisk", "partx", "mdadm", "cryptsetup", "pvcreate", "mkfs.btrfs", "mount")


@dataclass(frozen=True)
class InitRequest:
    """What the user asked ``disk init`` for."""

    device: str  # exactly as typed: --yes-destroy must repeat it
    options: InitOptions
    yes_destroy: str | None = None
    dry_run: bool = False
    force: bool = False  # replace an existing key file, hash file or config disk: section
    write_config: Path | None = None
    wait_device: Path | None = None  # default: /dev/disk/by-partlabel/<label>
    system_root: Path = Path("/")  # whose disk is "the system disk"


def check_programs(names: tuple[str, ...] = PROGRAMS) -> None:
    """Refuse before touching the disk if a needed program is missing."""
    missing = [n for n in names if proc.which(n) is None]
    if missing:
        raise DiskError(
            f"missing programs: {', '.join(missing)}; nothing was changed",
            hint="install gdisk, mdadm, cryptsetup, lvm2, btrfs-progs and util-linux",
        )


def _check_host_files(req: InitRequest) -> None:
    opts = req.options
    for path, what in ((opts.key_file, "key file"), (opts.hash_file, "token hash file")):
        if path.exists() and not req.force:
            raise DiskError(
                f"{what} {path} already exists (another backup disk's?); nothing was changed",
                hint="pass --force to replace it, or choose another path with an option",
            )
    if req.write_config is not None:
        check_writable(req.write_config, force=req.force)


def array_uuid(array: Path) -> str | None:
    """The md array's UUID as ``mdadm --detail --export`` reports it."""
    text = proc.run_text(["mdadm", "--detail", "--export", str(array)])
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "MD_UUID":
            return value.strip()
    return None


def init_disk(req: InitRequest, read_passphrase: Callable[[], bytes], *, out: TextIO) -> str:
    """Prepare ``req.device``; return the ``disk:`` configuration section text.

    With ``dry_run`` nothing is written: the device report, every command and the
    configuration are printed. ``read_passphrase`` is called only when the
    disk will really be prepared, after every check passed.
    """
    opts = req.options
    report = safety.inspect(req.device, system_root=req.system_root)
    print("Device to prepare (everything on it will be destroyed):", file=out)
    print(report.describe(), file=out)
    safety.check_can_destroy(report, req.yes_destroy)
    _check_host_files(req)
    disk = report.device.path
    existing = [d.path for d in report.device.walk() if d.type == "part"]
    plan = init_plan(opts, disk, existing)
    wait_device = req.wait_device or Path("/dev/disk/by-partlabel") / opts.part_label
    if req.dry_run:
        print("\nDry run: these commands would run (nothing was changed):", file=out)
        print(plan.show(), file=out)
        section = disk_section(opts, wait_device=wait_device, array_uuid=None)
        print("\nConfiguration:\n" + section, file=out, end="")
        return section
    check_programs()
    passphrase = read_passphrase()
    actions = init_actions(opts, partition_path(disk), force=req.force)
    executor = Executor(plan, out=out, secrets_={"passphrase": passphrase}, actions=actions)
    executor.run()
    try:  # read while the array is still open
        uuid = array_uuid(opts.array)
    finally:
        if plan.close_at_end:
            print("closing the disk again", file=out, flush=True)
            executor.close_opened(strict=True)
    section = disk_section(opts, wait_device=wait_device, array_uuid=uuid)
    print(f"\n{req.device} is ready. Configuration:\n" + section, file=out, end="")
    if req.write_config is not None:
        write_disk_section(req.write_config, section, force=req.force)
        print(f"wrote the disk: section to {req.write_config}", file=out)
    return section
