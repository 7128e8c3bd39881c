"""The ``disk`` label of metrics and messages, from one place.

A configuration with ``disk:`` has one disk named ``default``; with ``disks:``
each has its own name, and a session's configuration names the disk it serves.
"""

from __future__ import annotations

from coldvault.config.model import Config


def disk_label(config: Config) -> str:
    """The name of the configured backup disk, as metrics and messages show it."""
    return config.disk_name
