"""One disk session: take the lock, bring the disk up, yield the backup root, tear down."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from coldvault.config.model import Config
from coldvault.disk.stack import DiskStack
from coldvault.service.lock import hold_lock
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.session")


@contextlib.contextmanager
def disk_session(
    config: Config,
    *,
    wait_disk: float | None = 0,
    wait_lock: float | None = 0,
    keep_open: bool = False,
    cancel: CancelToken | None = None,
) -> Iterator[Path]:
    """Yield the verified backup root; teardown runs on success, failure and cancel."""
    cancel = cancel or CancelToken()
    with hold_lock(config.settings.lock_file, wait=wait_lock, cancel=cancel):
        stack = DiskStack(config.disk, cancel=cancel)
        stack.wait(wait_disk)
        try:
            root = stack.open()
            yield root
        finally:
            if not keep_open:
                stack.close()
