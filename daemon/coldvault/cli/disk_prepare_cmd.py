"""``coldvault disk init`` and ``coldvault disk add-mirror``: preparing backup disks.

These join the ``disk`` command group through :func:`coldvault.cli.disk_cmd.disk_group`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from coldvault.config.model import default_lv_name
from coldvault.errors import EXIT_OK, DiskError

_DEFAULT_LV = "<host name>"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``disk init`` and ``disk add-mirror``."""
    from coldvault.cli.disk_cmd import disk_group
    from coldvault.disk.prepare.plan import InitOptions as Defaults  # the model's defaults

    group = disk_group(sub)

    p = group.add_parser(
        "init",
        help="turn a whole disk into a backup disk (GPT, RAID1, LUKS2, LVM, Btrfs, token)",
        description="Prepare DEVICE as a coldvault backup disk. Refuses the system disk and "
        "anything in use; a device holding data needs --yes-destroy DEVICE repeated exactly.",
    )
    p.add_argument("device", help="the whole disk, e.g. /dev/disk/by-id/usb-...")
    _destroy_options(p)
    p.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="PATH",
        help="read the LUKS passphrase from the first line of PATH "
        "(default: ask twice on the terminal)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing key file, token hash file or config disk: section",
    )
    p.add_argument(
        "--write-config",
        type=Path,
        metavar="PATH",
        help="write the disk: section into this configuration file",
    )
    p.add_argument("--keep-open", action="store_true", help="leave the new disk open and mounted")
    names = p.add_argument_group("names and sizes (defaults: the design's)")
    names.add_argument(
        "--label", default=Defaults.part_label, help=f"GPT partition name ({Defaults.part_label})"
    )
    names.add_argument(
        "--array", type=Path, default=Defaults.array, help=f"RAID1 device ({Defaults.array})"
    )
    names.add_argument(
        "--luks-name", default=Defaults.luks_name, help=f"LUKS mapping ({Defaults.luks_name})"
    )
    names.add_argument(
        "--key-file",
        type=Path,
        default=Defaults.key_file,
        help=f"new random LUKS key file ({Defaults.key_file})",
    )
    names.add_argument("--vg", default=Defaults.vg, help=f"LVM volume group ({Defaults.vg})")
    names.add_argument("--lv", default=_DEFAULT_LV, help="logical volume (this host's name)")
    names.add_argument(
        "--lv-size", default="100%FREE", help="lvcreate size: 100%%FREE (default), 80%%VG or 500G"
    )
    names.add_argument(
        "--fs-label", default=Defaults.fs_label, help=f"Btrfs label ({Defaults.fs_label})"
    )
    names.add_argument(
        "--mount-point", type=Path, default=Defaults.mount_point, help=str(Defaults.mount_point)
    )
    names.add_argument(
        "--token-file",
        default=Defaults.token_file,
        help=f"token file on the disk ({Defaults.token_file})",
    )
    names.add_argument(
        "--hash-file",
        type=Path,
        default=Defaults.hash_file,
        help=f"the token's SHA-512 on this host ({Defaults.hash_file})",
    )
    names.add_argument(
        "--wait-device",
        type=Path,
        metavar="PATH",
        help="disk.device in the config (/dev/disk/by-partlabel/LABEL)",
    )
    cost = p.add_argument_group("LUKS key derivation (defaults: cryptsetup's)")
    cost.add_argument("--pbkdf", choices=("argon2id", "argon2i", "pbkdf2"))
    cost.add_argument("--pbkdf-force-iterations", type=int, metavar="N")
    cost.add_argument("--iter-time", type=int, metavar="MS")
    p.set_defaults(func=cmd_init)

    p = group.add_parser(
        "add-mirror",
        help="partition a second disk like the first and add it to the RAID1",
        description="Partition DEVICE like the array's member and add it to the open array, "
        "then report the copy onto it. Same refusal rules as `disk init`.",
    )
    p.add_argument("device", help="the whole second disk")
    _destroy_options(p)
    p.add_argument(
        "--array",
        type=Path,
        default=Defaults.array,
        help=f"the running array ({Defaults.array})",
    )
    p.add_argument("--no-wait", action="store_true", help="do not wait for the copy to finish")
    p.set_defaults(func=cmd_add_mirror)


def _destroy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--yes-destroy",
        metavar="DEVICE",
        help="confirm destroying DEVICE's contents (repeat the exact path)",
    )
    p.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="print what is on the device and every command; change nothing",
    )


def read_passphrase(path: Path | None) -> bytes:
    """The LUKS passphrase: first line of ``path``, else typed twice without echo."""
    if path is not None:
        try:
            first = path.read_bytes().split(b"\n", 1)[0]
        except OSError as exc:
            raise DiskError(f"cannot read passphrase file {path}: {exc.strerror}") from None
        if not first:
            raise DiskError(f"passphrase file {path} starts with an empty line")
        return first
    if not sys.stdin.isatty():
        raise DiskError(
            "no terminal to ask for the LUKS passphrase",
            hint="pass --passphrase-file PATH (its first line is the passphrase)",
        )
    first_try = getpass.getpass("New LUKS passphrase: ")
    if not first_try:
        raise DiskError("the passphrase is empty; nothing was changed")
    if getpass.getpass("Repeat it: ") != first_try:
        raise DiskError("the passphrases differ; nothing was changed")
    return first_try.encode()


def cmd_init(args: argparse.Namespace) -> int:
    """Prepare a backup disk."""
    from coldvault.disk.prepare.init import InitRequest, init_disk
    from coldvault.disk.prepare.plan import InitOptions

    opts = InitOptions(
        part_label=args.label,
        array=args.array,
        luks_name=args.luks_name,
        key_file=args.key_file.absolute(),
        vg=args.vg,
        lv=default_lv_name() if args.lv == _DEFAULT_LV else args.lv,
        lv_size=args.lv_size,
        fs_label=args.fs_label,
        mount_point=args.mount_point.absolute(),
        token_file=args.token_file,
        hash_file=args.hash_file.absolute(),
        pbkdf=args.pbkdf,
        pbkdf_iterations=args.pbkdf_force_iterations,
        iter_time_ms=args.iter_time,
        keep_open=args.keep_open,
    )
    req = InitRequest(
        device=args.device,
        options=opts,
        yes_destroy=args.yes_destroy,
        dry_run=args.dry_run,
        force=args.force,
        write_config=args.write_config,
        wait_device=args.wait_device,
    )
    init_disk(req, lambda: read_passphrase(args.passphrase_file), out=sys.stdout)
    return EXIT_OK


def cmd_add_mirror(args: argparse.Namespace) -> int:
    """Add a second disk to the backup array."""
    from coldvault.disk.prepare.mirror import add_mirror

    state = add_mirror(
        args.device,
        array=args.array,
        yes_destroy=args.yes_destroy,
        dry_run=args.dry_run,
        wait=not args.no_wait,
        out=sys.stdout,
    )
    return EXIT_OK if state.clean or args.no_wait or args.dry_run else 1
