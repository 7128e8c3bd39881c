"""Waiting for the backup device to appear."""

from __future__ import annotations

import os
import time
from pathlib import Path

from coldvault.errors import DiskAbsent
from coldvault.system.cancel import CancelToken

POLL_SECONDS = 0.25


def exists(path: Path) -> bool:
    """Whether ``path`` exists (a dangling by-id symlink counts as absent)."""
    return os.path.exists(path)


def wait_for(
    path: Path,
    seconds: float | None,
    *,
    cancel: CancelToken | None = None,
    what: str = "backup disk",
) -> None:
    """Return once ``path`` exists; DiskAbsent after ``seconds`` (None: wait forever).

    Returns at once when the device is already there, and raises Cancelled when
    ``cancel`` fires while waiting.
    """
    cancel = cancel or CancelToken()
    deadline = None if seconds is None else time.monotonic() + seconds
    while not exists(path):
        cancel.check()
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise DiskAbsent(
                f"{what} {path} is not attached" + (f" (waited {seconds:g}s)" if seconds else ""),
                hint="plug it in, or pass --wait SECONDS to wait for it",
            )
        cancel.wait(POLL_SECONDS if left is None else min(POLL_SECONDS, left))
    cancel.check()
