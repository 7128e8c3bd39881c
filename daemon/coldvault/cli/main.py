"""``coldvault`` command line: global options, subcommand registry, error handling.

Each command group lives in its own module exposing ``register(subparsers)``;
handlers take the parsed arguments and return an exit code. Every expected
failure is a ColdvaultError: its message is printed, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import sys
from collections.abc import Sequence

from coldvault import __version__
from coldvault.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_CANCELLED,
    ColdvaultError,
    describe_os_error,
)
from coldvault.log import setup_logging

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "coldvault.cli.run_cmd",
    "coldvault.cli.daemon_cmd",
    "coldvault.cli.status_cmd",
    "coldvault.cli.disk_cmd",
    "coldvault.cli.disk_prepare_cmd",  # after disk_cmd: joins its `disk` group
    "coldvault.cli.jobs_cmd",
    "coldvault.cli.mount_cmd",
    "coldvault.cli.offsite_cmd",
    "coldvault.cli.config_cmd",
    "coldvault.cli.demo_cmd",
    "coldvault.cli.service_cmd",
)

log = logging.getLogger("coldvault")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command module registered."""
    parser = argparse.ArgumentParser(
        prog="coldvault",
        description="Unattended backups onto a hand-built, encrypted backup disk.",
        epilog='Exit codes (README.md, "Exit codes"): 0 ok, 1 failed, 2 bad command line '
        "(also an unknown job name), 3 disk absent, 4 token rejected, 5 busy, 6 corrupt, "
        "7 overdue, 78 config error, 130 cancelled, 141 output pipe closed.",
    )
    parser.add_argument("--version", action="version", version=f"coldvault {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="configuration file (default: /etc/coldvault/config.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coldvault`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError as exc:
        if not stdout_closed():
            log.error("%s", describe_os_error(exc))
            return describe_os_error(exc).exit_code
        return quiet_broken_pipe()
    except ColdvaultError as exc:
        if not exc.reported:  # an emitted event already printed it, with its hint
            log.error("%s", exc)
        return exc.exit_code
    except OSError as exc:  # I/O error, disk full, ...: expected, so no traceback
        log.debug("operating-system error", exc_info=True)
        error = describe_os_error(exc)
        log.error("%s", error)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    return code


def stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader went away (``coldvault ... | head``)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def quiet_broken_pipe() -> int:
    """End quietly, as ``cat`` does, with 141 (128 + SIGPIPE): the reader had enough.

    stdout is pointed at /dev/null so the interpreter's final flush does not
    print "Exception ignored ... BrokenPipeError" either.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE
