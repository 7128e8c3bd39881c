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
