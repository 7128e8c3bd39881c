"""``coldvault open``, ``close``, ``token init`` and ``disk status``.

The ``disk`` group is shared: other modules add subcommands to it through
:func:`disk_group` (``disk init`` and ``disk add-mirror`` live in
:mod:`coldvault.cli.disk_prepare_cmd`), or by listing a module with a
``register_disk(group)`` function in :data:`DISK_SUBCOMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import TypeAlias

from coldvault.cli.common import add_disk_option, choose_disk, load_config
from coldvault.errors import EXIT_OK, ConfigError

# Modules whose ``register_disk(group)`` adds subcommands to ``coldvault disk``.
DISK_SUBCOMMAND_MODULES: list[str] = []

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def disk_group(sub: SubParsers) -> SubParsers:
    """The subcommand registry of ``coldvault disk`` (created on first use)."""
    parser = sub.choices.get("disk")
    if parser is None:
        parser = sub.add_parser(
            "disk",
            help="prepare and inspect the backup disk (init, add-mirror, status)",
            description="Prepare a new backup disk and inspect it. Opening and closing are "
            "top-level commands: `coldvault open`, `coldvault close`.",
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="disk_command", metavar="DISK_COMMAND", required=True)


def register(sub: SubParsers) -> None:
    """Register ``open``, ``close``, ``token init`` and ``disk status``."""
    p = sub.add_parser(
        "open",
        help="bring the backup disk up, verify its token and leave it open",
        description="Assemble the array, open LUKS, activate the logical volume, mount, "
        "verify the token. Layers already open are left as found; `coldvault close` "
        "later closes only what this command opened.",
    )
    p.add_argument("--wait", type=float, default=0, metavar="S", help="wait S seconds for the disk")
    add_disk_option(p)
    p.set_defaults(func=cmd_open)

    p = sub.add_parser(
        "close",
        help="tear the backup disk down (what `coldvault open` opened)",
        description="Unmount, deactivate the logical volume, close LUKS, stop the array, "
        "in that order. Closes what `coldvault open` recorded; without such a record every "
        "configured layer that is open. A second call does nothing.",
    )
    add_disk_option(p)
    p.set_defaults(func=cmd_close)

    p = sub.add_parser(
        "token",
        help="manage the disk's identity token",
        description="The token is a random file on the backup disk; its SHA-512, kept on this "
        "host, is how coldvault knows the disk is the right one.",
    )
    tsub = p.add_subparsers(dest="token_command", metavar="TOKEN_COMMAND", required=True)
    t = tsub.add_parser(
        "init",
        help="write a random 1 KiB .token on the backup disk and its hash file on this host",
        description="Write a random 1 KiB token file on the backup disk and its SHA-512 in "
        "disk.token.hash_file on this host; from then on `open`, `run` and the daemon use only "
        "a disk whose token matches. The disk stack is opened for this (without the token "
        "check, which has nothing to check yet) and what this command opened is closed again; "
        "layers found open stay open. Refuses to replace an existing token without --force.",
    )
    t.add_argument("--force", action="store_true", help="replace an existing token")
    t.add_argument("--wait", type=float, default=0, metavar="S", help="wait S seconds for the disk")
    add_disk_option(t)
    t.set_defaults(func=cmd_token_init)

    group = disk_group(sub)
    s = group.add_parser("status", help="which layers are present and open, array health, space")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    add_disk_option(s)
    s.set_defaults(func=cmd_disk_status)
    a = group.add_parser(
        "accept",
        help="accept a disk that went back in time: retention runs on it again",
        description="When a disk comes back without the newest backup coldvault wrote to it "
        "(restored from an old clone, swapped with a copy, rolled back), coldvault keeps "
        "backing up to it but deletes nothing there. After checking the disk, accept it as "
        "it is: the findings and what coldvault remembered of the disk are forgotten, and "
        "the next backup to it is remembered afresh. The disk need not be attached.",
    )
    a.add_argument("name", metavar="NAME", help="the disk's name (default for a disk: mapping)")
    a.set_defaults(func=cmd_disk_accept)
    for name in DISK_SUBCOMMAND_MODULES:
        importlib.import_module(name).register_disk(group)


def cmd_open(args: argparse.Namespace) -> int:
    """Open the stack and record what was opened."""
    from coldvault.disk import record
    from coldvault.disk.stack import DiskStack
    from coldvault.service.lock import hold_lock

    config = choose_disk(load_config(args), args)
    with hold_lock(config.settings.lock_file, wait=0):
        stack = DiskStack(config.disk)
        stack.wait(args.wait)
        root = stack.open()
        try:
            record.save(config.settings.runtime_dir, stack.opened_layers, config.disk_name)
        except OSError:
            stack.close()  # without a record, a later close could not know what is ours
            raise
    print(f"backup disk open at {root}")
    return EXIT_OK


def cmd_close(args: argparse.Namespace) -> int:
    """Close what ``open`` recorded, or every open configured layer; idempotent."""
    from coldvault.disk import record
    from coldvault.disk.stack import DiskStack
    from coldvault.service.lock import hold_lock

    config = choose_disk(load_config(args), args)
    with hold_lock(config.settings.lock_file, wait=0):
        stack = DiskStack(config.disk)
        recorded = record.load(config.settings.runtime_dir, config.disk_name)
        if recorded is None:
            stack.adopt_all_open()  # the user asked to close: close what is open
        else:
            stack.adopt(recorded)
        closing = stack.opened_layers
        stack.close()
        record.clear(config.settings.runtime_dir, config.disk_name)
    print(f"closed: {', '.join(closing)}" if closing else "nothing to close")
    return EXIT_OK


def cmd_token_init(args: argparse.Namespace) -> int:
    """Open the stack without the token check, write the token and its hash, close what we opened.

    This breaks the first-setup circle of a hand-built disk: ``open`` needs the
    hash file, which only this command writes. Layers found open stay open.
    """
    from coldvault.disk import token
    from coldvault.disk.stack import DiskStack
    from coldvault.service.lock import hold_lock

    config = choose_disk(load_config(args), args)
    if config.disk.token is None:
        raise ConfigError(
            f"no disk.token is configured in {config.path}",
            hint="add disk: token: hash_file: /etc/coldvault/token.sha512",
        )
    with hold_lock(config.settings.lock_file, wait=0):
        stack = DiskStack(config.disk)
        stack.wait(args.wait)
        root = stack.open(verify_token=False)
        try:
            written = token.init(root, config.disk.token, force=args.force)
        finally:
            stack.close()  # only what this command opened: leave it as found
    print(f"wrote {written} and its hash {config.disk.token.hash_file}")
    return EXIT_OK


def cmd_disk_status(args: argparse.Namespace) -> int:
    """Print each layer's state."""
    from coldvault.disk.mdadm import ArrayHealth
    from coldvault.disk.stack import DiskStack
    from coldvault.progress import human_bytes

    config = choose_disk(load_config(args), args)
    stack = DiskStack(config.disk)
    layers = stack.status()
    health: ArrayHealth | None = stack.array_health()
    if args.json:
        out = {
            "present": stack.is_present(),
            "layers": [
                {
                    "name": s.name,
                    "device": s.device,
                    "present": s.present,
                    "open": s.open,
                    **s.detail,
                }
                for s in layers
            ],
            "array": health.as_dict() if health else None,
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"backup disk: {'present' if stack.is_present() else 'absent'}")
    for s in layers:
        state = "open" if s.open else ("present, closed" if s.present else "absent")
        line = f"  {s.name:<7} {s.device}: {state}"
        if "free_bytes" in s.detail:
            free, size = s.detail["free_bytes"], s.detail.get("size_bytes", 0)
            assert isinstance(free, int) and isinstance(size, int)
            line += f", {human_bytes(free)} free of {human_bytes(size)}"
        print(line)
    if health is not None:
        print(f"  array health: {health.summary()}")
    return EXIT_OK


def cmd_disk_accept(args: argparse.Namespace) -> int:
    """Clear a disk's went-back-in-time findings; retention runs on it again."""
    from coldvault.errors import UsageError
    from coldvault.service import rollback
    from coldvault.service.lock import hold_lock
    from coldvault.service.state import StateFile

    config = load_config(args)
    if args.name not in config.disk_names:
        raise UsageError(
            f"no disk named {args.name!r} in {config.path}",
            hint=f"disks configured: {', '.join(config.disk_names)}",
        )
    with hold_lock(config.settings.lock_file, wait=0):
        cleared = rollback.accept(StateFile(config.settings.state_file, args.name))
    if cleared:
        print(f"disk {args.name} accepted as it is; cleared: " + "; ".join(cleared))
    else:
        print(f"disk {args.name} accepted as it is (nothing was reported against it)")
    return EXIT_OK
