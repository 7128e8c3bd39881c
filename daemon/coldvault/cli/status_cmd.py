"""``coldvault status [--json]``: how the backups stand; exit 6 on damage, 7 when overdue."""

from __future__ import annotations

import argparse
import json

from coldvault.cli.common import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status``."""
    p = sub.add_parser(
        "status",
        help="per job: last success, result, next due, offsite copies; the daemon's live progress",
        description="Exit status: 0 all well; 6 when the last scheduled verification of "
        "any job found corrupt, missing or unreadable data, or when a backup disk went back "
        "in time (until `coldvault disk accept NAME`); 7 when any job is overdue by "
        "more than its interval (a scheduled job that never succeeded counts as overdue), or "
        "when a job's offsite copy is overdue by more than its target's interval; "
        "6 wins when both apply (damaged backups need a person, a late one only the disk); "
        "1 when the state file (or the offsite state) is damaged or unreadable (the daemon "
        "then holds every job).",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """Print the report; exit 1 (state damaged), 6 (verify found problems), 7 (overdue)."""
    from coldvault.mount import listing
    from coldvault.service.status import build_report, render_text

    config = load_config(args)
    report = build_report(config)
    mounted = listing.mounts(config.settings.runtime_dir)
    if args.json:
        print(json.dumps({**report.to_json(), "mounts": mounted}, indent=2))
    else:
        print("\n".join([render_text(report), *listing.lines(mounted)]))
    return report.exit_code
