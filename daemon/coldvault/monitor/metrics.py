"""``settings.metrics_file``: the state as Prometheus metrics, for node-exporter's textfile
collector. Written atomically with ``prometheus_client``'s exposition writer after every
job, after a disk session (verification included), after offsite copies and at daemon
start.

Timestamps are Unix seconds. A job that never succeeded has no
``coldvault_job_last_success_timestamp_seconds`` sample: ``absent()`` alerts on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from coldvault.config.model import Config
from coldvault.errors import ColdvaultError, describe_os_error
from coldvault.events import Event, emit
from coldvault.monitor.offsite_metrics import OffsiteStates, add_offsite, load_offsite
from coldvault.service import state as st
from coldvault.service.due import is_overdue
from coldvault.system.files import atomic_write

log = logging.getLogger("coldvault.monitor.metrics")
DISK_SEEN = "coldvault_disk_last_seen_timestamp_seconds"
JOB = ("job", "disk")


def write_metrics(config: Config, now: datetime, *, disk_seen: datetime | None = None) -> None:
    """Write ``settings.metrics_file`` if configured; a failure is logged, never raised.

    ``disk_seen``: the disk was open at that time; otherwise the previous file's
    value is kept.
    """
    path = config.settings.metrics_file
    if path is None:
        return
    try:
        disks = st.StateFile(config.settings.state_file).load_disks()
        atomic_write(path, render(config, disks, now, disk_seen, load_offsite(config)))
    except (ColdvaultError, OSError) as exc:
        reason = exc.message if isinstance(exc, ColdvaultError) else describe_os_error(exc).message
        emit(
            log,
            Event.NOTIFY_FAILED,
            f"metrics not written to {path}: {reason}",
            level=logging.WARNING,
            channel="metrics file",
            target=str(path),
            error=reason,
        )


def render(
    config: Config,
    disks: dict[str, st.DiskState],
    now: datetime,
    disk_seen: datetime | None,
    offsite: OffsiteStates | None = None,
) -> bytes:
    """The exposition text for ``config``'s jobs on each of its disks (and offsite targets).

    ``disk_seen``: the session's disk (``config.disk_name``) was open then; the
    other disks' last-seen times come from the state file. ``offsite``: each
    target's offsite state (:mod:`coldvault.monitor.offsite_metrics`).
    """
    reg = CollectorRegistry()

    def gauge(name: str, doc: str, labels: Iterable[str] = JOB) -> Gauge:
        return Gauge(name, doc, list(labels), registry=reg)

    success = gauge("coldvault_job_last_success_timestamp_seconds", "Last successful backup.")
    attempt = gauge("coldvault_job_last_attempt_timestamp_seconds", "Start of the last attempt.")
    duration = gauge("coldvault_job_last_duration_seconds", "Duration of the last attempt.")
    written = gauge("coldvault_job_last_bytes", "Bytes written to the disk by the last attempt.")
    read = gauge("coldvault_job_last_read_bytes", "Bytes read from the source by the last attempt.")
    result = gauge("coldvault_job_last_result", "1: the last attempt succeeded, 0: it did not.")
    overdue = gauge("coldvault_job_overdue", "1: overdue by more than the job's interval.")
    verified = gauge(
        "coldvault_verify_last_success_timestamp_seconds", "Last verification without problems."
    )
    problems = gauge("coldvault_verify_problems", "Problems found by the last verification.")
    seen = gauge(DISK_SEEN, "Last time the backup disk was open.", ("disk",))
    for disk in config.disk_names:
        found = disks.get(disk, st.DiskState())
        for job in config.jobs_on(disk):
            s = found.jobs.get(job.name, st.JobState())
            labels = (job.name, disk)
            if s.last_success is not None:
                success.labels(*labels).set(s.last_success.timestamp())
            if s.last_attempt is not None:
                attempt.labels(*labels).set(s.last_attempt.timestamp())
                result.labels(*labels).set(1 if s.result == st.SUCCESS else 0)
                written.labels(*labels).set(s.bytes_written)
                read.labels(*labels).set(s.bytes_read)
            if s.duration is not None:
                duration.labels(*labels).set(s.duration)
            overdue.labels(*labels).set(1 if is_overdue(job.when, s.last_success, now) else 0)
            if s.verify.result == st.VERIFY_OK and s.verify.last_finished is not None:
                verified.labels(*labels).set(s.verify.last_finished.timestamp())
            problems.labels(*labels).set(s.verify.problem_count)
        last = disk_seen if disk_seen is not None and disk == config.disk_name else None
        last = last or found.last_seen
        if last is not None:
            seen.labels(disk).set(last.timestamp())
    if config.offsite:
        add_offsite(reg, config, offsite or {}, now)
    return generate_latest(reg)
