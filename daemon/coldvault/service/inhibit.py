"""Keep the machine awake while a backup runs: a child process holds the inhibitor.

Linux: ``systemd-inhibit --what=sleep:shutdown --mode=block`` around
``tail --pid=<us>``; macOS: ``caffeinate -i -w <us>``. Both children end on
their own if this process dies, so a crash never leaves the machine unable to
sleep. Without logind (containers) the inhibitor is simply not held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

from coldvault.errors import ColdvaultError
from coldvault.system.proc import spawn, which

log = logging.getLogger("coldvault.inhibit")


def inhibitor_argv(why: str, pid: int) -> list[str] | None:
    """The command that holds the inhibitor for the life of ``pid``; None if unavailable."""
    if sys.platform == "darwin":
        return ["caffeinate", "-i", "-w", str(pid)] if which("caffeinate") else None
    if which("systemd-inhibit") is None:
        return None
    return [
        "systemd-inhibit",
        "--what=sleep:shutdown",
        "--mode=block",
        "--who=coldvault",
        f"--why={why}",
        "tail",
        f"--pid={pid}",
        "-f",
        "/dev/null",
    ]


@contextlib.contextmanager
def sleep_inhibited(why: str, *, enabled: bool = True) -> Iterator[None]:
    """Hold a sleep/shutdown inhibitor for the block (best effort)."""
    argv = inhibitor_argv(why, os.getpid()) if enabled else None
    if argv is None:
        yield
        return
    with open(os.devnull, "r+b") as devnull:
        try:
            # Own process group: stopping it also stops the `tail` below systemd-inhibit.
            child = spawn(
                argv, stdin=devnull, stdout=devnull, stderr=devnull, start_new_session=True
            )
        except (ColdvaultError, OSError) as exc:
            log.warning("could not hold a sleep inhibitor: %s", exc)
            yield
            return
    try:
        yield
    finally:
        code = child.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            child.wait()
        elif code != 0:
            log.debug("no sleep inhibitor was held (`%s` exited with %s)", argv[0], code)
