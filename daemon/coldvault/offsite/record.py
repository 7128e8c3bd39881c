"""What the host remembers of its offsite copies: ``offsite-state.json`` beside the state file.

It has the state file's format (:mod:`coldvault.service.state`), with offsite
targets in place of disks: per target and job the last attempt, success, result,
bytes read and added, and an error; the restic check of a target is the entry
``CHECK``, which no job can be called (job names have no parentheses).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from coldvault.config.model import Config, OffsiteTarget
from coldvault.progress import human_bytes
from coldvault.service.state import StateFile

CHECK = "(restic check)"


def path_of(config: Config) -> Path:
    """Where the offsite state lives: next to the state file."""
    state = config.settings.state_file
    return state.with_name(f"{state.stem}.offsite.json")


MAX_REMEMBERED = 100  # restic snapshots per job whose size and data added are kept
NEWEST = "newest-"  # mark key prefix: the newest restic snapshot of one source of a job
FORGET = "(restic forget)"  # the entry of the last retention pass (no job has parentheses)
_ID = re.compile(r"[0-9a-f]{8,64}")  # restic 0.14 names its new snapshots by the short id


@dataclass(frozen=True)
class Newest:
    """The newest restic snapshot this host made of one source: its id and snapshot name."""

    restic_id: str
    snapshot: str


def _newest_key(source: str) -> str:
    return NEWEST + hashlib.sha256(source.encode()).hexdigest()[:16]


def newest_of(state: StateFile, job: str, source: str) -> Newest | None:
    """What :func:`remember` kept for ``source`` of ``job`` (None: nothing, or not valid)."""
    value = state.disk_state().marks.get(job, {}).get(_newest_key(source), "")
    restic_id, _, snapshot = value.partition(" ")
    if not _ID.fullmatch(restic_id) or not snapshot:
        return None
    return Newest(restic_id, snapshot)


def uploads(config: Config, target: OffsiteTarget) -> dict[str, tuple[str, str]]:
    """restic short id -> (size, data added) as this host saw them when it uploaded."""
    marks = state_of(config, target).disk_state().marks
    out: dict[str, tuple[str, str]] = {}
    for job_marks in marks.values():
        for short_id, value in job_marks.items():
            if short_id.startswith(NEWEST):
                continue
            size, _, added = value.partition(" ")
            if size.isdigit() and added.isdigit():
                out[short_id] = (human_bytes(int(size)), human_bytes(int(added)))
    return out


def remember(
    state: StateFile, job: str, found: dict[str, tuple[int, int]], newest: dict[str, Newest]
) -> None:
    """Keep (size, data added) of new restic snapshots of ``job`` (the newest MAX_REMEMBERED),
    and per source the newest snapshot (the next copy's parent, and what it holds)."""
    old = state.disk_state().marks.get(job, {})
    sizes = {k: v for k, v in old.items() if not k.startswith(NEWEST)}
    sizes.update({short_id: f"{size} {added}" for short_id, (size, added) in found.items()})
    marks = dict(list(sizes.items())[-MAX_REMEMBERED:])
    marks.update({k: v for k, v in old.items() if k.startswith(NEWEST)})
    marks.update({_newest_key(src): f"{n.restic_id} {n.snapshot}" for src, n in newest.items()})
    state.set_marks(job, marks)


def state_of(config: Config, target: OffsiteTarget) -> StateFile:
    """The offsite state seen by ``target`` (its jobs' entries, and its check)."""
    return StateFile(path_of(config), disk=target.name)
