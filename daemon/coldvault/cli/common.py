"""Helpers shared by command modules."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from coldvault.config.model import DEFAULT_CONFIG_PATH, Config


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file chosen by ``--config``, ``$COLDVAULT_CONFIG`` or the default."""
    chosen = getattr(args, "config", None) or os.environ.get("COLDVAULT_CONFIG")
    return Path(chosen) if chosen else DEFAULT_CONFIG_PATH


def load_config(args: argparse.Namespace) -> Config:
    """Load and validate the configuration the user chose (ConfigError on any problem)."""
    from coldvault.config.loader import load

    return load(config_path(args))
