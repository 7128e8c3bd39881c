"""Copy one job's newest backup to one repository: upload, then restic's retention.

A folder already in the repository (tagged with its snapshot's name) is not
uploaded again. The parent restic snapshot is the job's (and source's) newest
one, so restic reads only files whose size, mtime or inode changed. A lock left
by a killed restic of this host is removed (and said so) and the step retried
once; a lock of a live process or another host is reported, never broken.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from coldvault.config.model import Retention
from coldvault.errors import OffsiteError
from coldvault.offsite.record import Newest
from coldvault.offsite.restic import BackupSummary, OffsiteLocked, Restic, ResticStatus, tags
from coldvault.offsite.sources import CURRENT, Upload
from coldvault.progress import Progress, ProgressCallback, human_bytes

log = logging.getLogger("coldvault.offsite")
# restic's words for a --parent it does not know (the repository lost it, or the state lies).
_UNKNOWN_PARENT = re.compile(r"no matching ID found|invalid id|parent snapshot", re.IGNORECASE)
T = TypeVar("T")


@dataclass(frozen=True)
class Copied:
    """One folder's offsite copy: the restic snapshot made (None: it was already there)."""

    upload: Upload
    summary: BackupSummary | None

    def describe(self) -> str:
        """One line for logs and status."""
        what = f"{self.upload.label} {self.upload.snapshot}"
        if self.summary is None:
            return f"{what}: already in the repository"
        s = self.summary
        read = "" if s.read_bytes is None else f", {human_bytes(s.read_bytes)} read"
        return (
            f"{what}: restic snapshot {s.snapshot_id[:8]}, {s.files_new} new, "
            f"{s.files_changed} changed, {s.files_unmodified} unchanged files, "
            f"{human_bytes(s.data_added)} added{read}"
        )


def copy_upload(
    restic: Restic, upload: Upload, known: Newest | None, progress: ProgressCallback
) -> Copied:
    """Upload ``upload`` unless the repository has it.

    ``known``: the newest snapshot this host made of the source (from the offsite
    state): when it is this snapshot nothing is done, else it is the parent. Without
    it (or when restic no longer knows it) the repository is asked.
    """
    labels = tags(job=upload.job.name, source=upload.source)
    if known is not None and known.snapshot == upload.snapshot != CURRENT:
        return Copied(upload, None)
    if known is not None:
        try:
            return _backup(restic, upload, labels, known.restic_id, progress)
        except OffsiteError as exc:
            if not _UNKNOWN_PARENT.search(exc.message):
                raise
            log.info("%s: the remembered parent is gone; asking the repository", restic.where)
    existing = with_stale_lock_removed(restic, lambda: restic.snapshots(*labels))
    if upload.snapshot != CURRENT and any(s.tag("snapshot") == upload.snapshot for s in existing):
        return Copied(upload, None)
    parent = existing[-1].id if existing else None
    return _backup(restic, upload, labels, parent, progress)


def _backup(
    restic: Restic,
    upload: Upload,
    labels: tuple[str, ...],
    parent: str | None,
    progress: ProgressCallback,
) -> Copied:
    phase = f"uploading to {restic.target.name}"

    def on_status(status: ResticStatus) -> None:
        total = status.total_bytes or None
        eta = status.seconds_remaining
        progress(Progress(upload.label, phase, status.bytes_done, total, eta_seconds=eta))

    labelled = labels + tags(snapshot=upload.snapshot)
    summary = with_stale_lock_removed(
        restic, lambda: restic.backup(upload.folder, labelled, parent, on_status)
    )
    return Copied(upload, summary)


def forget(restic: Restic, copied: list[Copied], rule: Retention) -> int:
    """Apply ``rule`` to each job and source copied; how many snapshots went."""
    removed = 0
    for labels in sorted({tags(job=c.upload.job.name, source=c.upload.source) for c in copied}):
        removed += with_stale_lock_removed(restic, functools.partial(restic.forget, labels, rule))
    return removed


def with_stale_lock_removed(restic: Restic, step: Callable[[], T]) -> T:
    """Run ``step``; on a lock left by a dead restic of this host, unlock and retry once."""
    try:
        return step()
    except OffsiteLocked:
        stale = _our_stale_locks(restic)
        if stale is None:
            raise
        log.warning(
            "%s: removing the stale lock left by restic PID %s on this host (a run that was "
            "killed or crashed), then trying again",
            restic.where,
            ", ".join(str(lock.get("pid")) for lock in stale),
        )
        restic.unlock()
        return step()


def _our_stale_locks(restic: Restic) -> list[dict[str, Any]] | None:
    """The locks when every one is of a dead process on this host; else None."""
    locks = restic.locks()
    host = socket.gethostname()
    ours = [
        lock
        for lock in locks
        if lock.get("hostname") == host and isinstance(lock.get("pid"), int) and _dead(lock["pid"])
    ]
    return ours if locks and len(ours) == len(locks) else None


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
