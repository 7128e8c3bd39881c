"""``type: btrfs`` jobs: snapshot each source, send it incrementally, prune both sides."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import CommandError, JobError
from coldvault.jobs.base import JobResult, RestoreRequest, VerifyReport
from coldvault.jobs.btrfs import parent, prune, snapshots, sources, subvol, transfer
from coldvault.jobs.btrfs.sources import Source
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.system import proc
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

    def __init__(self, job: BtrfsJob) -> None:
        self.job = job

    # -- backup -------------------------------------------------------------

    def run(self, job_dir: Path, progress: ProgressCallback, cancel: CancelToken) -> JobResult:
        """Back up every source once; the job's before/after hooks run around it."""
        start = time.monotonic()
        if self.job.compressed_data:
            transfer.require_compressed_data()
        srcs = sources.job_sources(self.job)
        subvol.require_btrfs(job_dir, "target")
        job_dir.mkdir(parents=True, exist_ok=True)
        results: list[SourceResult] = []
        try:
            # Inside the try: a before hook that failed half-way still gets its after hooks.
            _run_hooks(self.job.hooks.before, "before", self.job.name, cancel)
            for src in srcs:
                cancel.check()
                results.append(self._back_up(src, job_dir, progress, cancel))
        except BaseException:
            _run_after_hooks(self.job, failing=True)
            raise
        _run_after_hooks(self.job, failing=False)
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
        self, src: Source, job_dir: Path, progress: ProgressCallback, cancel: CancelToken
    ) -> SourceResult:
        info = sources.check(src)
        sources.warn_nested(src, info)
        target = src.backup_dir(job_dir)
        target.mkdir(parents=True, exist_ok=True)
        src.snapshot_dir.mkdir(parents=True, exist_ok=True)
        received = snapshots.remove_partial(target, src.name)
        snapshots.update_links(target, [s.path.name for s in reversed(received)])
        choice = parent.choose(snapshots.scan(src.snapshot_dir, src.name), received)
        if choice.parent is None:
            log.info("%s: no snapshot shared with %s: sending in full", src.path, target)
        else:
            log.info("%s: sending incrementally against %s", src.path, choice.parent.path.name)

        name = snapshots.new_name([src.snapshot_dir, target], src.name, datetime.now(UTC))
        subvol.snapshot_readonly(src.path, src.snapshot_dir / name)
        snap = subvol.info(src.snapshot_dir / name)
        # No total: `btrfs filesystem du` would first walk the whole snapshot, which
        # costs time on every full send; progress shows bytes and rate instead.
        meter = ProgressMeter(self.job.name, "sending", progress)
        meter.update(0, detail=f"{name} ({'incremental' if choice.parent else 'full'})")
        try:
            _, sent = transfer.send_receive(
                snap,
                target,
                choice.send_args(),
                compressed=self.job.compressed_data,
                meter=meter,
                cancel=cancel,
            )
        except BaseException:
            # Never sent: drop it so failed runs do not pile up snapshots on the source.
            _delete_quietly(snap.path)
            raise
        log.info("%s: received %s (%s sent)", src.path, target / name, human_bytes(sent))

        # The new snapshot is now the newest one both sides share: the next parent.
        prune.prune(target, src.name, self.job.target_retention, protect={name})
        prune.prune(src.snapshot_dir, src.name, self.job.source_retention, protect={name})
        self._relink(src, target)
        return SourceResult(name, choice.parent.path.name if choice.parent else None, sent)

    @staticmethod
    def _relink(src: Source, target: Path) -> None:
        for folder in (src.snapshot_dir, target):
            names = [n.name for n in reversed(snapshots.names_in(folder, src.name))]
            snapshots.update_links(folder, names)

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

        return listing(self.job, job_dir)


def _delete_quietly(path: Path) -> None:
    try:
        subvol.delete([path])
    except CommandError as exc:
        log.error("could not delete unsent snapshot %s: %s", path, exc.message)


def _run_after_hooks(job: BtrfsJob, *, failing: bool) -> None:
    """``after`` hooks run whenever ``before`` ran; while failing, their errors are logged."""
    try:
        _run_hooks(job.hooks.after, "after", job.name, None)
    except JobError as exc:
        if not failing:
            raise
        log.error("%s", exc.message)


def _run_hooks(
    hooks: tuple[tuple[str, ...], ...], kind: str, job: str, cancel: CancelToken | None
) -> None:
    for argv in hooks:
        log.info("%s: running %s hook: %s", job, kind, " ".join(argv))
        try:
            proc.run(
                list(argv),
                cancel=cancel,
                env={"COLDVAULT_JOB": job},
                capture_stdout=False,
                keep_locale=True,  # the user's command: the user's locale
            )
        except CommandError as exc:
            raise JobError(f"{kind} hook of job {job} failed: {exc.message}") from None
