"""The offsite series of the metrics file: per target (``offsite``) and job the last copy.

Read from the offsite state (:mod:`coldvault.offsite.record`); an unreadable or
damaged offsite state leaves its target's series out (``status`` says why), the
jobs' own series are written all the same.
"""

from __future__ import annotations

import logging
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from coldvault.config.model import Config
from coldvault.errors import ColdvaultError
from coldvault.offsite import record
from coldvault.service import state as st
from coldvault.service.due import is_overdue, offsite_when

log = logging.getLogger("coldvault.monitor.metrics")
LABELS = ("offsite", "job")
OffsiteStates = dict[str, dict[str, st.JobState]]  # target name -> job -> its offsite copy


def load_offsite(config: Config) -> OffsiteStates:
    """Each target's offsite state; a target whose state cannot be read is left out."""
    out: OffsiteStates = {}
    for target in config.offsite:
        try:
            out[target.name] = record.state_of(config, target).load()
        except ColdvaultError as exc:
            log.warning("metrics: offsite %s left out: %s", target.name, exc.message)
    return out


def add_offsite(
    reg: CollectorRegistry, config: Config, states: OffsiteStates, now: datetime
) -> None:
    """Register the offsite gauges in ``reg`` with one sample set per target and job."""
    g = _Gauges(reg)
    for target in config.offsite:
        if target.name not in states:
            continue
        found = states[target.name]
        for job in config.offsite_jobs(target):
            s = found.get(job.name, st.JobState())
            late = is_overdue(offsite_when(target.when, job.when), s.last_success, now)
            g.job(target.name, job.name, s, late)
        check = found.get(record.CHECK)
        if check is not None:
            g.check(target.name, check)


class _Gauges:
    """The offsite gauges of one registry."""

    def __init__(self, reg: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = LABELS) -> Gauge:
            return Gauge(f"coldvault_offsite_{name}", doc, list(labels), registry=reg)

        self.success = gauge("last_success_timestamp_seconds", "Last offsite copy.")
        self.attempt = gauge("last_attempt_timestamp_seconds", "Last offsite attempt.")
        self.result = gauge("last_result", "1: the last offsite copy succeeded, 0: it failed.")
        self.added = gauge("last_bytes_added", "Data the last offsite copy added.")
        self.read = gauge("last_read_bytes", "Bytes the last offsite copy read.")
        self.unreachable = gauge("unreachable", "1: the last attempt found it unreachable.")
        self.overdue = gauge("overdue", "1: overdue by more than the interval.")
        self.checked = gauge(
            "check_last_success_timestamp_seconds", "Last restic check that passed.", ("offsite",)
        )
        self.check_result = gauge(
            "check_last_result", "1: the last restic check passed, 0: it failed.", ("offsite",)
        )

    def job(self, target: str, job: str, s: st.JobState, late: bool) -> None:
        labels = (target, job)
        if s.last_success is not None:
            self.success.labels(*labels).set(s.last_success.timestamp())
        if s.last_attempt is not None:
            self.attempt.labels(*labels).set(s.last_attempt.timestamp())
        if s.result is not None:
            self.result.labels(*labels).set(1 if s.result == st.SUCCESS else 0)
            self.added.labels(*labels).set(s.bytes_written)
            self.read.labels(*labels).set(s.bytes_read)
        skipped = s.error is not None and s.result != st.FAILED
        self.unreachable.labels(*labels).set(1 if skipped else 0)
        self.overdue.labels(*labels).set(1 if late else 0)

    def check(self, target: str, s: st.JobState) -> None:
        if s.last_success is not None:
            self.checked.labels(target).set(s.last_success.timestamp())
        if s.result is not None:
            self.check_result.labels(target).set(1 if s.result == st.SUCCESS else 0)
