"""``on_success`` / ``on_failure`` hooks: run through the process gateway, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from coldvault.errors import ColdvaultError
from coldvault.events import Event, emit
from coldvault.system.proc import run

log = logging.getLogger("coldvault.hooks")
HOOK_TIMEOUT_SECONDS = 600.0


def run_hooks(
    kind: str, commands: Iterable[tuple[str, ...]], *, job: str, env: dict[str, str]
) -> None:
    """Run each command with ``env`` added; a failure is logged (HOOK_FAILED), never raised."""
    for argv in commands:
        try:
            # The user's own commands: their locale, not the C locale parsed commands get.
            run(
                argv,
                env=env,
                timeout=HOOK_TIMEOUT_SECONDS,
                capture_stdout=False,
                keep_locale=True,
            )
        except ColdvaultError as exc:
            emit(
                log,
                Event.HOOK_FAILED,
                f"{job}: {kind} hook failed: {exc.message}",
                job=job,
                level=logging.WARNING,
                hook=kind,
                error=exc.message,
            )
