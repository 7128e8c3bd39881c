"""The state file: per job, the last attempt, last success, result, bytes, duration, error.

One JSON file (default ``/var/lib/coldvault/state.json``) shared by the daemon
and one-shot commands. Writes are atomic (temporary file, fsync, rename, fsync
of the folder), so a crash leaves either the old or the new state, never half.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from coldvault.errors import ColdvaultError
from coldvault.system.files import atomic_write

STATE_VERSION = 1

# JobState.result values.
SUCCESS = "success"
FAILED = "failed"
CANCELLED = "cancelled"
RUNNING = "running"


@dataclass(frozen=True)
class JobState:
    """What coldvault remembers about one job."""

    last_attempt: datetime | None = None
    last_success: datetime | None = None
    result: str | None = None  # success | failed | cancelled | running
    bytes_read: int = 0  # of the last attempt
    bytes_written: int = 0
    duration: float | None = None  # seconds, of the last attempt
    error: str | None = None  # of the last failed attempt
    summary: str | None = None  # the job's one-line summary of its last success

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO 8601 with offset)."""
        out = asdict(self)
        for key in ("last_attempt", "last_success"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobState:
        """Parse one job's entry; unknown keys are ignored (newer versions may add some)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("last_attempt", "last_success"):
            if known.get(key) is not None:
                known[key] = datetime.fromisoformat(known[key])
        return cls(**known)


class StateFile:
    """Read and atomically update the state file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[tuple[int, int], dict[str, JobState]] | None = None

    def load(self) -> dict[str, JobState]:
        """Every job's state; an absent file means nothing ran yet.

        The parsed content is cached by (mtime, size) so the daemon can re-read
        it every loop turn without parsing it again.
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
        try:
            raw = json.loads(self.path.read_text())
            jobs = {name: JobState.from_json(entry) for name, entry in raw["jobs"].items()}
        except OSError as exc:
            raise self._error("read", exc) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ColdvaultError(
                f"state file {self.path} is damaged: {exc}",
                hint="move it aside; coldvault then treats every job as never run",
            ) from exc
        self._cache = (key, jobs)
        return dict(jobs)

    def get(self, job: str) -> JobState:
        """One job's state (empty when it never ran)."""
        return self.load().get(job, JobState())

    def update(self, job: str, **changes: Any) -> JobState:
        """Re-read the file, change one job's entry, write it back atomically."""
        jobs = self.load()
        new = replace(jobs.get(job, JobState()), **changes)
        jobs[job] = new
        self.save(jobs)
        return new

    def save(self, jobs: dict[str, JobState]) -> None:
        """Write every job's state atomically."""
        data = {"version": STATE_VERSION, "jobs": {n: s.to_json() for n, s in sorted(jobs.items())}}
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
