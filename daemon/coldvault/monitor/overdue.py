"""The ``overdue`` notification: sent once when a job becomes overdue by more than its
interval (what ``coldvault status`` exits 7 for), again only after it succeeded since."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from coldvault.config.model import Config, Job
from coldvault.errors import ColdvaultError
from coldvault.monitor import messages
from coldvault.monitor.apprise_notify import notify
from coldvault.monitor.metrics import write_metrics
from coldvault.progress import format_age
from coldvault.service import state as st
from coldvault.service.due import is_overdue

log = logging.getLogger("coldvault.monitor.overdue")
CHECK_SECONDS = 60.0  # the state file is read at most this often


class OverdueWatch:
    """Remembers which jobs were reported overdue (in this process)."""

    def __init__(self) -> None:
        self.reported: set[str] = set()
        self._next = 0.0

    def check(self, config: Config, now: datetime) -> list[str]:
        """Notify the jobs that became overdue since the last check; return their names."""
        if time.monotonic() < self._next:
            return []
        self._next = time.monotonic() + CHECK_SECONDS
        try:
            disks = st.StateFile(config.settings.state_file).load_disks()
        except ColdvaultError:
            return []  # the daemon reports a damaged state file itself
        new = []
        for job in config.jobs:
            last = _newest_success(config, job, disks)  # overdue only on every disk
            if not is_overdue(job.when, last, now):
                self.reported.discard(job.name)
            elif job.name not in self.reported:
                self.reported.add(job.name)
                new.append(job.name)
                age = format_age(now - last) if last else None
                notify(
                    config,
                    messages.overdue(", ".join(config.disks_of(job)), job.name, age),
                    job=job.name,
                )
        if new:
            write_metrics(config, now)  # coldvault_job_overdue turns 1
        return new


def _newest_success(config: Config, job: Job, disks: dict[str, st.DiskState]) -> datetime | None:
    """The job's newest success on any of its disks."""
    found = [
        s.last_success
        for name in config.disks_of(job)
        if (s := disks.get(name, st.DiskState()).jobs.get(job.name)) and s.last_success
    ]
    return max(found, default=None)
