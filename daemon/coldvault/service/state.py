"""The state file: per disk and job, the last attempt, last success, result, bytes,
duration, error, and the scheduled verification (the last finished one, and the one
under way); per disk, when it was last seen.

One JSON file (default ``/var/lib/coldvault/state.json``) shared by the daemon
and one-shot commands. Writes are atomic (temporary file, fsync, rename, fsync
of the folder), so a crash leaves either the old or the new state, never half.

Reading validates every field (:mod:`coldvault.service.state_fields`): a file
that is not what coldvault writes raises :class:`StateDamaged`, naming the file
and the field, and nothing else (the daemon then holds every job, ``coldvault
status`` shows the message). Unknown keys are ignored.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, overload

from coldvault.config.model import DEFAULT_DISK
from coldvault.errors import ColdvaultError
from coldvault.jobs.verify_steps import VerifyPosition
from coldvault.service.state_fields import MAX_TEXT, FieldError, Fields
from coldvault.system.files import atomic_write

STATE_VERSION = 2  # 2: per-disk states under `disks` (1 is read as disk `default`)
MAX_STATE_BYTES = 64 * 1024 * 1024  # far beyond any real state file; larger is not ours
MAX_PROBLEMS_KEPT = 100  # problem lines kept per verification (the count is exact)
MAX_MARK = 1024  # a snapshot mark's key or fingerprint: a name, a hash, a uuid

# JobState.result values.
SUCCESS = "success"
FAILED = "failed"
CANCELLED = "cancelled"
RESULTS = (SUCCESS, FAILED, CANCELLED)

# VerifyState.result values.
VERIFY_OK = "ok"  # every part or file checked matched
VERIFY_PROBLEMS = "problems"  # corrupt, missing or unreadable data was found
VERIFY_ERROR = "error"  # the verification could not run (nothing was found damaged)
VERIFY_RESULTS = (VERIFY_OK, VERIFY_PROBLEMS, VERIFY_ERROR)

DISK_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")  # as config's names: a folder name
_TIMES = ("last_attempt", "last_success")
_VERIFY_TIMES = ("last_finished", "round_started")


@dataclass(frozen=True)
class VerifyState:
    """The scheduled verification of one job: the last finished round and the one under way."""

    last_finished: datetime | None = None  # when the last round ended (or failed to run)
    result: str | None = None  # ok | problems | error
    problems: tuple[str, ...] = ()  # the first MAX_PROBLEMS_KEPT of the last round
    problem_count: int = 0
    items: int = 0  # parts or files checked by the last round
    bytes_read: int = 0  # by the last round, over all its sessions
    sessions: int = 0  # disk sessions the last round took
    error: str | None = None  # why the last round could not run
    notes: tuple[str, ...] = ()  # of the last round: worth saying, not damage
    # The round under way (None: none): where it goes on, and what it found so far.
    position: VerifyPosition | None = None
    round_started: datetime | None = None
    round_bytes: int = 0
    round_items: int = 0
    round_sessions: int = 0
    round_problems: tuple[str, ...] = ()
    round_problem_count: int = 0
    round_notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        for key in _VERIFY_TIMES:
            out[key] = _iso(out[key])
        for key in ("problems", "notes", "round_problems", "round_notes"):
            out[key] = [clip(line) for line in out[key]]
        out["error"] = clip(self.error)
        if self.position is not None:
            out["position"]["targets"] = list(self.position.targets)
        return out

    @classmethod
    def from_fields(cls, f: Fields) -> VerifyState:
        """Parse and check one job's ``verify`` object."""
        return cls(
            last_finished=f.time("last_finished"),
            result=f.choice("result", VERIFY_RESULTS),
            problems=f.texts("problems"),
            problem_count=f.count("problem_count"),
            items=f.count("items"),
            bytes_read=f.count("bytes_read"),
            sessions=f.count("sessions"),
            error=f.text("error"),
            notes=f.texts("notes"),
            position=_position(f.nested("position")),
            round_started=f.time("round_started"),
            round_bytes=f.count("round_bytes"),
            round_items=f.count("round_items"),
            round_sessions=f.count("round_sessions"),
            round_problems=f.texts("round_problems"),
            round_problem_count=f.count("round_problem_count"),
            round_notes=f.texts("round_notes"),
        )


def _position(f: Fields | None) -> VerifyPosition | None:
    if f is None:
        return None
    position = VerifyPosition(
        snapshot=f.text("snapshot") or "",
        part=f.count("part"),
        file=f.text("file") or "",
        offset=f.count("offset"),
        targets=f.texts("targets"),
    )
    for name, value in (("snapshot", position.snapshot), ("file", position.file)):
        _relative(f, name, value)
    for i, target in enumerate(position.targets):
        _relative(f, f"targets[{i}]", target)
    return position


def _relative(f: Fields, name: str, value: str) -> None:
    """Paths in a position stay below the job folder: relative, no ``..``."""
    if value.startswith("/") or ".." in value.split("/"):
        raise FieldError(f"{f.where}.{name}", f"{value!r} is not a path below the job folder")


