"""``coldvault offsite init|run|list|check|unlock``: the restic repositories of ``offsite:``."""

from __future__ import annotations

import argparse

from coldvault.cli.common import add_disk_option, choose_disk, jobs_named, load_config
from coldvault.cli.progress_bar import end_open_line, progress_printer
from coldvault.cli.run_cmd import stop_on_signals
from coldvault.config.model import Config, Job, OffsiteTarget
from coldvault.errors import EXIT_DISK_ABSENT, EXIT_FAILURE, EXIT_OK, UsageError
from coldvault.offsite import record
from coldvault.offsite.copy import with_stale_lock_removed
from coldvault.offsite.restic import OffsiteLocked, Restic, tags
from coldvault.offsite.run import SKIPPED, TargetOutcome, check, restic_for, run_targets
from coldvault.offsite.sources import needs_disk
from coldvault.service.due import local_now
from coldvault.service.hooks import after_offsite
from coldvault.service.session import disk_session
from coldvault.system.cancel import CancelToken

_EXIT = {"success": EXIT_OK, SKIPPED: EXIT_DISK_ABSENT, "failed": EXIT_FAILURE}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``offsite`` and its subcommands."""
    top = sub.add_parser("offsite", help="offsite copies through restic (offsite: in the config)")
    cmds = top.add_subparsers(dest="offsite_command", metavar="COMMAND", required=True)
    p = cmds.add_parser("init", help="create the repository of an offsite target")
    p.add_argument("name", help="offsite target name")
    p.set_defaults(func=cmd_init)
    p = cmds.add_parser(
        "run",
        help="copy the jobs' newest backups now",
        description="Copy each job's newest backup to the offsite targets (default: all), "
        "opening the backup disk when a job's copy is read from it. Exit 1 if a copy failed, "
        "3 if the disk is absent or a repository unreachable.",
    )
    p.add_argument("name", nargs="?", help="offsite target name (default: every target)")
    p.add_argument("--job", action="append", default=[], metavar="JOB", help="only this job")
    p.add_argument("--wait", type=float, default=0, metavar="S", help="wait S seconds for the disk")
    p.add_argument("--wait-lock", type=float, default=0, metavar="S", help="wait S seconds if busy")
    add_disk_option(p)
    p.set_defaults(func=cmd_run)
    p = cmds.add_parser("list", help="the offsite snapshots of each job")
    p.add_argument("name", help="offsite target name")
    p.add_argument("job", nargs="?", help="only this job")
    p.set_defaults(func=cmd_list)
    p = cmds.add_parser("check", help="restic check, reading the configured share of the data")
    p.add_argument("name", help="offsite target name")
    p.set_defaults(func=cmd_check)
    p = cmds.add_parser("unlock", help="remove locks left by a killed restic of this host")
    p.add_argument("name", help="offsite target name")
    p.set_defaults(func=cmd_unlock)


def target_named(config: Config, name: str) -> OffsiteTarget:
    try:
        return config.offsite_target(name)
    except KeyError:
        known = ", ".join(t.name for t in config.offsite) or "none"
        raise UsageError(
            f"no offsite target named {name!r} in {config.path}", hint=f"configured: {known}"
        ) from None


def cmd_init(args: argparse.Namespace) -> int:
    """Create the repository unless it exists."""
    config = load_config(args)
    target = target_named(config, args.name)
    restic = restic_for(config, target, CancelToken())
    if restic.exists():
        print(f"offsite {target.name}: the repository exists already (not created again)")
        return EXIT_OK
    restic.init()
    print(f"offsite {target.name}: repository created")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Copy now; the disk is opened only when a copy is read from it."""
    config = load_config(args)
    targets = (target_named(config, args.name),) if args.name else config.offsite
    if not targets:
        raise UsageError(f"no offsite: targets in {config.path}", hint="add one under offsite:")
    chosen = {j.name for j in jobs_named(config, args.job)} if args.job else None
    jobs = {j.name for t in targets for j in config.offsite_jobs(t)}
    cancel = CancelToken()
    with stop_on_signals(cancel):
        outcomes = _run(config, targets, chosen or jobs, args, cancel)
    end_open_line()
    after_offsite(config, outcomes)  # offsite_failed messages, the metrics file
    for outcome in outcomes:
        for copied in outcome.copied:
            print(f"{outcome.target}: {copied.describe()}")
        if outcome.error:
            print(f"{outcome.target}: {outcome.result}: {outcome.text}")
    return max((_EXIT[o.result] for o in outcomes), default=EXIT_OK, key=lambda c: (c != 0, -c))


