"""One budgeted, resumable step of the scheduled verification of an image job.

A layer over :mod:`coldvault.jobs.image.verify`: the same per-part check, but
walked part index by part index across every snapshot folder, so a part
shared by hard links between snapshots is read once per index even when the
round is spread over many sessions (a folder-by-folder walk would read the
shared parts again in every later session). The position is (part index,
first snapshot folder still to check at that index).

Folders without a manifest (made by the original script, not yet adopted by
a backup run) have nothing to compare against: they are noted, not counted
as damage; so are abandoned folders (a manifest, no parts). Parts are found
without following symlinks; anything that is not a regular file where a part is
expected is reported. Each step records the corrupt or missing parts it checked
in the job folder's repair list (see :mod:`coldvault.jobs.image.repair_flags`),
so the next backup run repairs them.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from coldvault.config.model import ImageJob
from coldvault.errors import Cancelled, ColdvaultError, JobError
from coldvault.jobs.image import listing, repair_flags
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.backup import Layout
from coldvault.jobs.image.legacy import NOT_ADOPTED
from coldvault.jobs.image.manifest import Manifest
from coldvault.jobs.image.parts import part_name
from coldvault.jobs.image.snapshots import ABANDONED, abandoned
from coldvault.jobs.image.verify import check_part_file
from coldvault.jobs.jobdir import open_job_folder
from coldvault.jobs.verify_steps import StepResult, VerifyPosition, over_budget
from coldvault.progress import ProgressMeter
from coldvault.system.beneath import SafeDir, UnexpectedEntry
from coldvault.system.cancel import CancelToken

__all__ = ["ABANDONED", "NOT_ADOPTED", "image_step"]


@dataclass(frozen=True)
class _Folder:
    key: str  # the folder's name; "." for the job folder itself (snapshots: 0)
    dir: SafeDir
    manifest: Manifest
    count: int  # parts the manifest's source size needs

    @property
    def path(self) -> Path:
        return self.dir.path


def _folders(
    top: SafeDir, job: ImageJob, stack: contextlib.ExitStack, notes: list[str], problems: list[str]
) -> list[_Folder]:
    """Every backup folder with a usable manifest; the others go to notes or problems."""
    found = []
    names = listing.folders(top, job.snapshots)
    if not names:
        raise JobError(f"no backups in {top.path}", hint="run a backup first")
    for name in names:
        try:
            folder = stack.enter_context(top.sub(name))
            manifest = manifest_mod.load(folder)
        except (ColdvaultError, OSError) as exc:
            problems.append(f"{top.child(name)}: manifest unusable: {exc}")
            continue
        if manifest is None:
            notes.append(f"{folder.path}: {NOT_ADOPTED}")
            continue
        if name != "." and abandoned(folder):
            notes.append(f"{folder.path}: {ABANDONED}")
            continue
        count = Layout(manifest.source_size, manifest.part_size, manifest.block_size).count
        if len(manifest.parts) < count:
            problems.append(
                f"{folder.path}: the manifest lists {len(manifest.parts)} of {count} parts"
            )
        found.append(_Folder(name, folder, manifest, count))
    return sorted(found, key=lambda f: f.key)  # the order positions compare in


def image_step(
    job: ImageJob,
    job_dir: Path,
    position: VerifyPosition | None,
    budget: int | None,
    meter: ProgressMeter,
    cancel: CancelToken,
) -> StepResult:
    """Check parts from ``position`` on until done, over budget, or cancelled."""
    with contextlib.ExitStack() as stack:
        top = stack.enter_context(open_job_folder(job_dir, job.target, create=False))
        seen: dict[tuple[str, int], str] = {}
        result = _step(top, job, stack, position, budget, meter, cancel, seen)
        _record(top, job, seen)
        return result


def _record(top: SafeDir, job: ImageJob, seen: dict[tuple[str, int], str]) -> None:
    """Keep the repairable findings of the parts this step checked for the next run."""
    found = [
        repair_flags.Flag(key, index, reason)
        for (key, index), problem in seen.items()
        if problem and (reason := repair_flags.reason_for(problem))
    ]
    repair_flags.record(top, found, lambda s, i: (s, i) in seen, job.name)


def _step(
    top: SafeDir,
    job: ImageJob,
    stack: contextlib.ExitStack,
    position: VerifyPosition | None,
    budget: int | None,
    meter: ProgressMeter,
    cancel: CancelToken,
    seen: dict[tuple[str, int], str],
) -> StepResult:
    notes: list[str] = []
    problems: list[str] = []
    folders = _folders(top, job, stack, notes, problems)
    if position is not None:  # folder-level findings were reported when the round began
        notes, problems = [], []
    start = position or VerifyPosition()
    checked: dict[tuple[int, int], str] = {}
    read = items = 0
    last = max((f.count for f in folders), default=0)
    for index in range(start.part, last):
        for folder in folders:
            if index == start.part and folder.key < start.snapshot:
                continue  # checked by an earlier step
            if index >= folder.count:
                continue
            found = _locate(folder, index)
            # Stop only before a read: a part shared with one just read costs nothing, and
            # leaving it to the next session would read it again there.
            reads = (
                isinstance(found, os.stat_result) and (found.st_dev, found.st_ino) not in checked
            )
            if reads and (cancel.cancelled or over_budget(read, budget)):
                here = VerifyPosition(snapshot=folder.key, part=index)
                return StepResult(here, read, items, tuple(problems), tuple(notes))
            try:
                got, problem = _check(folder, index, found, checked, cancel)
            except Cancelled:
                here = VerifyPosition(snapshot=folder.key, part=index)
                return StepResult(here, read, items, tuple(problems), tuple(notes))
            read += got
            items += 1
            seen[(folder.key, index)] = problem
            if problem:
                problems.append(f"{folder.path / part_name(index)}: {problem}")
            meter.update(meter.done + got, detail=f"part {index + 1} of {last}")
    return StepResult(None, read, items, tuple(problems), tuple(notes))


def _locate(folder: _Folder, index: int) -> os.stat_result | str:
    """The part's lstat, or what is wrong with it (not recorded, missing, not a file)."""
    record = folder.manifest.parts[index] if index < len(folder.manifest.parts) else None
    if record is None:
        return "not recorded in the manifest (interrupted write?)"
    try:
        st = folder.dir.lstat(part_name(index))
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if st is None:
        return "missing"
    return st if stat.S_ISREG(st.st_mode) else "not a regular file"


def _check(
    folder: _Folder,
    index: int,
    found: os.stat_result | str,
    checked: dict[tuple[int, int], str],
    cancel: CancelToken,
) -> tuple[int, str]:
    """(bytes read, problem or "") for one part of one folder."""
    if isinstance(found, str):
        return 0, found
    key = (found.st_dev, found.st_ino)
    if key in checked:
        return 0, checked[key]
    record = folder.manifest.parts[index]
    assert record is not None  # _locate said so
    try:
        problem = check_part_file(folder.dir, index, found.st_size, record, folder.manifest, cancel)
    except UnexpectedEntry as exc:  # swapped since it was listed
        problem = f"a {exc.found}, not a part file"
    checked[key] = problem
    return found.st_size, problem
