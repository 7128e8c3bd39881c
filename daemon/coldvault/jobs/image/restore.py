"""Restore: write a snapshot's parts back to a device or file, verifying each part's hash."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from coldvault import platform
from coldvault.config.model import ImageJob
from coldvault.errors import IntegrityError, JobError
from coldvault.jobs.base import RestoreRequest
from coldvault.jobs.image import legacy, snapshots
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.backup import Layout
from coldvault.jobs.image.destination import open_destination, write_failed
from coldvault.jobs.image.manifest import Manifest, PartRecord
from coldvault.jobs.image.parts import part_name
from coldvault.jobs.image.reader import available_algorithm, new_hasher, read_full
from coldvault.jobs.jobdir import open_job_folder
from coldvault.progress import ProgressCallback, ProgressMeter, human_bytes
from coldvault.system.beneath import SafeDir, UnexpectedEntry
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")


def restore_job(
    job: ImageJob,
    job_dir: Path,
    request: RestoreRequest,
    progress: ProgressCallback,
    cancel: CancelToken,
) -> str:
    """``coldvault restore``: write a snapshot back to ``request.dest``; a line to show."""
    with open_job_folder(job_dir, job.target, create=False) as top:
        name = snapshots.chosen(top, job, request.snapshot)
        with top.sub(name) as folder:
            if name != "." and snapshots.abandoned(folder):
                raise JobError(
                    f"{folder.path} is {snapshots.ABANDONED}",
                    hint="restore another snapshot (`coldvault list JOB`)",
                )
            manifest = manifest_mod.load(folder)  # ManifestDamaged: refused (see README)
            if manifest is None:  # the original script's folder: no hashes to check
                manifest = legacy.unverified_manifest(
                    folder,
                    part_size=job.part_size,
                    block_size=job.block_size,
                    algorithm=available_algorithm(job.hash),
                )
            meter = ProgressMeter(job.name, "restoring", progress, manifest.source_size)
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


def restore(
    folder: SafeDir,
    manifest: Manifest,
    dest: Path,
    *,
    start_part: int,
    skip_zeros: bool,
    meter: ProgressMeter,
    cancel: CancelToken,
) -> int:
    """Write the parts of ``folder`` from ``start_part`` on to ``dest``; return bytes written."""
    layout = Layout(manifest.source_size, manifest.part_size, manifest.block_size)
    if not 0 <= start_part <= layout.count:
        raise JobError(f"--start-part {start_part} is outside 0..{layout.count}")
    fd, extend = open_destination(dest, manifest.source_size)
    written = 0
    try:
        platform.begin_streaming(fd)
        buf = bytearray(manifest.block_size)
        for index in range(start_part, layout.count):
            cancel.check()
            start, length = layout.span(index)
            record = manifest.parts[index] if index < len(manifest.parts) else None
            written += _restore_part(
                fd, folder, index, start, length, record, manifest, buf, skip_zeros
            )
            platform.drop_cache(fd, start, length)
            meter.update(
                start + length - layout.span(start_part)[0],
                written,
                f"part {index + 1} of {layout.count}",
            )
        if extend:  # never shrink: a larger destination file keeps its tail
            os.ftruncate(fd, manifest.source_size)
        os.fsync(fd)
    except OSError as exc:
        raise write_failed(dest, exc) from None
    finally:
        os.close(fd)
    meter.emit()
    return written


def _restore_part(
    fd: int,
    folder: SafeDir,
    index: int,
    start: int,
    length: int,
    record: PartRecord | None,
    manifest: Manifest,
    buf: bytearray,
    skip_zeros: bool,
) -> int:
    path = folder.child(part_name(index))
    try:
        src = folder.open_file(part_name(index))  # a symlink or FIFO is refused, never read
    except FileNotFoundError:
        raise IntegrityError(
            f"{path} is missing", hint="restore an older snapshot (`coldvault list JOB`)"
        ) from None
    except UnexpectedEntry as exc:
        raise IntegrityError(
            exc.message, hint="restore an older snapshot (`coldvault list JOB`)"
        ) from None
    try:
        stored = os.fstat(src).st_size
        if stored == 0:
            if record is not None and not record.zero:
                raise IntegrityError(f"{path} is empty but its manifest says it holds data")
            return 0 if skip_zeros else _write_zeros(fd, start, length, len(buf))
        if stored != length:
            raise IntegrityError(f"{path} has {stored} bytes, expected {length}")
        hasher = new_hasher(manifest.algorithm)
        offset = 0
        while offset < length:
            n = read_full(src, memoryview(buf)[: min(len(buf), length - offset)], offset)
            if n == 0:
                raise IntegrityError(f"{path} ended at byte {offset}, expected {length}")
            if record is not None and record.zero and buf[:n].count(0) != n:
                raise IntegrityError(f"{path} is corrupt: it should hold only zero bytes")
            hasher.update(memoryview(buf)[:n])
            _pwrite_all(fd, memoryview(buf)[:n], start + offset)
            offset += n
        platform.drop_cache(src, 0, length)
    finally:
        os.close(src)
    if record is not None and not record.zero and hasher.hexdigest() != record.hash:
        raise IntegrityError(
            f"{path} is corrupt: its {manifest.algorithm} hash does not match the manifest "
            f"(the destination now holds bad data from byte {start})",
            hint="restore this part from an older snapshot: --snapshot NAME --start-part "
            f"{index}, or run `coldvault verify JOB --all`",
        )
    return length


def _write_zeros(fd: int, start: int, length: int, chunk: int) -> int:
    zero = memoryview(bytes(chunk))
    done = 0
    while done < length:
        step = min(chunk, length - done)
        _pwrite_all(fd, zero[:step], start + done)
        done += step
    return length


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
