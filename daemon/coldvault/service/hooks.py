"""Everything around a job, in one place: hooks, pings, notifications, metrics.

The service runner calls :func:`job_started` (the start ping), :func:`around_job`
around each job's run (``before`` / ``after``), :func:`after_job` once the
result is known (``on_*`` hooks, the end ping, the notification, the metrics),
:func:`after_offsite` after offsite copies (``offsite_failed``, the metrics)
and wraps the session in a :class:`SessionWatch` (``disk_done``, messages for
the session's events). The job types run no hooks. For the hooks:

- timeout: every command gets ``HOOK_TIMEOUT_SECONDS``; ``before`` also ends
  at a stop request, ``after`` / ``on_*`` run to the end (they clean up);
- errors: every failure is logged as a ``hook_failed`` event; a failing
  ``before`` or ``after`` fails the job (JobError), ``on_success`` /
  ``on_failure`` never do; ``after`` runs whenever ``before`` started;
- environment: ``COLDVAULT_JOB``, ``COLDVAULT_RESULT`` (``running``,
  ``success``, ``failed``), ``COLDVAULT_ERROR`` and ``COLDVAULT_LOG``;
- commands: the job's own, then those of ``settings.hooks``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from coldvault.config.model import Argv, Config, Job
from coldvault.errors import Cancelled, ColdvaultError, JobError
from coldvault.events import Event, emit
from coldvault.monitor import messages, pings
from coldvault.monitor.apprise_notify import notify
from coldvault.monitor.labels import disk_label
from coldvault.monitor.metrics import write_metrics
from coldvault.service.due import local_now
from coldvault.system.cancel import CancelToken
from coldvault.system.proc import run

if TYPE_CHECKING:
    from coldvault.offsite.run import TargetOutcome
    from coldvault.service.runner import SessionOutcome

log = logging.getLogger("coldvault.hooks")
HOOK_TIMEOUT_SECONDS = 600.0
RUNNING, SUCCESS, FAILED = "running", "success", "failed"


def hook_env(job: str, result: str, error: str | None, lines: Sequence[str]) -> dict[str, str]:
    """The variables every hook of ``job`` gets, whatever its kind."""
    return {
        "COLDVAULT_JOB": job,
        "COLDVAULT_RESULT": result,
        "COLDVAULT_ERROR": error or "",
        "COLDVAULT_LOG": "\n".join(lines),
    }


def commands_of(config: Config, job: Job, kind: str) -> tuple[Argv, ...]:
    """The job's ``kind`` commands followed by those of ``settings.hooks``."""
    return (*getattr(job.hooks, kind), *getattr(config.settings.hooks, kind))


def run_hooks(
    kind: str,
    commands: Sequence[Argv],
    *,
    job: str,
    env: dict[str, str],
    cancel: CancelToken | None = None,
    fatal: bool = False,
) -> None:
    """Run each command in order; a failure is logged (HOOK_FAILED), raised if ``fatal``.

    Cancelled (a stop request during ``cancel``) is raised as it is.
    """
    for argv in commands:
        log.info("%s: running %s hook: %s", job, kind, " ".join(argv))
        try:
            # The user's own commands: their locale, not the C locale parsed commands get.
            run(
                argv,
                env=env,
                timeout=HOOK_TIMEOUT_SECONDS,
                cancel=cancel,
                capture_stdout=False,
                keep_locale=True,
            )
        except Cancelled:
            raise
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
            if fatal:
                raise JobError(f"{kind} hook of job {job} failed: {exc.message}") from None


@contextlib.contextmanager
def around_job(config: Config, job: Job, cancel: CancelToken) -> Iterator[None]:
    """``before`` on entry; ``after`` on exit, also when ``before`` or the job failed.

    While the job is failing, a failing ``after`` is logged and does not hide
    the job's own error.
    """
    env = hook_env(job.name, RUNNING, None, ())
    try:
        run_hooks(
            "before",
            commands_of(config, job, "before"),
            job=job.name,
            env=env,
            cancel=cancel,
            fatal=True,
        )
        yield
    except BaseException:
        with contextlib.suppress(JobError):
            _after(config, job, env)
        raise
    _after(config, job, env)


def _after(config: Config, job: Job, env: dict[str, str]) -> None:
    run_hooks("after", commands_of(config, job, "after"), job=job.name, env=env, fatal=True)


def job_started(config: Config, job: Job) -> None:
    """The job starts: its ``/start`` ping."""
    pings.ping_job(config, job, pings.START)


