"""One offsite target's turn: copy each due job's newest backup, then ``restic check`` when due.

An unreachable repository ends the turn as *skipped* (an ``offsite_skipped``
event, retried at the next run), never as a failed backup. Any other restic
failure ends the turn as *failed* (``offsite_failed``) with restic's message,
the repository string masked. Each job's result is kept in the offsite state
(:mod:`coldvault.offsite.record`), which ``status`` and the due rule read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from coldvault.config.model import Config, Job, OffsiteTarget, When
from coldvault.errors import Cancelled, ColdvaultError, OffsiteError, OffsiteUnreachable
from coldvault.events import Event, emit
from coldvault.offsite import credentials, record, sources
from coldvault.offsite.copy import Copied, copy_upload, forget, with_stale_lock_removed
from coldvault.offsite.restic import Restic
from coldvault.offsite.sources import needs_disk
from coldvault.progress import ProgressCallback, human_bytes
from coldvault.service import hooks
from coldvault.service.due import Clock, is_due
from coldvault.service.state import FAILED, SUCCESS, StateFile
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.offsite")

SKIPPED = "skipped"
FORGET_EVERY = timedelta(days=1)


@dataclass(frozen=True)
class TargetOutcome:
    """How one target's turn ended: ok, skipped (unreachable) or failed, and what was copied."""

    target: str
    result: str  # success | skipped | failed
    copied: tuple[Copied, ...] = ()
    error: str | None = None
    job: str | None = None  # the job being copied when it ended (record.CHECK: the check)
    hint: str | None = None  # what the user can do about ``error``

    @property
    def text(self) -> str | None:
        """``error`` with its hint, as the CLI prints it."""
        if self.error is None or self.hint is None:
            return self.error
        return f"{self.error}\n  hint: {self.hint}"


def cache_dir(config: Config) -> Path:
    """restic's local cache (index and tree data): next to the state file."""
    return config.settings.state_file.parent / "restic-cache"


def restic_for(config: Config, target: OffsiteTarget, cancel: CancelToken) -> Restic:
    """The restic gateway for ``target``."""
    return Restic(target, cache_dir(config), cancel)


def due_jobs(
    config: Config, target: OffsiteTarget, now: datetime, wanted: Callable[[Job], bool]
) -> list[Job]:
    """The target's jobs that ``wanted`` selects and whose offsite copy is due."""
    state = record.state_of(config, target).load()
    out = []
    for job in config.offsite_jobs(target):
        last = state[job.name].last_success if job.name in state else None
        every_session = target.when.every is None and not target.when.at
        if wanted(job) and (every_session or is_due(target.when, last, now)):
            out.append(job)
    return out


def run_target(
    config: Config,
    target: OffsiteTarget,
    jobs: list[Job],
    *,
    cancel: CancelToken,
    progress: ProgressCallback,
    clock: Clock,
) -> TargetOutcome:
    """Copy ``jobs`` to ``target``; then check the repository when its check is due."""
    restic = restic_for(config, target, cancel)
    state = record.state_of(config, target)
    copied: list[Copied] = []
    current: str | None = None
    try:
        credentials.check(target)
        for job in jobs:
            current = job.name
            copied.extend(_copy_job(config, restic, job, state, progress, clock))
        current = None  # retention is the target's, over every job copied
        _forget_if_due(restic, state, copied, clock)
        current = record.CHECK
        if jobs:
            _check_if_due(restic, state, clock)
    except OffsiteUnreachable as exc:
        emit(
            log,
            Event.OFFSITE_SKIPPED,
            f"offsite {target.name} skipped: {exc}",
            level=logging.WARNING,
            offsite=target.name,
            error=exc.message,
        )
        return TargetOutcome(target.name, SKIPPED, tuple(copied), exc.message, current)
    except Cancelled:
        raise
    except ColdvaultError as exc:  # restic's failures, and a job folder that cannot be read
        emit(
            log,
            Event.OFFSITE_FAILED,
            f"offsite {target.name} failed: {exc}",
            job=current if current != record.CHECK else None,
            level=logging.ERROR,
            offsite=target.name,
            error=exc.message,
        )
        return TargetOutcome(target.name, FAILED, tuple(copied), exc.message, current, exc.hint)
    return TargetOutcome(target.name, SUCCESS, tuple(copied))


def _copy_job(
    config: Config,
    restic: Restic,
    job: Job,
    state: StateFile,
    progress: ProgressCallback,
    clock: Clock,
) -> list[Copied]:
    started, t0 = clock(), time.monotonic()
    state.update(job.name, last_attempt=started)
    try:
        with sources.newest(config, job) as uploads:
            if not uploads:
                log.info(
                    "offsite %s: job %s has no complete backup yet", restic.target.name, job.name
                )
                return []
            done = [
                copy_upload(restic, u, record.newest_of(state, job.name, u.source), progress)
                for u in uploads
            ]
    except OffsiteUnreachable as exc:
        state.update(job.name, error=exc.message)
        raise
    except Cancelled:
        raise
    except ColdvaultError as exc:
        state.update(job.name, result=FAILED, error=str(exc), duration=time.monotonic() - t0)
        _hooks(config, restic.target, job, "on_failure", str(exc))
        raise
    _record_success(state, job, done, started, time.monotonic() - t0)
    _hooks(config, restic.target, job, "on_success", None)
    return done


