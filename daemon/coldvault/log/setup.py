"""Choose and install log handlers for this process."""

from __future__ import annotations

import logging

from coldvault.log.console import console_handler
from coldvault.log.journal import JournalHandler, stderr_is_journal


def level_for(verbosity: int) -> int:
    """-1 (or less) warnings, 0 info, 1 or more debug."""
    if verbosity < 0:
        return logging.WARNING
    return logging.DEBUG if verbosity > 0 else logging.INFO


def setup_logging(verbosity: int = 0, *, journal: bool | None = None) -> None:
    """Configure the ``coldvault`` logger.

    ``verbosity``: -1 quiet (warnings), 0 info, 1+ debug. ``journal``: send
    structured entries to journald instead of plain lines; None (the default)
    decides from the environment: yes when stderr is connected to the journal
    (``JOURNAL_STREAM``), as under systemd.
    """
    if journal is None:
        journal = stderr_is_journal()
    root = logging.getLogger("coldvault")
    root.setLevel(level_for(verbosity))
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(JournalHandler() if journal else console_handler())
    root.propagate = False
