"""``coldvault restore``, ``verify`` and ``list``: per-job commands on the opened disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from coldvault.cli.common import add_disk_option, choose_disk, jobs_named, load_config
from coldvault.cli.progress_bar import end_open_line, progress_printer
from coldvault.config.model import Config, Job
from coldvault.errors import EXIT_CORRUPT, EXIT_OK, ColdvaultError, UsageError
from coldvault.jobs import runner_for
from coldvault.jobs.base import RestoreRequest, RunContext
from coldvault.service import rollback
from coldvault.service.session import disk_session
from coldvault.service.state import StateFile
from coldvault.system.cancel import CancelToken


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``restore``, ``verify`` and ``list``."""
    p = sub.add_parser("restore", help="restore a snapshot of a job to a device, file or folder")
    p.add_argument("job", help="job name")
    p.add_argument("dest", type=Path, help="image: device or file; btrfs: folder on a Btrfs fs")
    p.add_argument("--snapshot", default="latest", help="snapshot name or 'latest' (default)")
    p.add_argument("--start-part", type=int, default=0, metavar="N", help="image: resume at part N")
    p.add_argument("--skip-zeros", action="store_true", help="image: do not write all-zero parts")
    p.add_argument(
        "--from",
        dest="offsite",
        metavar="NAME",
        help="restore from the offsite target NAME instead of the disk (--snapshot: an "
        "offsite snapshot id or the snapshot's name)",
    )
    _session_options(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("verify", help="re-check stored backups against their manifests")
    p.add_argument("job", help="job name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--snapshot", help="snapshot name (default: the latest)")
    group.add_argument("--all", action="store_true", help="every snapshot")
    _session_options(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("list", help="show a job's snapshots")
    p.add_argument("job", help="job name")
    _session_options(p)
    p.set_defaults(func=cmd_list)


def _session_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=0, metavar="S", help="wait S seconds for the disk")
    p.add_argument("--wait-lock", type=float, default=0, metavar="S", help="wait S seconds if busy")
    add_disk_option(p)


def _job(config: Config, name: str) -> Job:
    return jobs_named(config, [name])[0]


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore one snapshot."""
    if args.offsite is not None:
        return _restore_from_offsite(args)
    config = choose_disk(load_config(args), args)
    job = _job(config, args.job)
    request = RestoreRequest(args.snapshot, args.dest, args.start_part, args.skip_zeros)
    cancel = CancelToken()
    with disk_session(config, wait_disk=args.wait, wait_lock=args.wait_lock, cancel=cancel) as _:
        message = runner_for(job).restore(config.job_dir(job), request, progress_printer(), cancel)
    end_open_line()
    print(message)
    return EXIT_OK


def _restore_from_offsite(args: argparse.Namespace) -> int:
    from coldvault.cli.offsite_cmd import target_named
    from coldvault.cli.run_cmd import stop_on_signals
    from coldvault.offsite.restore import restore_from

    config = load_config(args)
    target = target_named(config, args.offsite)
    job = _job(config, args.job)
    if args.start_part or args.skip_zeros:
        raise UsageError("--start-part and --skip-zeros apply to restores from the disk only")
    cancel = CancelToken()
    with stop_on_signals(cancel):
        print(restore_from(config, target, job, args.dest, args.snapshot, cancel))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify stored data; exit 6 when anything is corrupt or missing."""
    config = choose_disk(load_config(args), args)
    job = _job(config, args.job)
    cancel = CancelToken()
    with disk_session(config, wait_disk=args.wait, wait_lock=args.wait_lock, cancel=cancel):
        report = runner_for(job).verify(
            config.job_dir(job), args.snapshot, args.all, progress_printer(), cancel
        )
    end_open_line()
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print(
        f"{job.name}: checked {report.items_checked} items in "
        f"{len(report.snapshots)} snapshot(s): "
        + ("all good" if report.ok else f"{len(report.problems)} problem(s)")
    )
    return EXIT_OK if report.ok else EXIT_CORRUPT


def cmd_list(args: argparse.Namespace) -> int:
    """Print the job's snapshots."""
    config = choose_disk(load_config(args), args)
    job = _job(config, args.job)
    state = StateFile(config.settings.state_file, disk=config.disk_name)
    context = _list_context(config, job, state)
    with disk_session(config, wait_disk=args.wait, wait_lock=args.wait_lock):
        print(runner_for(job, context).list(config.job_dir(job)))
    if len(config.disks) > 1:
        print(f"disks (this is {config.disk_name}; the others as this host remembers them):")
        print("\n".join(f"  {line}" for line in _disk_notes(config, job, state)))
    return EXIT_OK


def _list_context(config: Config, job: Job, state: StateFile) -> RunContext:
    """What the host remembers of the job's other disks, and whether retention is paused here."""
    try:
        paused = bool(state.disk_state().rolled_back)
    except ColdvaultError:
        paused = False  # _disk_notes reports the unreadable state file
    return rollback.context_for(config, job, state, not paused)


def _disk_notes(config: Config, job: Job, state: StateFile) -> list[str]:
    try:
        disks = state.load_disks()
    except ColdvaultError as exc:
        return [f"state file unreadable: {exc.message}"]
    return rollback.disk_notes(config, job, disks)
