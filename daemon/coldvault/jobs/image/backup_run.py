"""One image backup run: work folder, base manifest, the pass, completion, repair, retention.

:class:`ImageBackup` strings the modules together (snapshots, legacy adoption,
:class:`~coldvault.jobs.image.backup.Pass`, repair); the job runner only opens the
job folder and the source around it, as the Btrfs runner does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from coldvault.config.model import ImageJob
from coldvault.jobs.image import legacy, repair, repair_flags, snapshots
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.backup import (
    Layout,
    Pass,
    Stats,
    drop_unneeded_parts,
    free_unshared_parts,
)
from coldvault.jobs.image.manifest import Manifest, ManifestDamaged, PartRecord
from coldvault.jobs.image.parts import DiskFull, part_indexes, remove_temporaries, scan
from coldvault.jobs.image.repair import RepairOutcome
from coldvault.jobs.image.source import OpenSource
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir, UnexpectedEntry
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")


class ImageBackup:
    """Back up one image job's source into its (open) job folder."""

    def __init__(self, job: ImageJob, *, prune: bool = True) -> None:
        self.job = job
        self.prune = prune  # False: the disk went back in time, retention deletes nothing

    def run(
        self,
        top: SafeDir,
        src: OpenSource,
        algorithm: str,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> tuple[Stats, str | None, RepairOutcome | None]:
        """One pass into the work folder, then the snapshot's completion and retention."""
        flags = self._load_flags(top)
        with contextlib.ExitStack() as stack:
            work, base, resumed = self._prepare(stack, top)
            _refuse_odd_parts(work)
            remove_temporaries(work)
            stats, saved, now = self._fill(
                work, base, resumed, src, algorithm, progress, cancel, flags
            )
            repaired = self._repair(top, work, saved, flags) if flags else None
        name = None
        if self.job.snapshots > 0:
            crashpoint.reached("image.before-finish")
            name = snapshots.finish(top, now)
            if self.prune:
                snapshots.prune(top, self.job)
        return stats, name, repaired

    def _fill(
        self,
        work: SafeDir,
        base: SafeDir | None,
        resumed: bool,
        src: OpenSource,
        algorithm: str,
        progress: ProgressCallback,
        cancel: CancelToken,
        flags: list[repair_flags.Flag],
    ) -> tuple[Stats, Manifest, datetime]:
        """The pass into ``work``; (stats, the complete manifest saved, its time)."""
        job = self.job
        layout = Layout(src.size, job.part_size, job.block_size)
        removed = drop_unneeded_parts(work, layout.count) if job.snapshots > 0 else 0
        found, previous = self._base_manifest(work, base, resumed, algorithm, cancel)
        if previous is not None and previous != src.size:
            log.info("%s: source size changed from %d to %d bytes", job.name, previous, src.size)
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
        parts, stats = self._pass(work, src, layout, algorithm, records, meter, cancel, template)
        if job.snapshots == 0:
            stats.removed = _remove_extra(work, layout.count)
        else:
            stats.removed = removed
        now = datetime.now()
        return stats, _save_complete(work, template, parts, stats, now), now

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
            log.warning("%s: unrecoverable, stays damaged: %s", self.job.name, line)
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
