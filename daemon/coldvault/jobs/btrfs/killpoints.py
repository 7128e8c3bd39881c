"""Named points where the crash tests SIGKILL a btrfs run, chosen by an environment variable.

``COLDVAULT_CRASH_AT=NAME`` (or ``NAME:N``) makes the first (or N-th) call of
``reached(NAME)`` kill this process with SIGKILL, as a power cut or the OOM killer
would end it there. Without the variable (always, outside the crash tests) ``reached``
returns at once. The image job's crash points read the same variable, so the lead can
merge both into one module.
"""

from __future__ import annotations

import itertools
import os
import signal

_SPEC = os.environ.get("COLDVAULT_CRASH_AT") or None
_calls = itertools.count(1)


def reached(name: str) -> None:
    """A named point: SIGKILL this process here if the crash test asked for it."""
    if _SPEC is None:
        return
    wanted, _, nth = _SPEC.partition(":")
    if name == wanted and next(_calls) == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
