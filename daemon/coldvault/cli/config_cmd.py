"""``coldvault config validate`` and ``coldvault config example``."""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from coldvault.cli.common import config_path
from coldvault.config.durations import format_duration
from coldvault.config.model import BtrfsJob, Config, DiskConfig, Job, OffsiteTarget, Retention, When
from coldvault.config.sizes import format_size
from coldvault.errors import EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``config validate`` and ``config example``."""
    group = sub.add_parser("config", help="check or write the configuration file")
    actions = group.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "validate",
        help="check a configuration file and summarize what it means",
        description="Check a configuration file; exit 78 with every problem listed if invalid.",
    )
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="file to check, '-' for standard input (default: --config or "
        "/etc/coldvault/config.yaml)",
    )
    p.set_defaults(func=cmd_validate)
    p = actions.add_parser(
        "example",
        help="print a fully commented example configuration",
        description="Print a commented example configuration that explains every key.",
    )
    p.set_defaults(func=cmd_example)


def example_text() -> str:
    """The commented example configuration shipped with the package."""
    return resources.files("coldvault.config").joinpath("example.yaml").read_text("utf-8")


def cmd_example(args: argparse.Namespace) -> int:
    """Print the example configuration."""
    sys.stdout.write(example_text())
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a configuration and print what was understood."""
    from coldvault.config.loader import load

    path = args.path if args.path is not None else config_path(args)
    config = load(path)
    print(summary(config, "<stdin>" if str(path) == "-" else str(path)))
    return EXIT_OK


def summary(config: Config, name: str) -> str:
    """A few lines saying what the configuration means."""
    lines = [f"{name}: valid, {len(config.jobs)} job(s)"]
    if len(config.disks) == 1:
        lines.append(f"disk: {_disk(config.disk)}")
    else:
        lines.extend(f"disk {d.name}: {_disk(d.config)}" for d in config.disks)
    lines.extend(f"warning: {w}" for w in config.warnings)
    lines.extend(f"job {_job(config, job)}" for job in config.jobs)
    lines.extend(_offsite(config, t) for t in config.offsite)
    lines.extend(monitoring_lines(config))
    return "\n".join(lines)


def monitoring_lines(config: Config) -> list[str]:
    """Pings, notifications and metrics, every URL masked (they carry secrets)."""
    from coldvault.monitor.pings import ping_url
    from coldvault.monitor.secrets import mask_url

    lines = [
        f"ping {job.name}: {mask_url(url)}"
        for job in config.jobs
        if (url := ping_url(config, job)) is not None
    ]
    lines.extend(f"notify: {mask_url(t.url)} on {', '.join(t.on)}" for t in config.settings.notify)
    if config.settings.metrics_file is not None:
        lines.append(f"metrics: {config.settings.metrics_file}")
    return lines


def _disk(disk: DiskConfig) -> str:
    layers = []
    if disk.device:
        layers.append(f"wait for {disk.device}")
    if disk.array:
        layers.append(f"array {disk.array.device}")
    if disk.luks:
        layers.append(f"LUKS {disk.luks.name} (key {disk.luks.key_file})")
    if disk.lvm:
        layers.append(f"LVM {disk.lvm.vg}/{disk.lvm.lv}")
    kind = "mount" if disk.mount.require_mount else "folder"
    layers.append(f"{kind} {disk.mount.point}")
    if disk.token:
        layers.append(f"token {disk.token.file} checked against {disk.token.hash_file}")
    else:
        layers.append("no token check")
    return " -> ".join(layers)


def _job(config: Config, job: Job) -> str:
    if isinstance(job, BtrfsJob):
        what = (
            f"{', '.join(map(str, job.sources))} -> {config.job_dir(job)}, keep "
            f"{_retention(job.source_retention)} on the source, "
            f"{_retention(job.target_retention)} on the disk"
        )
    else:
        what = (
            f"{job.source} -> {config.job_dir(job)}, parts of {format_size(job.part_size)}, "
            f"blocks of {format_size(job.block_size)}, {job.snapshots} snapshots, {job.hash}"
        )
    return f"{job.name} ({job.type}): {what}; {_when(job.when)}"


def _offsite(config: Config, target: OffsiteTarget) -> str:
    """One target; its repository string is never shown (it may hold credentials)."""
    from coldvault.config.converters import RESTIC_BACKENDS

    prefix = target.repository.partition(":")[0]
    kind = f"{prefix}: repository" if prefix in RESTIC_BACKENDS else "local repository"
    jobs = ", ".join(j.name for j in config.offsite_jobs(target))
    when = "every disk session" if not (target.when.every or target.when.at) else _when(target.when)
    check = target.check.every and format_duration(target.check.every)
    return (
        f"offsite {target.name}: {kind} (not shown), jobs {jobs}; {when}; keep "
        f"{_retention(target.retention)}; check {f'every {check}' if check else 'by hand'}"
    )


def _retention(rule: Retention) -> str:
    if rule.keeps_everything:
        return "everything"
    parts = [] if rule.keep_last is None else [f"last {rule.keep_last}"]
    for kind in ("hourly", "daily", "weekly", "monthly", "yearly"):
        if count := getattr(rule, kind):
            parts.append(f"{count} {kind}")
    return " + ".join(parts)


def _when(when: When) -> str:
    parts = []
    if when.every:
        parts.append(f"every {format_duration(when.every)}")
    if when.at:
        parts.append("at " + ", ".join(t.strftime("%H:%M") for t in when.at))
    if when.on_plug:
        parts.append("on plug")
    return " / ".join(parts) if parts else "only when run by hand"
