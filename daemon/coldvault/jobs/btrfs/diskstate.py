"""What coldvault remembers about one source's copies, kept beside them on the backup disk.

``<job folder>/<source>/.coldvault-btrfs.json`` holds the received copies that
``verify`` found damaged (by the copy's own uuid, so a renamed copy stays marked)
and the size of the last full and incremental send (the next send's progress
estimate). It lives on the disk because both facts are about that disk's copies:
another disk with the same jobs has its own. The file is input like everything on
the disk: validated when read; a damaged file is reported and read as empty.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coldvault.errors import DiskError
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.jobs.btrfs")

FILE = ".coldvault-btrfs.json"
_LIMIT = 1 << 20
_KINDS = ("full", "incremental")


@dataclass(frozen=True)
class Damage:
    """One received copy that ``verify`` found damaged."""

    name: str
    found: str  # ISO time of the verify that found it
    problems: tuple[str, ...]


@dataclass(frozen=True)
class DiskState:
    """Damage marks by copy uuid and the last send size by kind (``full``/``incremental``)."""

    damaged: dict[str, Damage] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The file's content."""
        return json.dumps(
            {
                "version": 1,
                "damaged": {
                    u: {"name": d.name, "found": d.found, "problems": list(d.problems)}
                    for u, d in sorted(self.damaged.items())
                },
                "sent": dict(sorted(self.sent.items())),
            },
            indent=2,
        )


def parse(text: str) -> DiskState:
    """Validate the file's content; ValueError says what is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError("not a version 1 object")
    damaged_in, sent_in = data.get("damaged", {}), data.get("sent", {})
    if not isinstance(damaged_in, dict) or not isinstance(sent_in, dict):
        raise ValueError("'damaged' and 'sent' must be objects")
    damaged = {}
    for uuid, mark in damaged_in.items():
        if not (
            isinstance(mark, dict)
            and isinstance(mark.get("name"), str)
            and isinstance(mark.get("found"), str)
            and isinstance(mark.get("problems"), list)
            and all(isinstance(p, str) for p in mark["problems"])
        ):
            raise ValueError(f"damage mark for {uuid!r} is malformed")
        damaged[uuid] = Damage(mark["name"], mark["found"], tuple(mark["problems"]))
    sent = {}
    for kind, size in sent_in.items():
        if kind not in _KINDS or type(size) is not int or size < 0:
            raise ValueError(f"'sent' entry {kind!r} is malformed")
        sent[kind] = size
    return DiskState(damaged, sent)


def load(folder: SafeDir) -> DiskState:
    """The state in ``folder``; empty (with a warning) when missing or damaged."""
    if folder.lstat(FILE) is None:
        return DiskState()
    try:
        return parse(folder.read_bytes(FILE, _LIMIT).decode())
    except (OSError, DiskError, ValueError, UnicodeDecodeError) as exc:
        log.warning(
            "ignoring %s: %s (damage marks and send sizes are forgotten)",
            folder.child(FILE),
            exc,
        )
        return DiskState()


def save(folder: SafeDir, state: DiskState) -> None:
    """Write the state atomically (a symlink or folder at the name is refused)."""
    folder.write_atomic(FILE, state.to_json() + "\n")


def with_sent(state: DiskState, kind: str, size: int) -> DiskState:
    """``state`` with the last ``kind`` send's size replaced."""
    return DiskState(dict(state.damaged), {**state.sent, kind: size})


def with_verified(
    state: DiskState, good: dict[str, str], bad: dict[str, tuple[str, tuple[str, ...]]]
) -> DiskState:
    """``state`` after a verify: ``good`` uuid->name unmarked, ``bad`` uuid->(name, problems)."""
    damaged = {u: d for u, d in state.damaged.items() if u not in good}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for uuid, (name, problems) in bad.items():
        damaged[uuid] = Damage(name, now, problems)
    return DiskState(damaged, dict(state.sent))
