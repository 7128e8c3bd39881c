"""``type: image`` jobs: the :class:`~coldvault.jobs.base.JobRunner` for partition images."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from coldvault.config.model import ImageJob
from coldvault.errors import JobError
from coldvault.jobs.base import JobResult, RestoreRequest, VerifyReport
from coldvault.jobs.image import legacy, listing, repair, repair_flags, snapshots
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.backup import (
    Layout,
    Pass,
    Stats,
    drop_unneeded_parts,
    free_unshared_parts,
)
from coldvault.jobs.image.jobdir import open_job_folder
from coldvault.jobs.image.manifest import Manifest, ManifestDamaged, PartRecord
from coldvault.jobs.image.parts import DiskFull, part_indexes, part_name, remove_temporaries, scan
from coldvault.jobs.image.reader import available_algorithm
from coldvault.jobs.image.repair import RepairOutcome
from coldvault.jobs.image.restore import restore
from coldvault.jobs.image.source import OpenSource, hooks, open_source
from coldvault.jobs.image.verify import Checked, verify_folder
from coldvault.jobs.image.verify_steps import ABANDONED, NOT_ADOPTED
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir, UnexpectedEntry
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")


class ImageRunner:
    """Back up, restore, verify and list one image job."""

    def __init__(self, job: ImageJob) -> None:
        if job.part_size <= 0 or job.block_size <= 0 or job.part_size % job.block_size:
            raise JobError(
                f"job {job.name}: part_size {job.part_size} must be a positive multiple of "
                f"block_size {job.block_size}"
            )
        self.job = job

    # ---- backup -------------------------------------------------------------------------

    def run(self, job_dir: Path, progress: ProgressCallback, cancel: CancelToken) -> JobResult:
        """Back up the source once into a new snapshot (or the job folder)."""
        began = time.monotonic()
        job = self.job
        algorithm = available_algorithm(job.hash)
        with (
            open_job_folder(job_dir, job.target, create=True) as top,
            hooks(job, cancel),
            open_source(job) as src,
        ):
            if job.snapshots > 0:
                snapshots.finish_deletions(top, job.name)
                snapshots.report_strays(top, job.name)
            stats, name, repaired = self._backup(top, src, algorithm, progress, cancel)
        summary = (
            f"{stats.parts} parts, {stats.changed} changed, "
            f"{human_bytes(stats.bytes_read)} read, {human_bytes(stats.bytes_written)} written"
            + (f", {stats.removed} removed (source shrank)" if stats.removed else "")
            + (f"; {repaired.summary()}" if repaired else "")
            + (f" -> {name}" if name else "")
        )
        log.info("%s: %s", job.name, summary)
        return JobResult(
            job.name, name, stats.bytes_read, stats.bytes_written, time.monotonic() - began, summary
        )

    def _backup(
        self,
        top: SafeDir,
        src: OpenSource,
        algorithm: str,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> tuple[Stats, str | None, RepairOutcome | None]:
        """One pass into the work folder, then the snapshot's completion and retention."""
        job = self.job
        flags = self._load_flags(top)
        repaired = None
        with contextlib.ExitStack() as stack:
            work, base, resumed = self._prepare(stack, top)
            _refuse_odd_parts(work)
            remove_temporaries(work)
            layout = Layout(src.size, job.part_size, job.block_size)
            removed = drop_unneeded_parts(work, layout.count) if job.snapshots > 0 else 0
            found, previous = self._base_manifest(work, base, resumed, algorithm, cancel)
            if previous is not None and previous != src.size:
                log.info(
                    "%s: source size changed from %d to %d bytes", job.name, previous, src.size
                )
            template = Manifest(
                source_size=src.size,
                part_size=job.part_size,
                block_size=job.block_size,
                algorithm=algorithm,
                parts=(),
                source=str(job.source),
            )
            meter = ProgressMeter(job.name, "reading", progress, src.size)
            known = found.parts if found is not None and found.part_size == job.part_size else ()
            records = _forget(known, repair.forced(flags))
            parts, stats = self._pass(
                work, src, layout, algorithm, records, meter, cancel, template
            )
            if job.snapshots == 0:
                stats.removed = _remove_extra(work, layout.count)
            else:
                stats.removed = removed
            now = datetime.now()
            saved = _save_complete(work, template, parts, stats, now)
            if flags:
                repaired = self._repair(top, work, saved, flags)
        name = None
        if job.snapshots > 0:
            crashpoint.reached("image.before-finish")
            name = snapshots.finish(top, now)
            snapshots.prune(top, job)
        return stats, name, repaired

    def _load_flags(self, top: SafeDir) -> list[repair_flags.Flag]:
        """The parts verification flagged; a damaged list is reported and ignored."""
        flags, damaged = repair_flags.load(top)
        if damaged:
            log.warning(
                "%s: the repair list is not usable and was ignored (%s); "
                "`coldvault verify JOB --all` records the damaged parts again",
                self.job.name,
                damaged,
            )
        elif flags:
            log.info(
                "%s: %d part(s) flagged by verification are written anew",
                self.job.name,
                len(repair.forced(flags)),
            )
        return flags

    def _repair(
        self, top: SafeDir, work: SafeDir, saved: Manifest, flags: list[repair_flags.Flag]
    ) -> RepairOutcome:
        """Heal older snapshots from this run's parts; keep what stays unrecoverable."""
        key = "." if self.job.snapshots == 0 else snapshots.INPROGRESS
        outcome = repair.repair_older(top, work, key, saved, flags)
        repair_flags.save(top, outcome.remaining)
        log.info("%s: %s", self.job.name, outcome.summary())
        for line in outcome.unrecoverable:
            log.warning(
                "%s: %s stays damaged: unrecoverable (the source no longer holds its bytes)",
                self.job.name,
                line,
            )
        return outcome

    def _prepare(
        self, stack: contextlib.ExitStack[bool | None], top: SafeDir
    ) -> tuple[SafeDir, SafeDir | None, bool]:
        """(work folder, base snapshot, resumed): ``snapshot-inprogress`` linked to the base."""
        if self.job.snapshots == 0:
            return stack.enter_context(top.sub(".")), None, False
        base_name = snapshots.newest(top)
        work, resumed = snapshots.open_work(top)
        stack.enter_context(work)
        if resumed:
            log.info("%s: resuming the interrupted %s", self.job.name, work.path)
        base = stack.enter_context(top.sub(base_name)) if base_name else None
        if base is not None:
            linked = snapshots.link_missing_parts(base, work)
            log.debug("linked %d parts of %s into %s", linked, base_name, work.path)
        return work, base, resumed

    def _pass(
        self,
        work: SafeDir,
        src: OpenSource,
        layout: Layout,
        algorithm: str,
        records: Sequence[PartRecord | None],
        meter: ProgressMeter,
        cancel: CancelToken,
        template: Manifest,
    ) -> tuple[list[PartRecord | None], Stats]:
        """Run the pass; when the disk fills, free unshared in-progress parts and retry once."""

        def one(base: Sequence[PartRecord | None]) -> Pass:
            return Pass(
                work,
                src.fd,
                layout,
                algorithm,
                base,
                keep_null=self.job.keep_null_parts,
                meter=meter,
                cancel=cancel,
                template=template,
            )

        first = one(records)
        try:
            return first.run(), first.stats
        except DiskFull:
            if self.job.snapshots == 0:
                raise
            count, size = free_unshared_parts(work, first.confirmed)
            if not count:
                raise
        log.warning(
            "%s: backup disk full: freed %d in-progress parts (%s) that no snapshot shares "
            "and this run had not confirmed yet; trying once more",
            self.job.name,
            count,
            human_bytes(size),
        )
        second = one(first.records)
        parts = second.run()
        second.stats.changed += first.stats.changed
        second.stats.bytes_written += first.stats.bytes_written
        return parts, second.stats

    def _base_manifest(
        self,
        work: SafeDir,
        base: SafeDir | None,
        resumed: bool,
        algorithm: str,
        cancel: CancelToken,
    ) -> tuple[Manifest | None, int | None]:
        """(records the run compares against, the source size of the last complete backup).

        A folder without a manifest is adopted (its parts hashed once); a damaged
        manifest is not trusted: the parts are hashed again from the work folder, so
        only parts whose stored bytes equal the source are kept.
        """
        previous = None
        found = self._load(work) if resumed or base is None else None
        if found is not None and found.complete and not found.adopted:
            previous = found.source_size
        if base is not None:
            try:
                base_manifest = manifest_mod.load(base)
            except ManifestDamaged as exc:
                log.warning("%s: %s; its parts are hashed again", self.job.name, exc.message)
            else:
                if base_manifest is None:  # a snapshot of the original script: hash it once
                    base_manifest = self._adopt(base, algorithm, cancel)
                    manifest_mod.save(base, base_manifest)
                elif not base_manifest.adopted:
                    previous = base_manifest.source_size
                found = found or base_manifest
        if found is None and part_indexes(work):
            found = self._adopt(work, algorithm, cancel)
        if found is not None and found.algorithm != algorithm:
            log.info(
                "%s: manifest uses %s, rehashing with %s", self.job.name, found.algorithm, algorithm
            )
            found = self._adopt(work, algorithm, cancel)
        return found, previous

    def _load(self, folder: SafeDir) -> Manifest | None:
        """The manifest of ``folder``; a damaged one is logged and treated as absent."""
        try:
            return manifest_mod.load(folder)
        except ManifestDamaged as exc:
            log.warning("%s: %s; its parts are hashed again", self.job.name, exc.message)
            return None

    def _adopt(self, folder: SafeDir, algorithm: str, cancel: CancelToken) -> Manifest:
        return legacy.adopt(
            folder,
            part_size=self.job.part_size,
            block_size=self.job.block_size,
            algorithm=algorithm,
            cancel=cancel,
        )

    # ---- restore, verify, list -------------------------------------------------------------

    def _folder_name(self, top: SafeDir, snapshot: str | None) -> str:
        if self.job.snapshots == 0 and snapshot in (None, "latest"):
            return "."
        if snapshot in (None, "latest"):
            newest = snapshots.newest(top)
            if newest is None:
                raise JobError(
                    f"no completed snapshot in {top.path}",
                    hint="run a backup first (`coldvault run JOB`)",
                )
            return newest
        name = str(snapshot)
        kind = top.kind(name) if snapshots.snapshot_time(name) is not None else None
        if kind != "folder":
            raise JobError(
                f"no snapshot {name} in {top.path}"
                + (f" (a {kind} there is not a snapshot folder)" if kind else ""),
                hint="see `coldvault list JOB`",
            )
        return name

    def _manifest_or_legacy(self, folder: SafeDir) -> Manifest:
        found = manifest_mod.load(folder)  # ManifestDamaged: restore refuses (see README)
        if found is not None:
            return found
        # The original script's folder: no hashes to check, sizes from the job.
        indexes = part_indexes(folder)
        if not indexes:
            raise JobError(f"{folder.path} holds no parts")
        count = indexes[-1] + 1
        last_st = folder.lstat(part_name(count - 1))
        last = (last_st.st_size if last_st else 0) or self.job.part_size
        return Manifest(
            source_size=(count - 1) * self.job.part_size + last,
            part_size=self.job.part_size,
            block_size=self.job.block_size,
            algorithm=available_algorithm(self.job.hash),
            parts=(None,) * count,
        )

    def restore(
        self,
        job_dir: Path,
        request: RestoreRequest,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> str:
        """Write a snapshot back to ``request.dest``."""
        with open_job_folder(job_dir, self.job.target, create=False) as top:
            name = self._folder_name(top, request.snapshot)
            with top.sub(name) as folder:
                if name != "." and snapshots.abandoned(folder):
                    raise JobError(
                        f"{folder.path} is {ABANDONED}",
                        hint="restore another snapshot (`coldvault list JOB`)",
                    )
                manifest = self._manifest_or_legacy(folder)
                meter = ProgressMeter(self.job.name, "restoring", progress, manifest.source_size)
                written = restore(
                    folder,
                    manifest,
                    request.dest,
                    start_part=request.start_part,
                    skip_zeros=request.skip_zeros,
                    meter=meter,
                    cancel=cancel,
                )
        return (
            f"restored {folder.path.name} ({human_bytes(manifest.source_size)}, "
            f"{human_bytes(written)} written) to {request.dest}"
        )

    def verify(
        self,
        job_dir: Path,
        snapshot: str | None,
        all_snapshots: bool,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> VerifyReport:
        """Re-hash stored parts against their manifests; a damaged manifest is a problem."""
        with open_job_folder(job_dir, self.job.target, create=False) as top:
            if all_snapshots:
                chosen = listing.folders(top, self.job.snapshots)
                if not chosen:
                    raise JobError(f"no backups in {top.path}", hint="run a backup first")
            else:
                chosen = [self._folder_name(top, snapshot)]
            if self.job.snapshots:
                snapshots.report_strays(top, self.job.name)
            meter = ProgressMeter(self.job.name, "verifying", progress)
            checked: Checked = {}
            items, problems, flags = 0, [], []
            for name in chosen:
                damaged: list[tuple[int, str]] = []
                with top.sub(name) as folder:
                    if name != "." and snapshots.abandoned(folder):
                        log.warning("%s: %s", folder.path, ABANDONED)
                        continue
                    count, found = self._verify_one(folder, checked, meter, cancel, damaged)
                items += count
                problems += found
                flags += [repair_flags.Flag(name, i, why) for i, why in damaged]
            meter.emit()
            repair_flags.record(top, flags, lambda s, _: s in chosen, self.job.name)
        shown = tuple(top.path.name if n == "." else n for n in chosen)
        return VerifyReport(self.job.name, shown, items, tuple(problems))

    def _verify_one(
        self,
        folder: SafeDir,
        checked: Checked,
        meter: ProgressMeter,
        cancel: CancelToken,
        damaged: list[tuple[int, str]],
    ) -> tuple[int, list[str]]:
        try:
            found = manifest_mod.load(folder)
        except ManifestDamaged as exc:
            return 0, [f"{exc.path}: damaged manifest: {exc.why}"]
        if found is None:  # not damage: nothing to compare against yet (no exit 6)
            log.warning("%s: %s; its parts were not checked", folder.path, NOT_ADOPTED)
            return 0, []
        return verify_folder(
            folder, found, checked=checked, meter=meter, cancel=cancel, damaged=damaged
        )

    def list(self, job_dir: Path) -> str:
        """A table of the job's snapshots."""
        try:
            top = open_job_folder(job_dir, self.job.target, create=False)
        except JobError:
            return f"no backups yet in {job_dir}"
        with top:
            return listing.table(top, self.job.snapshots)


def _save_complete(
    work: SafeDir,
    template: Manifest,
    parts: Sequence[PartRecord | None],
    stats: Stats,
    now: datetime,
) -> Manifest:
    """The manifest that makes ``work`` a complete backup (saved, and returned)."""
    done = replace(
        template,
        parts=tuple(parts),
        created=now.isoformat(timespec="seconds"),
        changed=stats.changed,
        bytes_read=stats.bytes_read,
        bytes_written=stats.bytes_written,
        complete=True,
    )
    manifest_mod.save(work, done)
    return done


def _forget(records: Sequence[PartRecord | None], indexes: set[int]) -> list[PartRecord | None]:
    """``records`` without those of ``indexes``: flagged parts are written anew, never trusted."""
    return [None if i in indexes else r for i, r in enumerate(records)]


def _refuse_odd_parts(work: SafeDir) -> None:
    """A part name in the work folder that is not a regular file ends the run (left alone)."""
    _, odd = scan(work)
    if odd:
        name, kind = odd[0]
        raise UnexpectedEntry(work.child(name), kind, "part file")


def _remove_extra(work: SafeDir, count: int) -> int:
    """``snapshots: 0``: parts past the end of a shrunk source go after the pass."""
    return drop_unneeded_parts(work, count)
