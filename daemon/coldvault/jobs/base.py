"""The protocol every job type follows: run, restore, verify, list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from coldvault.progress import ProgressCallback
from coldvault.system.cancel import CancelToken


@dataclass(frozen=True)
class JobResult:
    """What one successful backup run did."""

    job: str
    snapshot: str | None  # the snapshot this run created, if any
    bytes_read: int
    bytes_written: int
    duration: float  # seconds
    summary: str  # one line for logs and status


@dataclass(frozen=True)
class RunContext:
    """What the service knows beyond the job, for a backup to one of several disks."""

    # False: delete nothing on the backup disk (it went back in time; see service.rollback).
    disk_retention: bool = True
    # The disk this session opened (``list`` names it among the disks holding a snapshot).
    disk: str = "default"
    # The other disks of the job -> the ``SOURCE/SNAPSHOT`` each holds as its newest, as the
    # host remembers it. btrfs: their next parent, kept on the source whatever
    # source_retention says.
    held_elsewhere: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def held_by(self, source: str) -> dict[str, list[str]]:
        """Snapshot name of ``source`` -> the other disks holding it as their newest."""
        out: dict[str, list[str]] = {}
        for disk, keys in sorted(self.held_elsewhere.items()):
            for key in keys:
                held_source, _, name = key.partition("/")
                if held_source == source:
                    out.setdefault(name, []).append(disk)
        return out


@dataclass(frozen=True)
class RestoreRequest:
    """What ``coldvault restore`` asked for (some options apply to one job type only)."""

    snapshot: str = "latest"
    dest: Path = Path()
    start_part: int = 0  # image only: resume an interrupted restore
    skip_zeros: bool = False  # image only: the destination is known to be zeroed


@dataclass(frozen=True)
class VerifyReport:
    """What ``coldvault verify`` found."""

    job: str
    snapshots: tuple[str, ...]
    items_checked: int
    problems: tuple[str, ...]  # one line each, naming the part or subvolume

    @property
    def ok(self) -> bool:
        """True when nothing was corrupt or missing."""
        return not self.problems


class JobRunner(Protocol):
    """One job type's implementation; ``job_dir`` is the job's folder on the backup disk."""

    def run(self, job_dir: Path, progress: ProgressCallback, cancel: CancelToken) -> JobResult:
        """Back up once; raise a ColdvaultError on failure, Cancelled on stop."""

    def restore(
        self,
        job_dir: Path,
        request: RestoreRequest,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> str:
        """Restore a snapshot; return what the user should know next."""

    def verify(
        self,
        job_dir: Path,
        snapshot: str | None,
        all_snapshots: bool,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> VerifyReport:
        """Check stored data against what was recorded when it was written."""

    def list(self, job_dir: Path) -> str:
        """A human-readable table of the job's snapshots."""
