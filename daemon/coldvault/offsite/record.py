"""What the host remembers of its offsite copies: ``offsite-state.json`` beside the state file.

It has the state file's format (:mod:`coldvault.service.state`), with offsite
targets in place of disks: per target and job the last attempt, success, result,
bytes read and added, and an error; the restic check of a target is the entry
``CHECK``, which no job can be called (job names have no parentheses).
"""

from __future__ import annotations

from pathlib import Path

from coldvault.config.model import Config, OffsiteTarget
from coldvault.service.state import StateFile

CHECK = "(restic check)"


def path_of(config: Config) -> Path:
    """Where the offsite state lives: next to the state file."""
    state = config.settings.state_file
    return state.with_name(f"{state.stem}.offsite.json")


def state_of(config: Config, target: OffsiteTarget) -> StateFile:
    """The offsite state seen by ``target`` (its jobs' entries, and its check)."""
    return StateFile(path_of(config), disk=target.name)