@dataclass(frozen=True)
class JobState:
    """What coldvault remembers about one job."""

    last_attempt: datetime | None = None
    last_success: datetime | None = None
    result: str | None = None  # success | failed | cancelled
    bytes_read: int = 0  # of the last attempt
    bytes_written: int = 0
    duration: float | None = None  # seconds, of the last attempt
    error: str | None = None  # of the last failed attempt
    summary: str | None = None  # the job's one-line summary of its last success
    verify: VerifyState = field(default_factory=VerifyState)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO 8601 with offset)."""
        out = asdict(self)
        for key in _TIMES:
            out[key] = _iso(out[key])
        out["error"], out["summary"] = clip(self.error), clip(self.summary)
        out["verify"] = self.verify.to_json()
        return out

    @classmethod
    def from_json(cls, data: object, where: str = "") -> JobState:
        """Parse and check one job's entry; FieldError names the first bad field."""
        f = Fields(data, where)
        verify = f.nested("verify")
        return cls(
            last_attempt=f.time("last_attempt"),
            last_success=f.time("last_success"),
            result=f.choice("result", RESULTS),
            bytes_read=f.count("bytes_read"),
            bytes_written=f.count("bytes_written"),
            duration=f.seconds("duration"),
            error=f.text("error"),
            summary=f.text("summary"),
            verify=VerifyState.from_fields(verify) if verify is not None else VerifyState(),
        )


@overload
def clip(text: str) -> str: ...
@overload
def clip(text: None) -> None: ...
def clip(text: str | None) -> str | None:
    """A message as the loader accepts it back: no NUL, at most MAX_TEXT characters.

    Whatever coldvault writes must read back; a long command error must never
    make the whole state file "damaged" and hold every job.
    """
    if text is None:
        return None
    text = text.replace("\0", "\\0")
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class StateDamaged(ColdvaultError):
    """The state file exists but is not what coldvault writes (names the file and field)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"state file {path} is damaged: {problem}",
            hint="jobs are held until it is fixed; move it aside and coldvault treats "
            "every job as never run",
        )
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class DiskState:
    """What coldvault remembers about one backup disk: its jobs' states, when it was seen."""

    jobs: dict[str, JobState] = field(default_factory=dict)
    last_seen: datetime | None = None  # the last time its token was accepted
    # Per job, the newest backup written to the disk: {key: fingerprint} (jobs.marks).
    marks: dict[str, dict[str, str]] = field(default_factory=dict)
    # What was missing or different when the disk came back (empty: none). While set,
    # retention deletes nothing on the disk; `coldvault disk accept` clears it.
    rolled_back: tuple[str, ...] = ()

    def extra_json(self) -> dict[str, Any]:
        """The disk's own fields (its jobs are written by the caller)."""
        return {
            "last_seen": _iso(self.last_seen),
            "marks": {j: dict(sorted(m.items())) for j, m in sorted(self.marks.items())},
            "rolled_back": [clip(line) for line in self.rolled_back],
        }


