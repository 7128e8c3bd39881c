"""``type: btrfs`` jobs: snapshot each source, send it incrementally, prune both sides."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import DiskError, JobError
from coldvault.jobs.base import JobResult, RestoreRequest, RunContext, VerifyReport
from coldvault.jobs.btrfs import (
    diskdir,
    diskstate,
    parent,
    prune,
    snapshots,
    sources,
    subvol,
    transfer,
    unsent,
)
from coldvault.jobs.btrfs.parent import ParentChoice
from coldvault.jobs.btrfs.sources import Source
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.jobs.btrfs")


@dataclass(frozen=True)
class SourceResult:
    """What one source's backup did."""

    snapshot: str
    parent: str | None
    bytes_sent: int


class BtrfsRunner:
    """Implements :class:`coldvault.jobs.base.JobRunner` for btrfs jobs."""

    def __init__(self, job: BtrfsJob, context: RunContext | None = None) -> None:
        self.job = job
        self.context = context or RunContext()

    # -- backup -------------------------------------------------------------

    def run(self, job_dir: Path, progress: ProgressCallback, cancel: CancelToken) -> JobResult:
        """Back up every source once (the service runner runs the job's hooks around it)."""
        start = time.monotonic()
        if self.job.compressed_data:
            transfer.require_compressed_data()
        srcs = sources.job_sources(self.job)
        # The mount point only: the job folder's path on the disk is never followed.
        subvol.require_btrfs(diskdir.split(job_dir, self.job.target)[0], "target")
        results: list[SourceResult] = []
        with diskdir.open_job_folder(job_dir, self.job.target, create=True) as job_folder:
            for src in srcs:
                cancel.check()
                results.append(self._back_up(src, job_folder, progress, cancel))
        sent = sum(r.bytes_sent for r in results)
        summary = "; ".join(
            f"{r.snapshot} ({'incremental from ' + r.parent if r.parent else 'full'}, "
            f"{human_bytes(r.bytes_sent)})"
            for r in results
        )
        return JobResult(
            job=self.job.name,
            snapshot=", ".join(r.snapshot for r in results) or None,
            bytes_read=sent,
            bytes_written=sent,
            duration=time.monotonic() - start,
            summary=summary,
        )

    def _back_up(
        self, src: Source, job_folder: SafeDir, progress: ProgressCallback, cancel: CancelToken
    ) -> SourceResult:
        info = sources.check(src)
        sources.warn_nested(src, info)
        src.snapshot_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(job_folder.sub(src.name, create=True))
            local = stack.enter_context(SafeDir.open_root(src.snapshot_dir))
            return self._back_up_into(src, local, target, progress, cancel)

    def _back_up_into(
        self,
        src: Source,
        local: SafeDir,
        target: SafeDir,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> SourceResult:
        state, choice = _prepare(src, local, target)
        snap = _take_snapshot(src, local, target)
        name = snap.path.name
        kind = "incremental" if choice.parent else "full"
        meter = self._meter(src, state, kind, progress)
        meter.update(0, detail=f"{name} ({kind})")
        try:
            _, sent = transfer.send_receive(
                snap,
                snap.path,
                target,
                choice.send_args(),
                compressed=self.job.compressed_data,
                meter=meter,
                cancel=cancel,
            )
        except BaseException:
            # Never sent: drop it so failed runs do not pile up snapshots on the source.
            _delete_quietly(local, target, name)
            raise
        crashpoint.reached("btrfs.accepted")
        unsent.clear(target)
        log.info("%s: received %s (%s sent)", src.path, target.child(name), human_bytes(sent))
        _save_quietly(target, diskstate.with_sent(state, kind, sent))
        # The new snapshot is now the newest one both sides share: the next parent.
        self._prune(src, local, target, protect=name)
        _relink(src, local, target)
        return SourceResult(name, choice.parent.path.name if choice.parent else None, sent)

    def _prune(self, src: Source, local: SafeDir, target: SafeDir, *, protect: str) -> None:
        """Retention on both sides; the source keeps what other disks need as their parent."""
        rules = [(local, "source", self.job.source_retention, set(self.context.held_by(src.name)))]
        if self.context.disk_retention:
            rules.insert(0, (target, "target", self.job.target_retention, set()))
        else:
            log.warning(
                "%s: retention on the backup disk is paused (disk went back in time)", src.path
            )
        for folder, side, rule, keep in rules:
            found = snapshots.scan(folder, src.name)
            prune.prune(folder, found, src.name, rule, protect={protect, *keep}, side=side)

    def _meter(
        self, src: Source, state: diskstate.DiskState, kind: str, progress: ProgressCallback
    ) -> ProgressMeter:
        """A meter whose total is an estimate: a send stream announces no size.

        The estimate is the last send of the same kind to this disk; a first full send
        takes the space used on the source's filesystem (an upper bound, as snapshots
        and other subvolumes share it).
        """
        estimate = state.sent.get(kind)
        if estimate is None and kind == "full":
            with contextlib.suppress(OSError):
                st = os.statvfs(src.path)
                estimate = (st.f_blocks - st.f_bfree) * st.f_frsize
        return ProgressMeter(self.job.name, "sending", progress, estimate, estimate=True)

    # -- the other commands ---------------------------------------------------

    def restore(
        self,
        job_dir: Path,
        request: RestoreRequest,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> str:
        """Send a received snapshot back to a folder on a Btrfs filesystem."""
        from coldvault.jobs.btrfs.restore import restore

        return restore(self.job, job_dir, request, progress, cancel)

    def verify(
        self,
        job_dir: Path,
        snapshot: str | None,
        all_snapshots: bool,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> VerifyReport:
        """Check received snapshots are complete and every file in them reads back."""
        from coldvault.jobs.btrfs.verify import verify

        return verify(self.job, job_dir, snapshot, all_snapshots, progress, cancel)

    def list(self, job_dir: Path) -> str:
        """Both sides' snapshots, which pairs correlate, and sizes."""
        from coldvault.jobs.btrfs.listing import listing

        return listing(self.job, job_dir, self.context)


def _prepare(
    src: Source, local: SafeDir, target: SafeDir
) -> tuple[diskstate.DiskState, ParentChoice]:
    """Clean up after earlier runs, then pick the parent among good copies."""
    received = snapshots.remove_partial(target, src.name)
    snapshots.report(received)
    for folder in (local, target):
        snapshots.leftover_links(folder)
    unsent.clean(local, target, snapshots.scan(local, src.name), received)
    state = diskstate.load(target)
    local_snaps = snapshots.scan(local, src.name).snapshots
    choice = parent.choose(local_snaps, received.complete(), state.damaged)
    _log_choice(src, target, choice)
    return state, choice


def _take_snapshot(src: Source, local: SafeDir, target: SafeDir) -> Subvolume:
    """The new read-only source snapshot, marked unsent on the disk first."""
    name = snapshots.new_name([local, target], src.name, datetime.now(UTC))
    unsent.mark(target, name)
    subvol.snapshot_readonly(src.path, src.snapshot_dir / name)
    snap = subvol.info_at(local, name)
    if snap is None:
        raise JobError(f"snapshot {src.snapshot_dir / name} vanished after it was made")
    crashpoint.reached("btrfs.snapshot-taken")
    return snap


def _relink(src: Source, local: SafeDir, target: SafeDir) -> None:
    """``latest``/``previous`` on the disk first, then on the source."""
    newest_target = [s.path.name for s in reversed(snapshots.scan(target, src.name).complete())]
    snapshots.update_links(target, newest_target)
    crashpoint.reached("btrfs.links-target")
    newest_local = [s.path.name for s in reversed(snapshots.scan(local, src.name).snapshots)]
    snapshots.update_links(local, newest_local)


def _log_choice(src: Source, target: SafeDir, choice: ParentChoice) -> None:
    for name in choice.damaged:
        log.warning(
            "%s: the copy of %s on the disk is marked damaged by verify: not used as a parent",
            src.path,
            name,
        )
    if choice.parent is None:
        how = "no good snapshot" if choice.damaged else "no snapshot"
        log.info("%s: %s shared with %s: sending in full", src.path, how, target.path)
    else:
        older = " (an older good parent)" if choice.damaged else ""
        log.info("%s: sending incrementally against %s%s", src.path, choice.parent.path.name, older)


def _save_quietly(target: SafeDir, state: diskstate.DiskState) -> None:
    """The send sizes only feed progress estimates: a failure to save them is logged."""
    try:
        diskstate.save(target, state)
    except (OSError, DiskError) as exc:
        log.warning("cannot save %s: %s", target.child(diskstate.FILE), exc)


def _delete_quietly(local: SafeDir, target: SafeDir, name: str) -> None:
    try:
        if subvol.info_at(local, name) is not None:
            subvol.destroy(local, name)
        unsent.clear(target)
    except (JobError, OSError) as exc:
        log.error("could not delete unsent snapshot %s: %s", local.child(name), exc)
