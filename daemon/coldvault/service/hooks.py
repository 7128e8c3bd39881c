"""Every hook of a job, run in one place with one timeout, one error rule, one environment.

The service runner calls :func:`around_job` around each job's run and
:func:`after_job` once the result is known; the job types run no hooks.

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
from collections.abc import Iterator, Sequence
from datetime import datetime

from coldvault.config.model import Argv, Config, Job
from coldvault.errors import Cancelled, ColdvaultError, JobError
from coldvault.events import Event, emit
from coldvault.monitor import pings
from coldvault.monitor.metrics import write_metrics
from coldvault.service.due import local_now
from coldvault.system.cancel import CancelToken
from coldvault.system.proc import run

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


def after_job(config: Config, job: Job, error: str | None, lines: Sequence[str]) -> None:
    """Everything after a job's result is known; nothing here raises.

    ``on_success`` (``error`` None) or ``on_failure`` hooks, the success or
    ``/fail`` ping with the job's last log lines, the metrics file.
    """
    kind = "on_success" if error is None else "on_failure"
    env = hook_env(job.name, SUCCESS if error is None else FAILED, error, lines)
    run_hooks(kind, commands_of(config, job, kind), job=job.name, env=env)
    pings.ping_job(config, job, pings.SUCCESS if error is None else pings.FAIL, lines)
    write_metrics(config, local_now())


class SessionWatch:
    """What one disk session did, for the metrics and messages sent once it ends."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.opened_at: datetime | None = None

    def disk_opened(self) -> None:
        """The disk is open: it was seen now."""
        self.opened_at = local_now()

    def ended(self) -> None:
        """The session is over (the disk closed unless kept open)."""
        write_metrics(self.config, local_now(), disk_seen=self.opened_at)
