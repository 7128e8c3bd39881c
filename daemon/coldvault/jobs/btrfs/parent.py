"""Which snapshot to send against: matched by uuid, never by symlinks or names.

A source snapshot and a received copy are the same data when the copy's
``received_uuid`` equals the snapshot's ``uuid``. The parent is the newest
source snapshot that has such a copy; a few other shared snapshots are passed
as ``-c`` clone sources so data shared with them (reflinks, older files) is
sent as clones instead of being copied again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from coldvault.jobs.btrfs.subvol import Subvolume

# Each clone source costs backref lookups in the kernel during send; a few suffice.
MAX_CLONE_SOURCES = 2


@dataclass(frozen=True)
class ParentChoice:
    """The send's parent (None: full send) and extra clone sources."""

    parent: Subvolume | None
    clones: tuple[Subvolume, ...]
    shared: tuple[str, ...]  # names of source snapshots with a complete copy, newest first
    damaged: tuple[str, ...] = ()  # newer candidates skipped: their copy is marked damaged

    def send_args(self) -> list[str | Path]:
        """``-p PARENT`` and ``-c CLONE`` arguments for ``btrfs send``."""
        args: list[str | Path] = []
        if self.parent is not None:
            args += ["-p", self.parent.path]
        for c in self.clones:
            args += ["-c", c.path]
        return args


def shared_snapshots(
    source_snaps: Sequence[Subvolume],
    received: Sequence[Subvolume],
    damaged: Collection[str] = (),
) -> list[Subvolume]:
    """Source snapshots (given oldest first) with a complete, undamaged copy, newest first.

    ``damaged`` holds the uuids of received copies that ``verify`` marked damaged.
    """
    received_uuids = {r.received_uuid for r in received if r.complete and r.uuid not in damaged}
    return [s for s in reversed(source_snaps) if s.readonly and s.uuid in received_uuids]


def choose(
    source_snaps: Sequence[Subvolume],
    received: Sequence[Subvolume],
    damaged: Collection[str] = (),
) -> ParentChoice:
    """Pick the parent: the newest source snapshot whose uuid a good received copy carries.

    ``source_snaps`` come oldest first, as :func:`coldvault.jobs.btrfs.snapshots.scan`
    returns them; copies whose uuid is in ``damaged`` are never a parent or clone source.
    """
    shared = shared_snapshots(source_snaps, received, damaged)
    everything = shared_snapshots(source_snaps, received)
    newest_good = shared[0].uuid if shared else None
    skipped = []
    for snap in everything:
        if snap.uuid == newest_good:
            break
        skipped.append(snap.path.name)
    if not shared:
        return ParentChoice(None, (), (), tuple(skipped))
    return ParentChoice(
        shared[0],
        tuple(shared[1 : 1 + MAX_CLONE_SOURCES]),
        tuple(s.path.name for s in shared),
        tuple(skipped),
    )