def parse_state(raw: bytes, path: Path) -> dict[str, DiskState]:
    """Every disk's state from the file's bytes; StateDamaged (only) when they are not valid.

    The jobs of the disk ``default`` (the one disk of a ``disk:`` mapping) are
    the top-level ``jobs`` object, where a version 1 file (and an older
    coldvault) has them; other disks' jobs are ``disks.NAME.jobs``.
    """
    if len(raw) > MAX_STATE_BYTES:
        raise StateDamaged(path, f"larger than {MAX_STATE_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StateDamaged(path, f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise StateDamaged(path, "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers beyond Python's digit limit
        raise StateDamaged(path, f"not JSON: {exc}") from None
    try:
        return _disks(Fields(data, ""))
    except FieldError as exc:
        raise StateDamaged(path, str(exc)) from None
    except (OverflowError, RecursionError) as exc:
        raise StateDamaged(path, f"a value is out of range ({exc})") from None


def _disks(top: Fields) -> dict[str, DiskState]:
    version = top.count("version", STATE_VERSION)
    if version < 1:
        raise FieldError("version", f"{version} is not a state file version")
    jobs = top.nested("jobs")
    if jobs is None:
        raise FieldError("jobs", "missing")
    out = {DEFAULT_DISK: DiskState(_jobs(jobs))}
    disks = top.nested("disks")
    for name, entry in disks.data.items() if disks is not None else ():
        f = Fields(entry, f"disks.{name}")
        _disk_name(f, name)
        own = f.nested("jobs")
        found = _jobs(own) if own is not None and name != DEFAULT_DISK else out[DEFAULT_DISK].jobs
        out[name] = DiskState(
            found,
            last_seen=f.time("last_seen"),
            marks=_marks(f.nested("marks")),
            rolled_back=f.texts("rolled_back"),
        )
    return out


def _marks(f: Fields | None) -> dict[str, dict[str, str]]:
    """Per job ``{key: fingerprint}``: short strings, keys paths below the job folder."""
    if f is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    for job, entry in f.data.items():
        marks = Fields(entry, f"{f.where}.{job}")
        found: dict[str, str] = {}
        for key in marks.data:
            value = marks.text(key)
            if value is None or len(value) > MAX_MARK or len(key) > MAX_MARK:
                raise FieldError(f"{marks.where}", f"{key[:60]!r} is not a snapshot mark")
            _relative(marks, key, key)
            found[key] = value
        out[job] = found
    return out


def _jobs(f: Fields) -> dict[str, JobState]:
    return {name: JobState.from_json(entry, f"{f.where}.{name}") for name, entry in f.data.items()}


def _disk_name(f: Fields, name: str) -> None:
    if not DISK_NAME.fullmatch(name) or name in (".", ".."):
        raise FieldError(f.where, f"{name[:60]!r} is not a disk name")


class StateFile:
    """Read and atomically update the state file at ``path``, as seen by one disk.

    ``load``, ``get``, ``update`` and ``save`` work on the jobs of ``disk``;
    ``load_disks`` and ``seen`` on every disk.
    """

    def __init__(self, path: Path, disk: str = DEFAULT_DISK) -> None:
        self.path = path
        self.disk = disk
        self._cache: tuple[tuple[int, int], dict[str, DiskState]] | None = None

    def for_disk(self, disk: str) -> StateFile:
        """The same file as seen by another disk."""
        return StateFile(self.path, disk)

    def load_disks(self) -> dict[str, DiskState]:
        """Every disk's state; an absent file means nothing ran yet.

        Raises StateDamaged for a file that is not valid, ColdvaultError when it
        cannot be read. The parsed content is cached by (mtime, size) so the
        daemon can re-read it every loop turn without parsing it again.
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._error("read", exc) from exc
        key = (st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == key:
            return dict(self._cache[1])
        disks = parse_state(self._read(), self.path)
        self._cache = (key, disks)
        return dict(disks)

    def load(self) -> dict[str, JobState]:
        """Every job's state on this disk (see :meth:`load_disks` for errors)."""
        found = self.load_disks().get(self.disk)
        return dict(found.jobs) if found is not None else {}

    def _read(self) -> bytes:
        """The file's bytes; never blocks on a FIFO or device planted at the path."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise self._error("read", exc) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StateDamaged(self.path, "not a regular file")
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read(MAX_STATE_BYTES + 1)
        except OSError as exc:
            raise self._error("read", exc) from exc
        finally:
            os.close(fd)

    def get(self, job: str) -> JobState:
        """One job's state on this disk (empty when it never ran there)."""
        return self.load().get(job, JobState())

    def update(self, job: str, **changes: Any) -> JobState:
        """Re-read the file, change one job's entry on this disk, write it back atomically."""
        jobs = self.load()
        new = replace(jobs.get(job, JobState()), **changes)
        jobs[job] = new
        self.save(jobs)
        return new

    def save(self, jobs: dict[str, JobState]) -> None:
        """Write every job's state on this disk atomically (other disks' states are kept)."""
        disks = self.load_disks()
        disks[self.disk] = replace(disks.get(self.disk, DiskState()), jobs=dict(jobs))
        self.save_disks(disks)

    def seen(self, when: datetime) -> None:
        """Record that this disk was attached (its token accepted) at ``when``."""
        self.change_disk(last_seen=when)

    def disk_state(self) -> DiskState:
        """This disk's state (empty when nothing is known of it)."""
        return self.load_disks().get(self.disk, DiskState())

    def change_disk(self, **changes: Any) -> DiskState:
        """Re-read the file, change this disk's own fields, write it back atomically."""
        disks = self.load_disks()
        new = replace(disks.get(self.disk, DiskState()), **changes)
        disks[self.disk] = new
        self.save_disks(disks)
        return new

    def set_marks(self, job: str, marks: dict[str, str]) -> None:
        """Remember the newest backup of ``job`` on this disk."""
        current = self.disk_state()
        self.change_disk(marks={**current.marks, job: dict(marks)})

    def save_disks(self, disks: dict[str, DiskState]) -> None:
        """Write every disk's state atomically."""
        default = disks.get(DEFAULT_DISK, DiskState())
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "jobs": {n: s.to_json() for n, s in sorted(default.jobs.items())},
        }
        others: dict[str, Any] = {}
        for name, disk in sorted(disks.items()):
            entry = disk.extra_json()
            if name != DEFAULT_DISK:
                entry["jobs"] = {n: s.to_json() for n, s in sorted(disk.jobs.items())}
            others[name] = entry
        data["disks"] = others
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise self._error("write", exc) from exc
        self._cache = None

    def _error(self, verb: str, exc: OSError) -> ColdvaultError:
        return ColdvaultError(
            f"cannot {verb} the state file {self.path}: {exc.strerror}",
            hint="set settings.state_file to a writable path, or run as root",
        )
