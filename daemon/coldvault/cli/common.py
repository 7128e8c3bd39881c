"""Helpers shared by command modules."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from coldvault.config.model import DEFAULT_CONFIG_PATH, Config, Job
from coldvault.errors import UsageError


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file chosen by ``--config``, ``$COLDVAULT_CONFIG`` or the default."""
    chosen = getattr(args, "config", None) or os.environ.get("COLDVAULT_CONFIG")
    return Path(chosen) if chosen else DEFAULT_CONFIG_PATH


def load_config(args: argparse.Namespace) -> Config:
    """Load and validate the configuration the user chose (ConfigError on any problem)."""
    from coldvault.config.loader import load

    return load(config_path(args))


def jobs_named(config: Config, names: list[str]) -> list[Job]:
    """The jobs ``names`` (in that order, duplicates dropped); UsageError (exit 2) for unknown ones.

    The message lists the configured jobs, so the user sees what to type instead.
    """
    known = {j.name: j for j in config.jobs}
    unknown = [n for n in names if n not in known]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise UsageError(
            f"no job{plural} named {', '.join(map(repr, unknown))} in {config.path}",
            hint=f"jobs configured: {', '.join(known) or 'none'}",
        )
    return [known[n] for n in dict.fromkeys(names)]


DISK_HELP = "the backup disk to use, by its name in disks: (default: the one attached)"


def add_disk_option(parser: argparse.ArgumentParser) -> None:
    """``--disk NAME`` for a command that works on one backup disk."""
    parser.add_argument("--disk", metavar="NAME", default=None, help=DISK_HELP)


def choose_disk(config: Config, args: argparse.Namespace) -> Config:
    """The configuration for the disk this command works on.

    ``--disk NAME`` names it; without it the only configured disk, else the one
    disk of several that is attached. With several disks and none or several
    attached, UsageError asks for ``--disk`` (listing which are attached).
    """
    from coldvault.disk.stack import DiskStack

    wanted = getattr(args, "disk", None)
    names = config.disk_names
    if wanted is not None:
        if wanted not in names:
            raise UsageError(
                f"no disk named {wanted!r} in {config.path}",
                hint=f"disks configured: {', '.join(names)}",
            )
        return config.for_disk(wanted)
    if len(names) == 1:
        return config
    attached = [d.name for d in config.disks if DiskStack(d.config).is_present()]
    if len(attached) == 1:
        return config.for_disk(attached[0])
    found = f"attached: {', '.join(attached)}" if attached else "none is attached"
    raise UsageError(
        f"{len(names)} disks are configured and {found}: say which with --disk NAME",
        hint=f"disks configured: {', '.join(names)}",
    )