def _hooks(config: Config, target: OffsiteTarget, job: Job, kind: str, error: str | None) -> None:
    """``settings``' on_success/on_failure hooks, told by COLDVAULT_OFFSITE that it was a copy."""
    commands = getattr(config.settings.hooks, kind)
    if not commands:
        return
    result = hooks.FAILED if error else hooks.SUCCESS
    env = {**hooks.hook_env(job.name, result, error, ()), "COLDVAULT_OFFSITE": target.name}
    hooks.run_hooks(kind, commands, job=job.name, env=env)


def _record_success(
    state: StateFile, job: Job, done: list[Copied], started: datetime, seconds: float
) -> None:
    summaries = [c.summary for c in done if c.summary is not None]
    read = sum(s.read_bytes or 0 for s in summaries)
    added = sum(s.data_added for s in summaries)
    text = "; ".join(c.describe() for c in done)
    state.update(
        job.name,
        last_success=started,
        result=SUCCESS,
        bytes_read=read,
        bytes_written=added,
        duration=seconds,
        error=None,
        summary=text,
    )
    newest = {
        c.upload.source: record.Newest(c.summary.snapshot_id, c.upload.snapshot)
        for c in done
        if c.summary is not None
    }
    sizes = {s.snapshot_id[:8]: (s.bytes_processed, s.data_added) for s in summaries}
    record.remember(state, job.name, sizes, newest)
    target = state.disk
    snapshot = ", ".join(c.summary.snapshot_id[:8] for c in done if c.summary) or "-"
    emit(
        log,
        Event.OFFSITE_FINISHED,
        f"offsite {target}: {text}",
        job=job.name,
        offsite=target,
        snapshot=snapshot,
        summary=f"{human_bytes(added)} added",
    )


def _forget_if_due(restic: Restic, state: StateFile, copied: list[Copied], clock: Clock) -> None:
    """Retention once a day: each ``restic forget`` opens the repository (about half a
    second with its key derivation), and snapshots come at most a few times a day."""
    last = state.get(record.FORGET).last_success
    if not copied or not is_due(When(every=FORGET_EVERY), last, clock()):
        return
    started = clock()
    removed = forget(restic, copied, restic.target.retention)
    state.update(
        record.FORGET,
        last_attempt=started,
        last_success=started,
        result=SUCCESS,
        summary=f"{removed} snapshot(s) forgotten",
    )
    if removed:
        log.info("offsite %s: retention removed %d snapshot(s)", restic.target.name, removed)


def _check_if_due(restic: Restic, state: StateFile, clock: Clock) -> None:
    rule = restic.target.check
    last = state.get(record.CHECK).last_success
    if rule.every is None or not is_due(When(every=rule.every), last, clock()):
        return
    check(restic, state, clock)


def check(restic: Restic, state: StateFile, clock: Clock) -> None:
    """``restic check`` with the target's data subset; the result goes into the state."""
    started, t0 = clock(), time.monotonic()
    subset = restic.target.check.read_data_subset
    log.info(
        "offsite %s: restic check (reading %s of the data)", restic.target.name, subset or "none"
    )
    try:
        with_stale_lock_removed(restic, lambda: restic.check(subset))
    except OffsiteUnreachable:
        raise
    except OffsiteError as exc:
        state.update(record.CHECK, last_attempt=started, result=FAILED, error=str(exc))
        raise
    state.update(
        record.CHECK,
        last_attempt=started,
        last_success=started,
        result=SUCCESS,
        error=None,
        duration=time.monotonic() - t0,
        summary=f"restic check passed (data read: {subset or 'none'})",
    )
    log.info("offsite %s: restic check passed", restic.target.name)


def run_targets(
    config: Config,
    wanted: Callable[[Job], bool],
    *,
    due_only: bool,
    cancel: CancelToken,
    progress: ProgressCallback,
    clock: Clock,
    targets: tuple[OffsiteTarget, ...] | None = None,
) -> list[TargetOutcome]:
    """Each target's turn for the jobs ``wanted`` selects (only the due ones with ``due_only``)."""
    outcomes = []
    for target in config.offsite if targets is None else targets:
        if cancel.cancelled:
            break
        if due_only:
            jobs = due_jobs(config, target, clock(), wanted)
        else:
            jobs = [j for j in config.offsite_jobs(target) if wanted(j)]
        if jobs:
            outcomes.append(
                run_target(config, target, jobs, cancel=cancel, progress=progress, clock=clock)
            )
    return outcomes


def offsite_turn(
    config: Config,
    *,
    from_disk: bool,
    cancel: CancelToken,
    progress: ProgressCallback,
    clock: Clock,
) -> list[TargetOutcome]:
    """The daemon's due offsite copies: those read from ``config``'s disk, or the others."""

    def wanted(job: Job) -> bool:
        if not from_disk:
            return not needs_disk(job)
        return needs_disk(job) and config.disk_name in config.disks_of(job)

    if not config.offsite:
        return []
    return run_targets(config, wanted, due_only=True, cancel=cancel, progress=progress, clock=clock)


def offsite_due_without_disk(config: Config, now: datetime) -> bool:
    """Whether a copy that needs no disk is due by its target's ``every``/``at``.

    Targets without them copy once per disk session only (see :func:`offsite_turn`).
    """
    scheduled = [t for t in config.offsite if t.when.every is not None or t.when.at]
    return any(due_jobs(config, t, now, lambda j: not needs_disk(j)) for t in scheduled)
