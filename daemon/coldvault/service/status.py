"""What coldvault is doing and how the backups stand.

The daemon (and ``coldvault run``) keep a small runtime status file,
``<runtime_dir>/status.json``: the process id, its one-line activity and the
live progress of the running job. ``coldvault status`` combines it with the
state file and the schedule into one report, so monitoring can call it: it
exits 1 when the state file is damaged or unreadable (the daemon holds every
job then), else 6 (EXIT_CORRUPT) when the last verification of any job found
problems, else 7 (EXIT_OVERDUE) when a job, or a job's offsite copy, is
overdue by more than its interval (the offsite part:
:mod:`coldvault.service.offsite_status`; a damaged offsite state also exits
1). Damage outranks lateness: a late backup is made by plugging the disk in,
damaged stored data needs a person.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coldvault.config.model import Config, Disk, Job
from coldvault.disk.stack import DiskStack
from coldvault.errors import EXIT_CORRUPT, EXIT_FAILURE, EXIT_OK, EXIT_OVERDUE, ColdvaultError
from coldvault.progress import Progress, format_age, human_bytes
from coldvault.service import due
from coldvault.service.offsite_status import OffsiteReport, offsite_reports, render_offsite
from coldvault.service.scheduled_verify import describe_verify
from coldvault.service.state import VERIFY_PROBLEMS, DiskState, JobState, StateFile
from coldvault.system.files import atomic_write

STATUS_FILE_NAME = "status.json"


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
        disks_present: dict[str, bool | None] | None = None,
    ) -> None:
        """Publish what this process does now.

        ``disks_present``: each watched disk's presence (None: not known yet).
        """
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "role": role,
            "activity": activity,
            "disk_present": disk_present,
            "disks_present": disks_present,
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
    disks: tuple[DiskLine, ...] = ()  # per disk the job uses

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        for key in ("last_success", "next_due"):
            out[key] = out[key].isoformat(timespec="seconds") if out[key] else None
        if self.verify is not None:
            out["verify"] = self.verify.to_json()
        out["disks"] = [d.to_json() for d in self.disks]
        return out


@dataclass(frozen=True)
class DiskLine:
    """One job on one disk."""

    disk: str
    last_success: datetime | None
    age: str | None
    result: str | None
    error: str | None
    next_due: datetime | None
    overdue: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        for key in ("last_success", "next_due"):
            out[key] = out[key].isoformat(timespec="seconds") if out[key] else None
        return out


@dataclass(frozen=True)
class DiskReport:
    """One configured disk in ``coldvault status``."""

    name: str
    path: str  # what coldvault waits for, or the mount point
    present: bool
    last_seen: datetime | None
    absent_for: timedelta | None  # set when absent longer than settings.disk_absent_warning
    rolled_back: tuple[str, ...] = ()  # the disk went back in time: what was found

    @property
    def warning(self) -> str | None:
        """``office: last seen 41 days ago`` when the disk has been away too long."""
        if self.absent_for is None:
            return None
        return f"{self.name}: last seen {self.absent_for.days} days ago"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "path": self.path,
            "present": self.present,
            "last_seen": self.last_seen.isoformat(timespec="seconds") if self.last_seen else None,
            "absent_days": self.absent_for.days if self.absent_for is not None else None,
            "warning": self.warning,
            "rolled_back": list(self.rolled_back),
        }

    @property
    def rollback_text(self) -> str | None:
        """The status line of a disk that went back in time."""
        if not self.rolled_back:
            return None
        return (
            f"disk {self.name} went back in time: {'; '.join(self.rolled_back)}; "
            f"retention deletes nothing on it until `coldvault disk accept {self.name}`"
        )


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
    disks: tuple[DiskReport, ...] = ()
    offsite: tuple[OffsiteReport, ...] = ()

    @property
    def overdue(self) -> bool:
        """Whether any job is overdue by more than its interval."""
        return any(j.overdue for j in self.jobs)

    @property
    def offsite_overdue(self) -> bool:
        """Whether any job's offsite copy is overdue by more than its target's interval."""
        return any(o.overdue for o in self.offsite)

    @property
    def offsite_state_error(self) -> bool:
        """Whether an offsite target's state could not be read."""
        return any(o.state_error is not None for o in self.offsite)

    @property
    def verify_problems(self) -> bool:
        """Whether the last verification of any job found problems."""
        return any(j.verify is not None and j.verify.result == VERIFY_PROBLEMS for j in self.jobs)

    @property
    def rolled_back(self) -> bool:
        """Whether a disk went back in time and was not accepted yet."""
        return any(d.rolled_back for d in self.disks)

    @property
    def exit_code(self) -> int:
        """1: state file (or offsite state) damaged; 6: verify found problems or a disk
        went back in time; 7: a job or an offsite copy is overdue; else 0."""
        if self.state_error is not None or self.offsite_state_error:
            return EXIT_FAILURE
        if self.verify_problems or self.rolled_back:
            return EXIT_CORRUPT
        return EXIT_OVERDUE if self.overdue or self.offsite_overdue else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``coldvault status --json``)."""
        return {
            "daemon": self.daemon,
            "disk": {"path": self.disk, "present": self.disk_present},
            "state_error": self.state_error,
            "overdue": self.overdue,
            "verify_problems": self.verify_problems,
            "rolled_back": self.rolled_back,
            "exit_code": self.exit_code,
            "jobs": [j.to_json() for j in self.jobs],
            "disks": [d.to_json() for d in self.disks],
            "offsite_overdue": self.offsite_overdue,
            "offsite": [o.to_json() for o in self.offsite],
        }


def build_report(config: Config, now: datetime | None = None) -> Report:
    """Read the state and runtime files and the disks' presence (nothing is opened).

    A job on several disks: its own line tells the disk with the newest
    success (so it is overdue only when it is overdue on every disk it uses),
    and one line per disk follows.
    """
    now = now or due.local_now()
    state_error = None
    try:
        disk_states = StateFile(config.settings.state_file, config.disk_name).load_disks()
    except ColdvaultError as exc:  # damaged or unreadable: say so, show what is known
        state_error, disk_states = str(exc), {}
    live = RuntimeStatus.read(config.settings.runtime_dir)
    present = _presence(config, live)
    empty = DiskState()
    jobs = []
    for job in config.jobs:
        states = {
            n: disk_states.get(n, empty).jobs.get(job.name, JobState())
            for n in config.disks_of(job)
        }
        best = _newest(states)
        line = None if state_error else verify_line(config, job, _verify_state(states, best), now)
        report = job_report(job, best, now, live, line)
        per_disk = tuple(_disk_line(job, n, s, now) for n, s in states.items())
        jobs.append(replace(report, disks=per_disk))
    disks = tuple(
        _disk_report(config, d, present[d.name], disk_states.get(d.name, empty), now)
        for d in config.disks
    )
    first = config.disks[0].config
    disk = str(first.device or first.mount.point)
    offsite = offsite_reports(config, now)
    return Report(live, any(present.values()), disk, tuple(jobs), state_error, disks, offsite)


def _presence(config: Config, live: dict[str, Any] | None) -> dict[str, bool]:
    """Each disk's presence: the running daemon's view (it follows udev) where it has
    one for every disk, else a look at each disk's device or mount point."""
    seen = (live or {}).get("disks_present")
    if isinstance(seen, dict) and all(isinstance(seen.get(d.name), bool) for d in config.disks):
        return {d.name: bool(seen[d.name]) for d in config.disks}
    if live is not None and live.get("disk_present") is not None and len(config.disks) == 1:
        return {config.disk_name: bool(live["disk_present"])}
    return {d.name: DiskStack(d.config).is_present() for d in config.disks}


