"""``coldvault status [--json]``: how the backups stand; exit 7 when one is overdue."""

from __future__ import annotations

import argparse
import json

from coldvault.cli.common import load_config
from coldvault.errors import EXIT_OK, EXIT_OVERDUE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status``."""
    p = sub.add_parser(
        "status",
        help="per job: last success, result, next due; the daemon's live progress",
        description="Exit 7 when any job is overdue by more than its interval "
        "(a scheduled job that never succeeded counts as overdue).",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """Print the report; exit 7 if a job is overdue."""
    from coldvault.mount import listing
    from coldvault.service.status import build_report, render_text

    config = load_config(args)
    report = build_report(config)
    mounted = listing.mounts(config.settings.runtime_dir)  # `coldvault mount` (hmount)
    if args.json:
        print(json.dumps({**report.to_json(), "mounts": mounted}, indent=2))
    else:
        print("\n".join([render_text(report), *listing.lines(mounted)]))
    return EXIT_OVERDUE if report.overdue else EXIT_OK
