"""What verification found, kept on the backup disk for the next run to repair.

``.coldvault-repair.json`` in the job folder lists the parts that ``verify`` (by hand
or scheduled) found corrupt or missing: snapshot folder, part index, reason, and
whether a run already found it unrecoverable (the source no longer has those bytes).
It lives on the disk beside what it describes, because the host's state file may
later belong to another disk. Like every file there it is untrusted input: read
only when it is a small regular file, validated entry by entry; a file that fails
is reported and ignored (never followed, never a crash), and verifying again
records the findings anew.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from coldvault.errors import ColdvaultError
from coldvault.jobs.image.snapshots import SNAPSHOT_RE
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.image")

FLAGS_NAME = ".coldvault-repair.json"
FORMAT_VERSION = 1
MAX_BYTES = 8 << 20
MAX_FLAGS = 100_000  # more than this is not a list we wrote
MAX_PART = 1 << 40
CORRUPT, MISSING = "corrupt", "missing"
_KEYS = {"snapshot", "part", "reason", "unrecoverable"}


@dataclass(frozen=True, order=True)
class Flag:
    """One damaged part: ``snapshot`` is a folder name, ``"."`` for the job folder."""

    snapshot: str
    part: int
    reason: str
    unrecoverable: bool = False

    @property
    def key(self) -> tuple[str, int]:
        """(snapshot, part)."""
        return self.snapshot, self.part


def reason_for(problem: str) -> str | None:
    """The flag reason for a verify problem text, None when a run cannot repair it.

    A part that is not a regular file ends the run (left for the user), and one the
    manifest does not record has no hash to repair against.
    """
    if problem == "missing":
        return MISSING
    unrepairable = (
        problem.startswith("not recorded")
        or problem.endswith("not a part file")
        or problem == "not a regular file"
    )
    return None if unrepairable else CORRUPT


def load(top: SafeDir) -> tuple[list[Flag], str | None]:
    """(valid flags, None) or ([], what is wrong with the file); no file: ([], None)."""
    if top.lstat(FLAGS_NAME) is None:
        return [], None
    try:
        data = json.loads(top.read_bytes(FLAGS_NAME, MAX_BYTES))
        return _validate(data), None
    except ColdvaultError as exc:  # a symlink, FIFO, folder, or too large
        return [], exc.message
    except (OSError, ValueError, RecursionError, _Bad) as exc:
        return [], f"{top.child(FLAGS_NAME)}: unreadable or invalid ({exc})"


class _Bad(Exception):
    """One reason the file is not a valid repair list."""


def _validate(data: object) -> list[Flag]:
    if not isinstance(data, dict) or set(data) != {"version", "flags"}:
        raise _Bad("not an object with keys version, flags")
    if data["version"] != FORMAT_VERSION:
        raise _Bad(f"format version {data['version']!r:.20}")
    raw = data["flags"]
    if not isinstance(raw, list) or len(raw) > MAX_FLAGS:
        raise _Bad(f"flags must be a list of at most {MAX_FLAGS}")
    return sorted({_flag(item) for item in raw})


def _flag(item: object) -> Flag:
    if not isinstance(item, dict) or set(item) != _KEYS:
        raise _Bad(f"each flag is an object with keys {', '.join(sorted(_KEYS))}")
    snapshot, part = item["snapshot"], item["part"]
    reason, unrecoverable = item["reason"], item["unrecoverable"]
    if type(snapshot) is not str or not (snapshot == "." or SNAPSHOT_RE.match(snapshot)):
        raise _Bad(f"snapshot {snapshot!r:.60} is not a snapshot folder name")
    if type(part) is not int or not 0 <= part < MAX_PART:
        raise _Bad(f"part {part!r:.30} is not a part index")
    if reason not in (CORRUPT, MISSING) or type(unrecoverable) is not bool:
        raise _Bad(f"reason {reason!r:.30} / unrecoverable {unrecoverable!r:.10} invalid")
    return Flag(snapshot, part, reason, unrecoverable)


def save(top: SafeDir, flags: Iterable[Flag]) -> None:
    """Write the list atomically; an empty list removes the file (only a regular one)."""
    chosen = sorted(set(flags))
    if not chosen:
        if top.kind(FLAGS_NAME) == "file":
            with contextlib.suppress(FileNotFoundError):
                top.unlink(FLAGS_NAME)
                top.fsync()
        return
    data = {
        "version": FORMAT_VERSION,
        "flags": [
            {
                "snapshot": f.snapshot,
                "part": f.part,
                "reason": f.reason,
                "unrecoverable": f.unrecoverable,
            }
            for f in chosen
        ],
    }
    top.write_atomic(FLAGS_NAME, json.dumps(data, separators=(",", ":")))


def record(
    top: SafeDir, found: Iterable[Flag], covered: Callable[[str, int], bool], job: str
) -> None:
    """Replace the flags of the parts verification ``covered`` by what it ``found``.

    A part found again keeps its "unrecoverable" mark. Never raises: a list that cannot
    be written is logged (the verification result itself stands).
    """
    try:
        old, damaged = load(top)
        if damaged:
            log.warning("%s: repair list ignored and rewritten: %s", job, damaged)
        before = {f.key: f for f in old}
        kept = [f for f in old if not covered(*f.key)]
        new = [
            replace(f, unrecoverable=before[f.key].unrecoverable) if f.key in before else f
            for f in found
        ]
        save(top, [*kept, *new])
    except (ColdvaultError, OSError) as exc:
        log.warning("%s: could not record the damaged parts for repair: %s", job, exc)
