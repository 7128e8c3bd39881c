"""What coldvault is doing and how the backups stand.

The daemon (and ``coldvault run``) keep a small runtime status file,
``<runtime_dir>/status.json``: the process id, its one-line activity and the
live progress of the running job. ``coldvault status`` combines it with the
state file and the schedule into one report, so monitoring can call it: it
exits 1 when the state file is damaged or unreadable (the daemon holds every
job then), else 6 (EXIT_CORRUPT) when the last verification of any job found
problems, else 7 (EXIT_OVERDUE) when a job is overdue by more than its
interval. Damage outranks lateness: a late backup is made by plugging the
disk in, damaged stored data needs a person.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from coldvault.config.model import Config, Job
from coldvault.disk.stack import DiskStack
from coldvault.errors import EXIT_CORRUPT, EXIT_FAILURE, EXIT_OK, EXIT_OVERDUE, ColdvaultError
from coldvault.progress import Progress, human_bytes
from coldvault.service import due
from coldvault.service.scheduled_verify import describe_verify
from coldvault.service.state import VERIFY_PROBLEMS, JobState, StateFile
from coldvault.system.files import atomic_write

STATUS_FILE_NAME = "status.json"


def format_age(delta: timedelta) -> str:
    """A short duration for humans: ``40s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d {h}h" if h else f"{d}d"


