"""Structured events: one kind per thing that happens, each with a fixed MESSAGE_ID.

``journalctl MESSAGE_ID=<id>`` finds every event of a kind; the ids are listed
in the journal catalog ``systemd/coldvault.catalog``. Log an event with
:func:`emit`; the journal handler turns the extra fields into journal fields
(``COLDVAULT_EVENT``, ``COLDVAULT_JOB``, ``MESSAGE_ID``, ``COLDVAULT_*``).
"""

from __future__ import annotations

import logging
from enum import Enum


class Event(Enum):
    """Event kinds and their MESSAGE_IDs (never change an id once shipped)."""

    DAEMON_STARTED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e201"
    DAEMON_STOPPING = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e202"
    CONFIG_RELOADED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e203"
    CONFIG_REJECTED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e204"
    DISK_APPEARED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e210"
    DISK_ABSENT = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e211"
    DISK_OPENED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e212"
    DISK_CLOSED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e213"
    DISK_DEGRADED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e214"
    DISK_ERROR = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e215"
    TOKEN_REJECTED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e216"
    DISK_LONG_ABSENT = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e2a0"
    DISK_ROLLED_BACK = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e2a1"
    DISK_ACCEPTED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e2a2"
    JOB_STARTED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e220"
    JOB_FINISHED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e221"
    JOB_FAILED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e222"
    JOB_SKIPPED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e223"
    JOB_CANCELLED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e224"
    HOOK_FAILED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e230"
    VERIFY_FINISHED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e240"
    VERIFY_FAILED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e241"
    DISK_DONE = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e250"
    NOTIFY_FAILED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e251"
    OFFSITE_FINISHED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e260"
    OFFSITE_FAILED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e261"
    OFFSITE_SKIPPED = "2f1c7b0e6a8d4c59b3e1f0a4d6c8e262"

    @property
    def message_id(self) -> str:
        """The journal MESSAGE_ID of this kind."""
        return self.value

    @property
    def field(self) -> str:
        """The COLDVAULT_EVENT value: ``job_finished``."""
        return self.name.lower()


def emit(
    logger: logging.Logger,
    event: Event,
    message: str,
    *,
    job: str | None = None,
    level: int = logging.INFO,
    **fields: object,
) -> None:
    """Log ``message`` as a structured event (extra fields become COLDVAULT_<NAME>)."""
    extra: dict[str, object] = {"COLDVAULT_EVENT": event.field, "MESSAGE_ID": event.message_id}
    if job is not None:
        extra["COLDVAULT_JOB"] = job
    for key, value in fields.items():
        extra[f"COLDVAULT_{key.upper()}"] = value
    logger.log(level, message, extra={"journal_fields": extra})
