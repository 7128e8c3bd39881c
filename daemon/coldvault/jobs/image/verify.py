"""Verify: re-hash stored parts against the manifest and name every corrupt or missing part.

What a run can repair is recorded in the job folder's repair list
(:mod:`coldvault.jobs.image.repair_flags`).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from coldvault.config.model import ImageJob
from coldvault.errors import JobError
from coldvault.jobs.base import VerifyReport
from coldvault.jobs.image import listing, repair_flags, snapshots
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.backup import Layout
from coldvault.jobs.image.legacy import NOT_ADOPTED, hash_part_file
from coldvault.jobs.image.manifest import Manifest, ManifestDamaged, PartRecord
from coldvault.jobs.image.parts import part_name, scan
from coldvault.jobs.image.repair_flags import MISSING, reason_for
from coldvault.jobs.jobdir import open_job_folder
from coldvault.progress import ProgressCallback, ProgressMeter
from coldvault.system.beneath import SafeDir, UnexpectedEntry
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")

# (device, inode) → problem text or "" : a part shared by hard links is read once.
Checked = dict[tuple[int, int], str]


def verify_job(
    job: ImageJob,
    job_dir: Path,
    snapshot: str | None,
    all_snapshots: bool,
    progress: ProgressCallback,
    cancel: CancelToken,
) -> VerifyReport:
    """``coldvault verify``: re-hash stored parts; record what a run can repair.

    A damaged manifest is a problem; a folder without one, or an abandoned folder, is
    noted but not damage.
    """
    with open_job_folder(job_dir, job.target, create=False) as top:
        if all_snapshots:
            chosen = listing.folders(top, job.snapshots)
            if not chosen:
                raise JobError(f"no backups in {top.path}", hint="run a backup first")
        else:
            chosen = [snapshots.chosen(top, job, snapshot)]
        if job.snapshots:
            snapshots.report_strays(top, job.name)
        meter = ProgressMeter(job.name, "verifying", progress)
        items, problems, flags = _verify_folders(top, chosen, meter, cancel)
        meter.emit()
        repair_flags.record(top, flags, lambda name, _: name in chosen, job.name)
    shown = tuple(top.path.name if n == "." else n for n in chosen)
    return VerifyReport(job.name, shown, items, tuple(problems))


def _verify_folders(
    top: SafeDir, chosen: list[str], meter: ProgressMeter, cancel: CancelToken
) -> tuple[int, list[str], list[repair_flags.Flag]]:
    """(parts checked, problems, repair flags) over the folders ``chosen``."""
    checked: Checked = {}
    items, problems, flags = 0, [], []
    for name in chosen:
        damaged: list[tuple[int, str]] = []
        with top.sub(name) as folder:
            if name != "." and snapshots.abandoned(folder):
                log.warning("%s: %s", folder.path, snapshots.ABANDONED)
                continue
            try:
                found = manifest_mod.load(folder)
            except ManifestDamaged as exc:
                problems.append(f"{exc.path}: damaged manifest: {exc.why}")
                continue
            if found is None:  # not damage: nothing to compare against yet (no exit 6)
                log.warning("%s: %s; its parts were not checked", folder.path, NOT_ADOPTED)
                continue
            count, more = verify_folder(
                folder, found, checked=checked, meter=meter, cancel=cancel, damaged=damaged
            )
        items += count
        problems += more
        flags += [repair_flags.Flag(name, i, why) for i, why in damaged]
    return items, problems, flags


def verify_folder(
    folder: SafeDir,
    manifest: Manifest,
    *,
    checked: Checked,
    meter: ProgressMeter,
    cancel: CancelToken,
    damaged: list[tuple[int, str]] | None = None,
) -> tuple[int, list[str]]:
    """Check every part of one snapshot; return (parts checked, problems).

    ``damaged`` receives (index, reason) of each part a run can repair (see
    :mod:`coldvault.jobs.image.repair_flags`).
    """
    found = damaged if damaged is not None else []
    layout = Layout(manifest.source_size, manifest.part_size, manifest.block_size)
    problems: list[str] = []
    if len(manifest.parts) < layout.count:
        problems.append(
            f"{folder.path}: the manifest lists {len(manifest.parts)} of {layout.count} parts"
        )
    indexes, odd = scan(folder)
    problems += [f"{folder.child(name)}: a {kind}, not a part file" for name, kind in odd]
    problems += [
        f"{folder.child(part_name(i))}: past the end of the source ({layout.count} parts)"
        for i in indexes
        if i >= layout.count
    ]
    for index in range(layout.count):
        cancel.check()
        record = manifest.parts[index] if index < len(manifest.parts) else None
        path = folder.child(part_name(index))
        if record is None:
            problems.append(f"{path}: not recorded in the manifest (interrupted write?)")
            continue
        st = folder.lstat(part_name(index))
        if st is None:
            problems.append(f"{path}: missing")
            found.append((index, MISSING))
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # reported above
        key = (st.st_dev, st.st_ino)
        if key not in checked:
            checked[key] = _check(
                folder,
                part_name(index),
                st.st_size,
                record.size,
                record.zero,
                record.hash,
                manifest,
                cancel,
            )
            meter.update(meter.done + st.st_size, detail=f"{folder.path.name}: part {index + 1}")
        if checked[key]:
            problems.append(f"{path}: {checked[key]}")
            reason = reason_for(checked[key])
            if reason:
                found.append((index, reason))
    return layout.count, problems


def _check(
    folder: SafeDir,
    name: str,
    stored: int,
    size: int,
    zero: bool,
    digest: str | None,
    manifest: Manifest,
    cancel: CancelToken | None = None,
) -> str:
    """ "" when the part matches, else what is wrong."""
    if stored == 0:
        return "" if zero else f"empty, expected {size} bytes of data"
    if stored != size:
        return f"has {stored} bytes, expected {size}"
    try:
        fd = folder.open_file(name)
    except UnexpectedEntry as exc:  # swapped since it was listed
        return f"a {exc.found}, not a part file"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    try:
        got, length, all_zero = hash_part_file(fd, manifest.algorithm, manifest.block_size, cancel)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    finally:
        os.close(fd)
    if length != size:
        return f"read {length} bytes, expected {size}"
    if zero:
        return "" if all_zero else "corrupt: expected all zeros"
    if got != digest:
        return f"corrupt: {manifest.algorithm} hash differs from the manifest"
    return ""


def check_part_file(
    folder: SafeDir,
    index: int,
    stored: int,
    record: PartRecord,
    manifest: Manifest,
    cancel: CancelToken,
) -> str:
    """One stored part (``stored`` bytes on disk) against its record: "" or what is wrong.

    For a verification walked part by part; a stop request ends the read within one
    block (Cancelled).
    """
    return _check(
        folder, part_name(index), stored, record.size, record.zero, record.hash, manifest, cancel
    )
