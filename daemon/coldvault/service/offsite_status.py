"""The offsite part of ``coldvault status``: per target and job the last offsite copy.

Read from the offsite state (:mod:`coldvault.offsite.record`). A copy is overdue
when its last success is older than the target's interval (``every``, or a day
for ``at`` times) by more than that interval, as a job is; a target with
neither copies in every disk session and is judged by each job's own
interval (see :func:`coldvault.service.due.offsite_when`). An unreachable
repository is no failure: the result stays, the error says why it was skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from coldvault.config.model import Config, OffsiteTarget, When
from coldvault.errors import ColdvaultError
from coldvault.offsite import record
from coldvault.progress import format_age, human_bytes
from coldvault.service import due
from coldvault.service.state import FAILED, JobState


@dataclass(frozen=True)
class OffsiteLine:
    """One job's offsite copy (or the target's ``restic check``)."""

    job: str
    last_success: datetime | None
    last_attempt: datetime | None
    result: str | None  # success | failed | None (never tried)
    error: str | None  # of a failed copy, or why the last attempt was skipped
    bytes_added: int  # data added to the repository by the last copy
    next_due: datetime | None
    overdue: bool

    @property
    def skipped(self) -> bool:
        """The last attempt found the repository unreachable (the result is older)."""
        return self.error is not None and self.result != FAILED

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        for key in ("last_success", "last_attempt", "next_due"):
            out[key] = out[key].isoformat(timespec="seconds") if out[key] else None
        out["skipped"] = self.skipped
        return out


@dataclass(frozen=True)
class OffsiteReport:
    """One offsite target in ``coldvault status``."""

    name: str
    schedule: str  # ``every 1d``, ``at 02:00`` or ``every disk session``
    jobs: tuple[OffsiteLine, ...]
    check: OffsiteLine | None  # None: never checked
    check_schedule: str
    state_error: str | None = None  # the offsite state file is damaged or unreadable

    @property
    def overdue(self) -> bool:
        """Whether any job's offsite copy is overdue."""
        return any(j.overdue for j in self.jobs)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "schedule": self.schedule,
            "overdue": self.overdue,
            "state_error": self.state_error,
            "jobs": [j.to_json() for j in self.jobs],
            "check": self.check.to_json() if self.check is not None else None,
            "check_schedule": self.check_schedule,
        }


def offsite_reports(config: Config, now: datetime) -> tuple[OffsiteReport, ...]:
    """Every configured offsite target's report."""
    return tuple(target_report(config, t, now) for t in config.offsite)


def target_report(config: Config, target: OffsiteTarget, now: datetime) -> OffsiteReport:
    """One target: its jobs' copies and its last check, from the offsite state."""
    every_check = target.check.every
    check_schedule = f"every {format_age(every_check)}" if every_check is not None else "never"
    try:
        states = record.state_of(config, target).load()
    except ColdvaultError as exc:  # damaged or unreadable: say so, count nothing as late
        error = str(exc)
        return OffsiteReport(target.name, _schedule(target.when), (), None, check_schedule, error)
    lines = tuple(
        _line(job.name, states.get(job.name), due.offsite_when(target.when, job.when), now)
        for job in config.offsite_jobs(target)
    )
    check = states.get(record.CHECK)
    # A late check is shown by its next due time; it does not make status fail.
    check_line = _line(record.CHECK, check, When(every=every_check), now, judged=False)
    return OffsiteReport(
        target.name, _schedule(target.when), lines, check_line if check else None, check_schedule
    )


def _line(
    name: str, s: JobState | None, when: When, now: datetime, *, judged: bool = True
) -> OffsiteLine:
    s = s or JobState()
    return OffsiteLine(
        job=name,
        last_success=s.last_success,
        last_attempt=s.last_attempt,
        result=s.result,
        error=s.error,
        bytes_added=s.bytes_written,
        next_due=due.next_due(when, s.last_success, now),
        overdue=judged and due.is_overdue(when, s.last_success, now),
    )


def _schedule(when: When) -> str:
    parts = []
    if when.every is not None:
        parts.append(f"every {format_age(when.every)}")
    if when.at:
        parts.append("at " + " ".join(t.strftime("%H:%M") for t in when.at))
    return ", ".join(parts) or "every disk session"


def render_offsite(reports: tuple[OffsiteReport, ...], now: datetime) -> list[str]:
    """The text lines of every target (none when no offsite target is configured)."""
    lines: list[str] = []
    for r in reports:
        lines.append(f"offsite {r.name} ({r.schedule}):")
        if r.state_error is not None:
            lines.append(f"  OFFSITE STATE: {r.state_error}")
            continue
        lines += [_text(j, now, j.job) for j in r.jobs]
        lines += _error_lines(r.jobs)
        if r.check is None:
            lines.append(f"  restic check ({r.check_schedule}): never")
        else:
            lines.append(_text(r.check, now, f"restic check ({r.check_schedule})"))
            lines += _error_lines((r.check,))
    return lines


def _text(j: OffsiteLine, now: datetime, label: str) -> str:
    last = "never" if j.last_success is None else _when(j.last_success, now)
    text = f"  {label}: last success {last}; last result {j.result or '-'}"
    if j.job != record.CHECK:
        text += f"; added {human_bytes(j.bytes_added)}"
    if j.overdue:
        late = "no copy exists" if j.last_success is None else f"due since {_since(j, now)}"
        text += f"; OVERDUE ({late})"
    return text


def _since(j: OffsiteLine, now: datetime) -> str:
    return format_age(now - j.next_due) if j.next_due is not None else "-"


def _when(at: datetime, now: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} ({format_age(now - at)} ago)"


def _error_lines(lines: tuple[OffsiteLine, ...]) -> list[str]:
    out = []
    for j in lines:
        if j.error is None:
            continue
        what = "skipped, repository unreachable" if j.skipped else "error"
        label = "restic check" if j.job == record.CHECK else j.job
        out.append(f"    {label}: {what}: {j.error}")
    return out
