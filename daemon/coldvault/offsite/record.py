"""What the host remembers of its offsite copies: ``offsite-state.json`` beside the state file.

It has the state file's format (:mod:`coldvault.service.state`), with offsite
targets in place of disks: per target and job the last attempt, success, result,
bytes read and added, and an error; the restic check of a target is the entry
``CHECK``, which no job can be called (job names have no parentheses).
"""

from __future__ import annotations

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


def uploads(config: Config, target: OffsiteTarget) -> dict[str, tuple[str, str]]:
    """restic short id -> (size, data added) as this host saw them when it uploaded."""
    marks = state_of(config, target).disk_state().marks
    out: dict[str, tuple[str, str]] = {}
    for job_marks in marks.values():
        for short_id, value in job_marks.items():
            size, _, added = value.partition(" ")
            if size.isdigit() and added.isdigit():
                out[short_id] = (human_bytes(int(size)), human_bytes(int(added)))
    return out


def remember(state: StateFile, job: str, found: dict[str, tuple[int, int]]) -> None:
    """Keep (size, data added) of new restic snapshots of ``job`` (the newest MAX_REMEMBERED)."""
    marks = dict(state.disk_state().marks.get(job, {}))
    marks.update({short_id: f"{size} {added}" for short_id, (size, added) in found.items()})
    state.set_marks(job, dict(list(marks.items())[-MAX_REMEMBERED:]))


def state_of(config: Config, target: OffsiteTarget) -> StateFile:
    """The offsite state seen by ``target`` (its jobs' entries, and its check)."""
    return StateFile(path_of(config), disk=target.name)
