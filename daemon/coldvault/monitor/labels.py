"""The ``disk`` label of metrics and messages, from one place.

Today a configuration has one disk, labelled ``default``; named disks (several
disks in rotation) return their own name here.
"""

from __future__ import annotations

from coldvault.config.model import Config

DEFAULT_DISK = "default"


def disk_label(config: Config) -> str:
    """The name of the configured backup disk, as metrics and messages show it."""
    del config  # one disk per configuration for now
    return DEFAULT_DISK
