"""The Layer protocol shared by every level of the disk stack.

A layer is one thing that must be brought up before the backup root exists
(an md array, a LUKS mapping, a logical volume, a mount). Each layer can tell
whether it is open right now, opens and closes idempotently, and remembers
whether *this* process opened it (``opened_by_us``): teardown closes only those.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from coldvault.errors import CommandError
from coldvault.system import proc
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.disk")

# Timeouts (seconds) for the commands the layers run: generous, because a
# spinning disk may need to wake up, but never infinite.
QUICK_TIMEOUT = 60.0
SLOW_TIMEOUT = 300.0  # cryptsetup key derivation, mdadm assembly on slow disks


@dataclass(frozen=True)
class LayerStatus:
    """What ``disk status`` shows for one layer."""

    name: str
    device: str
    present: bool  # the layer's underlying device exists
    open: bool
    detail: dict[str, object] = field(default_factory=dict)


class Layer(Protocol):
    """One level of the disk stack."""

    name: str
    opened_by_us: bool

    def is_open(self) -> bool:
        """Whether the layer is up right now (by us or anybody else)."""
        ...

    def open(self) -> None:
        """Bring the layer up; a no-op when it already is (then ``opened_by_us`` stays False)."""
        ...

    def close(self) -> None:
        """Take the layer down; a no-op when it is not up."""
        ...

    def status(self) -> LayerStatus:
        """The layer's current state for ``disk status``."""
        ...


def settle(cancel: CancelToken) -> None:
    """Let udev create the /dev links of a device we just made (best effort)."""
    if proc.which("udevadm") is None:
        return
    try:
        proc.run(["udevadm", "settle", "--timeout=30"], timeout=40, cancel=cancel, check=False)
    except CommandError as exc:
        log.debug("udevadm settle: %s", exc)