class RuntimeStatus:
    """The runtime status file of the running coldvault process (written only on change)."""

    def __init__(self, runtime_dir: Path) -> None:
        self.path = runtime_dir / STATUS_FILE_NAME
        self._last: dict[str, Any] | None = None

    def write(
        self,
        activity: str,
        *,
        disk_present: bool | None,
        progress: Progress | None = None,
        job: str | None = None,
        role: str = "daemon",
    ) -> None:
        """Publish what this process does now."""
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "role": role,
            "activity": activity,
            "disk_present": disk_present,
            "job": progress.job if progress is not None else job,
            "progress": asdict(progress) if progress is not None else None,
        }
        if data == self._last:
            return
        self._last = data
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps({**data, "updated": _now_iso()}) + "\n")

    def clear(self) -> None:
        """This process ends: remove its status file."""
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass

    @staticmethod
    def read(runtime_dir: Path) -> dict[str, Any] | None:
        """The live status of a running coldvault process, or None (absent or stale)."""
        try:
            data: dict[str, Any] = json.loads((runtime_dir / STATUS_FILE_NAME).read_text())
            os.kill(int(data["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return data


def _now_iso() -> str:
    return due.local_now().isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobReport:
    """One job's line in ``coldvault status``."""

    name: str
    type: str
    schedule: str
    last_success: datetime | None
    age: str | None
    result: str | None
    error: str | None
    bytes_written: int
    duration: float | None
    next_due: datetime | None
    overdue: bool
    progress: dict[str, Any] | None
    verify: VerifyLine | None = None  # None: the state file could not be read

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        for key in ("last_success", "next_due"):
            out[key] = out[key].isoformat(timespec="seconds") if out[key] else None
        if self.verify is not None:
            out["verify"] = self.verify.to_json()
        return out


@dataclass(frozen=True)
class VerifyLine:
    """One job's scheduled verification in ``coldvault status``."""

    schedule: str  # ``every 30d, at most 50.0 GiB a session`` or ``never``
    last_finished: datetime | None
    result: str | None  # ok | problems | error | None (never verified)
    problem_count: int
    problems: tuple[str, ...]  # the first ones (all up to 100)
    error: str | None
    items: int
    bytes_read: int
    sessions: int
    notes: tuple[str, ...]
    in_progress: bool  # a round spread over sessions is under way
    progress_bytes: int  # read so far by the round under way
    next_due: datetime | None
    text: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        for key in ("last_finished", "next_due"):
            out[key] = out[key].isoformat(timespec="seconds") if out[key] else None
        for key in ("problems", "notes"):
            out[key] = list(out[key])
        return out


def verify_line(config: Config, job: Job, state: JobState, now: datetime) -> VerifyLine:
    """The scheduled verification of ``job`` as ``status`` shows it."""
    schedule = config.verify_schedule(job)
    v = state.verify
    if schedule.every is None:
        text = "never"
    else:
        text = f"every {format_age(schedule.every)}"
        if schedule.max_per_session is not None:
            text += f", at most {human_bytes(schedule.max_per_session)} a session"
    return VerifyLine(
        schedule=text,
        last_finished=v.last_finished,
        result=v.result,
        problem_count=v.problem_count,
        problems=v.problems,
        error=v.error,
        items=v.items,
        bytes_read=v.bytes_read,
        sessions=v.sessions,
        notes=v.notes,
        in_progress=v.position is not None,
        progress_bytes=v.round_bytes,
        next_due=due.verify_next_due(
            schedule, v.last_finished, v.position is not None, state.last_success is not None, now
        ),
        text=describe_verify(v),
    )


def schedule_text(job: Job) -> str:
    """``every 1d, at 03:00, on plug`` or ``manual``."""
    parts = []
    if job.when.every is not None:
        parts.append(f"every {format_age(job.when.every)}")
    if job.when.at:
        parts.append("at " + " ".join(t.strftime("%H:%M") for t in job.when.at))
    if job.when.on_plug:
        parts.append("on plug")
    return ", ".join(parts) or "manual"


def job_report(
    job: Job,
    state: JobState,
    now: datetime,
    running: dict[str, Any] | None,
    verify: VerifyLine | None = None,
) -> JobReport:
    """Combine schedule, state and live progress for one job."""
    progress = None
    if running is not None and running.get("job") == job.name:
        progress = running.get("progress") or {"job": job.name, "phase": "starting"}
    return JobReport(
        name=job.name,
        type=job.type,
        schedule=schedule_text(job),
        last_success=state.last_success,
        age=format_age(now - state.last_success) if state.last_success else None,
        result=state.result,
        error=state.error,
        bytes_written=state.bytes_written,
        duration=state.duration,
        next_due=due.next_due(job.when, state.last_success, now),
        overdue=due.is_overdue(job.when, state.last_success, now),
        progress=progress,
        verify=verify,
    )


@dataclass(frozen=True)
class Report:
    """The whole ``coldvault status``."""

    daemon: dict[str, Any] | None  # the runtime status of a live process
    disk_present: bool
    disk: str
    jobs: tuple[JobReport, ...]
    state_error: str | None = None  # the state file is damaged or unreadable

    @property
    def overdue(self) -> bool:
        """Whether any job is overdue by more than its interval."""
        return any(j.overdue for j in self.jobs)

    @property
    def verify_problems(self) -> bool:
        """Whether the last verification of any job found problems."""
        return any(j.verify is not None and j.verify.result == VERIFY_PROBLEMS for j in self.jobs)

    @property
    def exit_code(self) -> int:
        """1: state file damaged; 6: a verification found problems; 7: overdue; else 0."""
        if self.state_error is not None:
            return EXIT_FAILURE
        if self.verify_problems:
            return EXIT_CORRUPT
        return EXIT_OVERDUE if self.overdue else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``coldvault status --json``)."""
        return {
            "daemon": self.daemon,
            "disk": {"path": self.disk, "present": self.disk_present},
            "state_error": self.state_error,
            "overdue": self.overdue,
            "verify_problems": self.verify_problems,
            "exit_code": self.exit_code,
            "jobs": [j.to_json() for j in self.jobs],
        }


def build_report(config: Config, now: datetime | None = None) -> Report:
    """Read the state and runtime files and the disk's presence (nothing is opened)."""
    now = now or due.local_now()
    state_error = None
    try:
        states = StateFile(config.settings.state_file, config.disk_name).load()
    except ColdvaultError as exc:  # damaged or unreadable: say so, show what is known
        state_error, states = str(exc), {}
    live = RuntimeStatus.read(config.settings.runtime_dir)
    if live is not None and live.get("disk_present") is not None:
        present = bool(live["disk_present"])
    else:
        present = DiskStack(config.disk).is_present()
    jobs = []
    for job in config.jobs:
        state = states.get(job.name, JobState())
        line = None if state_error else verify_line(config, job, state, now)
        jobs.append(job_report(job, state, now, live, line))
    disk = str(config.disk.device or config.disk.mount.point)
    return Report(live, present, disk, tuple(jobs), state_error)


def render_text(report: Report, now: datetime | None = None) -> str:
    """The human-readable report."""
    now = now or due.local_now()
    lines = []
    if report.daemon is not None:
        d = report.daemon
        lines.append(f"{d.get('role', 'coldvault')}: running (pid {d['pid']}): {d['activity']}")
    else:
        lines.append("daemon: not running")
    lines.append(f"disk: {'present' if report.disk_present else 'absent'} ({report.disk})")
    if report.state_error is not None:
        lines.append(f"STATE FILE: {report.state_error}")
        lines.append("  the daemon runs no job until it is fixed; last results are unknown")
        lines += [f"{j.name} ({j.type}, {j.schedule}): unknown" for j in report.jobs]
        return "\n".join(lines)
    for j in report.jobs:
        last = f"{j.last_success:%Y-%m-%d %H:%M} ({j.age} ago)" if j.last_success else "never"
        if j.next_due is None:
            nxt = "on plug" if "on plug" in j.schedule else "manual"
        elif j.last_success is None:
            nxt = "due now (OVERDUE: no backup exists)" if j.overdue else "due now"
        elif j.next_due <= now:
            late = format_age(now - j.next_due)
            nxt = f"OVERDUE by {late}" if j.overdue else f"due now (since {late})"
        else:
            nxt = f"in {format_age(j.next_due - now)}"
        lines.append(
            f"{j.name} ({j.type}, {j.schedule}): last success {last}; "
            f"last result {j.result or '-'}; next {nxt}"
        )
        if j.result in ("failed",) and j.error:
            lines.append(f"  error: {j.error}")
        if j.progress is not None:
            lines.append(f"  running: {_describe(j.progress)}")
        if j.verify is not None:
            lines += _verify_lines(j.verify, now)
    return "\n".join(lines)


SHOWN_PROBLEMS = 5


def _verify_lines(v: VerifyLine, now: datetime) -> list[str]:
    if v.next_due is None:
        nxt = "only by `coldvault verify`" if v.schedule == "never" else "after the first backup"
    elif v.next_due <= now:
        nxt = "in the next disk session"
    else:
        nxt = f"in {format_age(v.next_due - now)}"
    lines = [f"  verify ({v.schedule}): {v.text}; next {nxt}"]
    lines += [f"    problem: {p}" for p in v.problems[:SHOWN_PROBLEMS]]
    if v.problem_count > SHOWN_PROBLEMS:
        lines.append(
            f"    ... and {v.problem_count - SHOWN_PROBLEMS} more "
            "(`coldvault status --json`, `coldvault verify JOB --all`)"
        )
    return lines


def _describe(progress: dict[str, Any]) -> str:
    try:
        return Progress(**progress).describe()
    except TypeError:
        return f"{progress.get('job')}: {progress.get('phase', 'running')}"