def _run(
    config: Config,
    targets: tuple[OffsiteTarget, ...],
    names: set[str],
    args: argparse.Namespace,
    cancel: CancelToken,
) -> list[TargetOutcome]:
    def run(wanted_disk: bool, cfg: Config) -> list[TargetOutcome]:
        def wanted(job: Job) -> bool:
            on_disk = not wanted_disk or cfg.disk_name in cfg.disks_of(job)
            return job.name in names and needs_disk(job) == wanted_disk and on_disk

        return run_targets(
            cfg,
            wanted,
            due_only=False,
            cancel=cancel,
            progress=progress_printer(),
            clock=local_now,
            targets=targets,
        )

    outcomes = run(False, config)
    if any(needs_disk(j) for j in config.jobs if j.name in names):
        on_disk = choose_disk(config, args)
        with disk_session(on_disk, wait_disk=args.wait, wait_lock=args.wait_lock, cancel=cancel):
            outcomes += run(True, on_disk)
    return outcomes


def cmd_list(args: argparse.Namespace) -> int:
    """One line per offsite snapshot: time, job, source, snapshot, size and data added."""
    config = load_config(args)
    target = target_named(config, args.name)
    labels = tags(job=jobs_named(config, [args.job])[0].name) if args.job else ()
    restic = restic_for(config, target, CancelToken())
    snaps = restic.snapshots(*labels)
    known = record.uploads(config, target)
    print(f"{'ID':<9} {'TIME':<20} {'JOB':<12} {'SOURCE':<16} {'SIZE':>10} {'ADDED':>10}  SNAPSHOT")
    for s in snaps:
        if s.tag("job") is None:
            continue  # not coldvault's
        size, added = known.get(s.short_id, ("-", "-"))
        when = s.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{s.short_id:<9} {when:<20} {s.tag('job') or '-':<12} {s.tag('source') or '-':<16} "
            f"{size:>10} {added:>10}  {s.tag('snapshot') or '-'}"
        )
    print(f"{len([s for s in snaps if s.tag('job')])} snapshot(s) in offsite {target.name}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """``restic check`` now; the result goes into the offsite state."""
    config = load_config(args)
    target = target_named(config, args.name)
    cancel = CancelToken()
    with stop_on_signals(cancel):
        check(restic_for(config, target, cancel), record.state_of(config, target), local_now)
    print(f"offsite {target.name}: restic check passed")
    return EXIT_OK


def cmd_unlock(args: argparse.Namespace) -> int:
    """Remove locks of killed restic processes of this host; report others."""
    config = load_config(args)
    restic = restic_for(config, target_named(config, args.name), CancelToken())
    with_stale_lock_removed(restic, lambda: _refuse_if_locked(restic))
    print(f"offsite {args.name}: no lock left")
    return EXIT_OK


def _refuse_if_locked(restic: Restic) -> None:
    locks = restic.locks()
    if locks:
        who = "; ".join(
            f"PID {lock.get('pid')} on {lock.get('hostname')} since {lock.get('time')}"
            for lock in locks
        )
        raise OffsiteLocked(
            f"{restic.where} is locked: {who}",
            hint="a live restic holds it, or a run of another host: wait, or run "
            "`restic unlock` there",
        )