def after_job(
    config: Config,
    job: Job,
    error: str | None,
    lines: Sequence[str],
    *,
    hint: str | None = None,
    took: float = 0.0,
    written: int = 0,
) -> None:
    """Everything after a job's result is known (``error`` None: success); nothing raises.

    ``on_success`` or ``on_failure`` hooks, the success or ``/fail`` ping with
    the job's last log lines, the ``success`` or ``failure`` notification, the
    metrics file.
    """
    kind = "on_success" if error is None else "on_failure"
    env = hook_env(job.name, SUCCESS if error is None else FAILED, error, lines)
    run_hooks(kind, commands_of(config, job, kind), job=job.name, env=env)
    pings.ping_job(config, job, pings.SUCCESS if error is None else pings.FAIL, lines)
    disk = disk_label(config)
    if error is None:
        message = messages.job_succeeded(disk, job.name, written, took)
    else:
        message = messages.job_failed(disk, job.name, error, hint, took)
    notify(config, message, job=job.name)
    write_metrics(config, local_now())


def after_offsite(config: Config, outcomes: Sequence[TargetOutcome]) -> None:
    """After an offsite turn: an ``offsite_failed`` message per failed target, the metrics.

    A target skipped as unreachable sends nothing (it is retried; ``status`` and
    ``coldvault_offsite_unreachable`` show it). Nothing raises.
    """
    for o in outcomes:
        if o.result == FAILED:
            message = messages.offsite_failed(o.target, o.job, o.error or "unknown error", o.hint)
            job = o.job if o.job in {j.name for j in config.jobs} else None
            notify(config, message, job=job)
    if outcomes:
        write_metrics(config, local_now())


class _Collector(logging.Handler):
    """The events of a session that become messages or lines of ``disk_done``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str | None, str]] = []  # event, job, message

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "journal_fields", None) or {}
        event = fields.get("COLDVAULT_EVENT")
        if event in MESSAGE_EVENTS or event == Event.VERIFY_FINISHED.field:
            self.records.append((str(event), fields.get("COLDVAULT_JOB"), record.getMessage()))


# Events of other parts that are sent as they are (``on:`` names them the same way).
# (``offsite_failed`` is sent by :func:`after_offsite`, which knows the target and job.)
MESSAGE_EVENTS = ("verify_failed", "disk_rolled_back")


class SessionWatch:
    """One disk session, for the ``disk_done`` message, event messages and metrics.

    Used as a context manager around the session: it collects the events
    logged meanwhile; :meth:`ended` sends what they call for once the disk is
    closed.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.opened_at: datetime | None = None
        self._opened = 0.0
        self._collector = _Collector()
        self._sent = False

    def __enter__(self) -> SessionWatch:
        logging.getLogger("coldvault").addHandler(self._collector)
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        logging.getLogger("coldvault").removeHandler(self._collector)
        if exc is not None and self.opened_at is not None:
            self._send_events()  # the session broke off: what it found still goes out
            write_metrics(self.config, local_now(), disk_seen=self.opened_at)

    def disk_opened(self) -> None:
        """The disk is open: it was seen now."""
        self.opened_at = local_now()
        self._opened = time.monotonic()

    def ended(self, outcome: SessionOutcome, *, closed: bool) -> None:
        """The session is over; ``closed``: the disk was closed (not kept open)."""
        self._send_events()
        verified = [
            text
            for event, _job, text in self._collector.records
            if event in (Event.VERIFY_FINISHED.field, Event.VERIFY_FAILED.field)
        ]
        disk = disk_label(self.config)
        if outcome.teardown_error is not None:
            notify(self.config, messages.disk_not_closed(disk, outcome.teardown_error))
        elif closed and self.opened_at is not None and (outcome.jobs or verified):
            lines = [
                messages.JobLine(o.job, o.result, o.bytes_written, o.duration, o.error)
                for o in outcome.jobs
            ]
            message = messages.disk_done(disk, lines, verified, time.monotonic() - self._opened)
            emit(
                log,
                Event.DISK_DONE,
                message.body,
                disk=disk,
                summary=message.body,
            )
            notify(self.config, message)
        write_metrics(self.config, local_now(), disk_seen=self.opened_at)

    def _send_events(self) -> None:
        if self._sent:
            return
        self._sent = True
        disk = disk_label(self.config)
        for event, job, text in self._collector.records:
            if event in MESSAGE_EVENTS:
                notify(self.config, messages.from_event(disk, event, job, text), job=job)
