"""``type: image`` jobs: the :class:`~coldvault.jobs.base.JobRunner` for partition images."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from coldvault.config.model import ImageJob
from coldvault.errors import JobError
from coldvault.jobs.base import JobResult, RestoreRequest, VerifyReport
from coldvault.jobs.image import legacy, listing, snapshots
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.backup import Layout, Pass
from coldvault.jobs.image.manifest import Manifest
from coldvault.jobs.image.parts import part_indexes, remove_temporaries
from coldvault.jobs.image.reader import available_algorithm
from coldvault.jobs.image.restore import restore
from coldvault.jobs.image.source import hooks, open_source
from coldvault.jobs.image.verify import Checked, verify_folder
from coldvault.jobs.image.verify_steps import NOT_ADOPTED
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
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
        job_dir.mkdir(parents=True, exist_ok=True)
        algorithm = available_algorithm(job.hash)
        with hooks(job, cancel), open_source(job) as src:
            if job.snapshots > 0:
                work, base_dir, resumed = snapshots.start(job_dir)
                if resumed:
                    log.info("%s: resuming the interrupted %s", job.name, work)
            else:
                work, base_dir, resumed = job_dir, None, False
            remove_temporaries(work)
            base = self._base_manifest(work, base_dir, resumed, algorithm, cancel)
            if base is not None and base.source_size != src.size:
                log.info(
                    "%s: source size changed from %d to %d bytes",
                    job.name,
                    base.source_size,
                    src.size,
                )
            layout = Layout(src.size, job.part_size, job.block_size)
            template = Manifest(
                source_size=src.size,
                part_size=job.part_size,
                block_size=job.block_size,
                algorithm=algorithm,
                parts=(),
                source=str(job.source),
            )
            meter = ProgressMeter(job.name, "reading", progress, src.size)
            records = base.parts if base is not None and base.part_size == job.part_size else ()
            one = Pass(
                work,
                src.fd,
                layout,
                algorithm,
                records,
                keep_null=job.keep_null_parts,
                meter=meter,
                cancel=cancel,
                template=template,
            )
            parts = one.run()
            stats = one.stats
            now = datetime.now()
            manifest_mod.save(
                work,
                replace(
                    template,
                    parts=tuple(parts),
                    created=now.isoformat(timespec="seconds"),
                    changed=stats.changed,
                    bytes_read=stats.bytes_read,
                    bytes_written=stats.bytes_written,
                    complete=True,
                ),
            )
            name = None
            if job.snapshots > 0:
                name = snapshots.finish(job_dir, work, now).name
                snapshots.prune(job_dir, job)
        summary = (
            f"{stats.parts} parts, {stats.changed} changed, "
            f"{human_bytes(stats.bytes_read)} read, {human_bytes(stats.bytes_written)} written"
            + (f", {stats.removed} removed (source shrank)" if stats.removed else "")
            + (f" -> {name}" if name else "")
        )
        log.info("%s: %s", job.name, summary)
        return JobResult(
            job.name, name, stats.bytes_read, stats.bytes_written, time.monotonic() - began, summary
        )

    def _base_manifest(
        self,
        work: Path,
        base_dir: Path | None,
        resumed: bool,
        algorithm: str,
        cancel: CancelToken,
    ) -> Manifest | None:
        """The records the run compares against; adopts folders that have no manifest."""
        found = manifest_mod.load(work) if resumed or base_dir is None else None
        if found is None and base_dir is not None:
            found = manifest_mod.load(base_dir)
            if found is None:  # a snapshot of the original script: hash it once, keep it
                found = self._adopt(base_dir, algorithm, cancel)
                manifest_mod.save(base_dir, found)
        if found is None and part_indexes(work):
            found = self._adopt(work, algorithm, cancel)
        if found is not None and found.algorithm != algorithm:
            log.info(
                "%s: manifest uses %s, rehashing with %s", self.job.name, found.algorithm, algorithm
            )
            found = self._adopt(work, algorithm, cancel)
        return found

    def _adopt(self, folder: Path, algorithm: str, cancel: CancelToken) -> Manifest:
        return legacy.adopt(
            folder,
            part_size=self.job.part_size,
            block_size=self.job.block_size,
            algorithm=algorithm,
            cancel=cancel,
        )

    # ---- restore, verify, list -------------------------------------------------------------

    def _folder(self, job_dir: Path, snapshot: str | None) -> Path:
        if self.job.snapshots == 0 and snapshot in (None, "latest"):
            folder = job_dir
        elif snapshot in (None, "latest"):
            newest = snapshots.newest(job_dir)
            if newest is None:
                raise JobError(
                    f"no completed snapshot in {job_dir}",
                    hint="run a backup first (`coldvault run JOB`)",
                )
            folder = newest
        else:
            folder = job_dir / str(snapshot)
        if not folder.is_dir():
            raise JobError(f"no snapshot {snapshot} in {job_dir}", hint="see `coldvault list JOB`")
        return folder

    def _manifest_or_legacy(self, folder: Path) -> Manifest:
        found = manifest_mod.load(folder)
        if found is not None:
            return found
        # The original script's folder: no hashes to check, sizes from the job.
        indexes = part_indexes(folder)
        if not indexes:
            raise JobError(f"{folder} holds no parts")
        count = indexes[-1] + 1
        last = (folder / f"part_{count - 1:08d}").stat().st_size or self.job.part_size
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
        folder = self._folder(job_dir, request.snapshot)
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
            f"restored {folder.name} ({human_bytes(manifest.source_size)}, "
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
        """Re-hash stored parts against their manifests."""
        if all_snapshots:
            chosen = listing.folders(job_dir, self.job.snapshots)
            if not chosen:
                raise JobError(f"no backups in {job_dir}", hint="run a backup first")
        else:
            chosen = [self._folder(job_dir, snapshot)]
        meter = ProgressMeter(self.job.name, "verifying", progress)
        checked: Checked = {}
        items, problems = 0, []
        for folder in chosen:
            found = manifest_mod.load(folder)
            if found is None:  # not damage: nothing to compare against yet (no exit 6)
                log.warning("%s: %s; its parts were not checked", folder, NOT_ADOPTED)
                continue
            count, found_problems = verify_folder(
                folder, found, checked=checked, meter=meter, cancel=cancel
            )
            items += count
            problems += found_problems
        meter.emit()
        return VerifyReport(self.job.name, tuple(f.name for f in chosen), items, tuple(problems))

    def list(self, job_dir: Path) -> str:
        """A table of the job's snapshots."""
        return listing.table(job_dir, self.job.snapshots)
