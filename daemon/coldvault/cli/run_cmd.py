"""``coldvault run [JOB...]``: back up now, in one disk session."""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from coldvault.cli.common import add_disk_option, choose_disk, jobs_named, load_config
from coldvault.cli.progress_bar import end_open_line, progress_printer
from coldvault.config.model import Config, Job
from coldvault.errors import EXIT_CANCELLED, EXIT_FAILURE, EXIT_OK, ConfigError, UsageError
from coldvault.system.cancel import CancelToken


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run``."""
    p = sub.add_parser(
        "run",
        help="back up now: run the named jobs (default: all) in one disk session",
        description="Open the backup disk once, run the jobs in order, close it. "
        "Exit 1 if any job failed or the disk could not be closed, 2 if a named job is not "
        "configured, 3 if the disk is absent, 4 if its token is wrong, 5 if another coldvault "
        "process (the daemon) is using the disk.",
    )
    p.add_argument("jobs", nargs="*", metavar="JOB", help="job names (default: every job)")
    p.add_argument("--keep-open", action="store_true", help="leave the disk stack open afterwards")
    p.add_argument("--wait", type=float, default=0, metavar="S", help="wait S seconds for the disk")
    p.add_argument(
        "--wait-lock",
        type=float,
        default=0,
        metavar="S",
        help="wait S seconds if the disk is busy (default: fail at once)",
    )
    add_disk_option(p)
    p.set_defaults(func=cmd_run)


def select_jobs(config: Config, names: list[str]) -> list[Job]:
    """The jobs named on the command line, in that order (all when none named)."""
    if not names:
        if not config.jobs:
            raise ConfigError(f"no jobs are defined in {config.path}", hint="add one under jobs:")
        return list(config.jobs_on(config.disk_name))
    chosen = jobs_named(config, names)
    elsewhere = [j.name for j in chosen if config.disk_name not in config.disks_of(j)]
    if elsewhere:
        raise UsageError(
            f"job {elsewhere[0]!r} does not back up to disk {config.disk_name!r}",
            hint=f"its disks: {', '.join(config.disks_of(jobs_named(config, elsewhere)[0]))}",
        )
    return chosen


@contextlib.contextmanager
def stop_on_signals(cancel: CancelToken) -> Iterator[None]:
    """SIGINT/SIGTERM stop the work at its next safe point (the disk is still torn down)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        cancel.cancel(f"{signal.Signals(signum).name} received")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


def cmd_run(args: argparse.Namespace) -> int:
    """Run jobs now; exit 1 if any failed, 130 if stopped."""
    from coldvault.service.runner import run_session

    config = choose_disk(load_config(args), args)
    jobs = select_jobs(config, args.jobs)
    cancel = CancelToken()
    show = progress_printer()
    with stop_on_signals(cancel):
        outcome = run_session(
            config,
            jobs,
            cancel=cancel,
            progress=show,
            wait_disk=args.wait,
            wait_lock=args.wait_lock,
            keep_open=args.keep_open,
        )
    end_open_line()  # the progress bar's, if one was drawn
    for o in outcome.jobs:
        line = f"{o.job}: {o.result} in {o.duration:.1f} s"
        print(line + (f": {o.error}" if o.error else ""))
    if outcome.cancelled or cancel.cancelled:
        return EXIT_CANCELLED
    # A disk that could not be closed must not be unplugged: that is a failure too.
    return EXIT_FAILURE if outcome.failed or outcome.teardown_error else EXIT_OK