def _newest(states: dict[str, JobState]) -> JobState:
    """The state with the newest success (else the newest attempt): what the job has."""
    if not states:
        return JobState()
    return max(
        states.values(),
        key=lambda s: (s.last_success is not None, s.last_success or s.last_attempt or _EPOCH),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _verify_state(states: dict[str, JobState], best: JobState) -> JobState:
    """The disk whose verification found problems, if any, else the newest backup's."""
    damaged = [s for s in states.values() if s.verify.result == VERIFY_PROBLEMS]
    return damaged[0] if damaged else best


def _disk_line(job: Job, disk: str, state: JobState, now: datetime) -> DiskLine:
    return DiskLine(
        disk=disk,
        last_success=state.last_success,
        age=format_age(now - state.last_success) if state.last_success else None,
        result=state.result,
        error=state.error,
        next_due=due.next_due(job.when, state.last_success, now),
        overdue=due.is_overdue(job.when, state.last_success, now),
    )


def _disk_report(
    config: Config, disk: Disk, present: bool, state: DiskState, now: datetime
) -> DiskReport:
    limit = config.settings.disk_absent_warning
    return DiskReport(
        name=disk.name,
        path=str(disk.config.device or disk.config.mount.point),
        present=present,
        last_seen=state.last_seen,
        absent_for=due.absent_too_long(state.last_seen, present, now, limit),
        rolled_back=state.rolled_back,
    )


def render_text(report: Report, now: datetime | None = None) -> str:
    """The human-readable report (one disk: as before disks could be several)."""
    now = now or due.local_now()
    lines = []
    if report.daemon is not None:
        d = report.daemon
        lines.append(f"{d.get('role', 'coldvault')}: running (pid {d['pid']}): {d['activity']}")
    else:
        lines.append("daemon: not running")
    several = len(report.disks) > 1
    if several:
        lines += [_disk_text(d, now) for d in report.disks]
    else:
        lines.append(f"disk: {'present' if report.disk_present else 'absent'} ({report.disk})")
    lines += [f"WARNING: {d.warning}" for d in report.disks if d.warning]
    lines += [f"WARNING: {d.rollback_text}" for d in report.disks if d.rollback_text]
    if report.state_error is not None:
        lines.append(f"STATE FILE: {report.state_error}")
        lines.append("  the daemon runs no job until it is fixed; last results are unknown")
        lines += [f"{j.name} ({j.type}, {j.schedule}): unknown" for j in report.jobs]
        return "\n".join(lines + render_offsite(report.offsite, now))
    for j in report.jobs:
        last = _when(j.last_success, j.age)
        nxt = _next(j.schedule, j.last_success, j.next_due, j.overdue, now)
        lines.append(
            f"{j.name} ({j.type}, {j.schedule}): last success {last}; "
            f"last result {j.result or '-'}; next {nxt}"
        )
        if j.result in ("failed",) and j.error and not several:
            lines.append(f"  error: {j.error}")
        if several:
            for dl in j.disks:
                dnext = _next(j.schedule, dl.last_success, dl.next_due, dl.overdue, now)
                lines.append(
                    f"  on {dl.disk}: last success {_when(dl.last_success, dl.age)}; "
                    f"last result {dl.result or '-'}; next {dnext}"
                )
                if dl.result == "failed" and dl.error:
                    lines.append(f"    error: {dl.error}")
        if j.progress is not None:
            lines.append(f"  running: {_describe(j.progress)}")
        if j.verify is not None:
            lines += _verify_lines(j.verify, now)
    lines += render_offsite(report.offsite, now)
    return "\n".join(lines)


def _disk_text(d: DiskReport, now: datetime) -> str:
    seen = (
        "never seen"
        if d.last_seen is None
        else f"last seen {_when(d.last_seen, format_age(now - d.last_seen))}"
    )
    return f"disk {d.name}: {'present' if d.present else 'absent'} ({d.path}); {seen}"


def _when(at: datetime | None, age: str | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} ({age} ago)" if at is not None else "never"


def _next(
    schedule: str, last: datetime | None, next_due: datetime | None, overdue: bool, now: datetime
) -> str:
    if next_due is None:
        return "on plug" if "on plug" in schedule else "manual"
    if last is None:
        return "due now (OVERDUE: no backup exists)" if overdue else "due now"
    if next_due <= now:
        late = format_age(now - next_due)
        return f"OVERDUE by {late}" if overdue else f"due now (since {late})"
    return f"in {format_age(next_due - now)}"


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
