"""Source snapshots a killed run made but never sent.

Before a run takes its source snapshot it writes the snapshot's name into
``.coldvault-unsent`` in the source's folder on the backup disk (not beside the
snapshots: that folder may lie inside the source, and the file would be backed
up), and removes the file once the received copy is accepted (or the snapshot
deleted after a failure). A SIGKILL
in between leaves the name behind: the next run deletes that snapshot unless the
backup disk holds a complete copy of it (then it is the next parent), and says so.
Without this, a killed run's snapshot shows as "SOURCE yes / BACKUP -" and takes a
``source_retention`` slot.
"""

from __future__ import annotations

import contextlib
import logging

from coldvault.errors import DiskError
from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.snapshots import Scan
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.jobs.btrfs")

FILE = ".coldvault-unsent"


def mark(target: SafeDir, name: str) -> None:
    """Record in the disk's ``target`` folder that ``name`` is about to be made and sent.

    Something else at the name (a planted symlink) is reported and left alone; the run
    goes on (a kill would then leave the snapshot to retention).
    """
    try:
        target.write_atomic(FILE, name + "\n")
    except DiskError as exc:
        log.warning("%s", exc.message)


def clear(target: SafeDir) -> None:
    """The marked snapshot was sent (or deleted)."""
    with contextlib.suppress(FileNotFoundError):
        if target.kind(FILE) == "file":
            target.unlink(FILE)


def clean(folder: SafeDir, target: SafeDir, local: Scan, received: Scan) -> list[str]:
    """Delete the snapshot in the source's ``folder`` that a killed run left unsent."""
    if target.lstat(FILE) is None:
        return []
    try:
        name = target.read_bytes(FILE, 4096).decode().strip()
    except (OSError, DiskError, UnicodeDecodeError) as exc:
        log.warning("ignoring %s: %s", target.child(FILE), exc)
        return []
    copies = {r.received_uuid for r in received.complete()}
    deleted = []
    for snap in local.snapshots:
        if snap.path.name == name and snap.uuid not in copies:
            log.warning(
                "deleting source snapshot %s: the run that made it was stopped before it "
                "was received, and it is nobody's parent",
                snap.path,
            )
            subvol.destroy(folder, name)
            subvol.commit(folder)
            deleted.append(name)
    clear(target)
    return deleted
