"""``coldvault daemon``: the long-running service (systemd ``Type=notify``, launchd)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``daemon``."""
    p = sub.add_parser(
        "daemon",
        help="run as a service: wait for the disk, back up due jobs, report status",
        description="Wait for the backup disk and run due jobs unattended. "
        "SIGTERM/SIGINT stop gracefully (exit 0), SIGHUP reloads the configuration.",
    )
    p.set_defaults(func=cmd_daemon)


def cmd_daemon(args: argparse.Namespace) -> int:
    """Serve until stopped."""
    from coldvault.cli.common import load_config
    from coldvault.service.daemon import Daemon

    return Daemon(lambda: load_config(args)).run()
