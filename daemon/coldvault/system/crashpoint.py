"""Named points where the crash tests kill coldvault, chosen by an environment variable.

``COLDVAULT_CRASH_AT=NAME`` (or ``NAME:N``) makes the first (or N-th) call of
``reached(NAME)`` kill this process with SIGKILL, exactly as a power cut or the OOM
killer would end it there. Without the variable (always, outside the crash tests)
``reached`` returns at once. Production code calls it at a few points that matter for
durability; nothing else about the tests is in production code.
"""

from __future__ import annotations

import itertools
import os
import signal

_SPEC = os.environ.get("COLDVAULT_CRASH_AT") or None
_calls = itertools.count(1)  # next() is atomic: parts are committed on a second thread


def _parse(spec: str) -> tuple[str, int]:
    name, _, nth = spec.partition(":")
    return name, int(nth) if nth.isdigit() else 1


def reached(name: str) -> None:
    """A named point: SIGKILL this process here if the crash test asked for it."""
    if _SPEC is None:
        return
    wanted, nth = _parse(_SPEC)
    if name != wanted:
        return
    if next(_calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
