"""One budgeted, resumable step of the scheduled verification of a btrfs job.

A layer over :mod:`coldvault.jobs.btrfs.verify`: the same checks (the received
snapshot is read-only with ``received_uuid``; every regular file reads back,
bypassing cached pages, so Btrfs checks each block's checksum), but the files
are walked in a fixed order (depth first, names sorted) and read in chunks, so
a step can stop after ``budget`` bytes, even inside a large file, and the next
step goes on at that file and offset.

A round verifies the newest received snapshot of each source, chosen when the
round begins and kept in the position: a backup made between two steps does
not restart the round. A target removed meanwhile (retention) is noted and
skipped. Symlinks are never followed; only regular files are read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from coldvault.config.model import BtrfsJob
from coldvault.errors import ColdvaultError
from coldvault.jobs.btrfs.restore import latest_paths
from coldvault.jobs.btrfs.verify import record_damage, subvolume_problems
from coldvault.jobs.verify_steps import StepResult, VerifyPosition, over_budget
from coldvault.progress import ProgressMeter
from coldvault.system.cancel import CancelToken

CHUNK = 1 << 20


class _Step:
    """The running totals of one step."""

    def __init__(self, budget: int | None, meter: ProgressMeter, cancel: CancelToken) -> None:
        self.budget, self.meter, self.cancel = budget, meter, cancel
        self.read = self.items = 0
        self.problems: list[str] = []
        self.notes: list[str] = []

    def must_stop(self) -> bool:
        return self.cancel.cancelled or over_budget(self.read, self.budget)

    def result(self, position: VerifyPosition | None) -> StepResult:
        return StepResult(position, self.read, self.items, tuple(self.problems), tuple(self.notes))


def btrfs_step(
    job: BtrfsJob,
    job_dir: Path,
    position: VerifyPosition | None,
    budget: int | None,
    meter: ProgressMeter,
    cancel: CancelToken,
) -> StepResult:
    """Read files from ``position`` on until the round is done, over budget, or cancelled."""
    if position is None:
        targets = tuple(str(p.relative_to(job_dir)) for p in latest_paths(job, job_dir))
        position = VerifyPosition(snapshot=targets[0] if targets else "", targets=targets)
    step = _Step(budget, meter, cancel)
    if position.snapshot not in position.targets:
        return step.result(None)
    for target in position.targets[position.targets.index(position.snapshot) :]:
        resume = position if target == position.snapshot else VerifyPosition(snapshot=target)
        found_before = len(step.problems)
        stopped = _verify_target(job_dir, target, resume, step, position.targets)
        if len(step.problems) > found_before:  # marked on the disk: never a parent again
            record_damage(job, job_dir, target, step.problems[found_before:])
        if stopped is not None:
            return step.result(stopped)
    return step.result(None)


def _verify_target(
    job_dir: Path, target: str, resume: VerifyPosition, step: _Step, targets: tuple[str, ...]
) -> VerifyPosition | None:
    """Verify one snapshot from ``resume``; the position to go on from, or None when done."""
    root = job_dir / target
    if not _is_plain_dir(root):
        step.notes.append(f"{root}: removed since the verification began; skipped")
        return None
    if not resume.file and not resume.offset:
        try:
            step.problems += subvolume_problems(root)
        except ColdvaultError as exc:
            step.problems.append(f"{root}: {exc.message}")
            return None
    after = PurePosixPath(resume.file).parts if resume.file else ()
    for parts in _files(root, step.problems):
        if parts < after:
            continue
        offset = resume.offset if parts == after else 0
        rel = "/".join(parts)
        here = VerifyPosition(snapshot=target, file=rel, offset=offset, targets=targets)
        if step.must_stop():
            return here
        stopped_at = _read_file(root / rel, offset, step)
        if stopped_at is not None:
            return VerifyPosition(snapshot=target, file=rel, offset=stopped_at, targets=targets)
        step.items += 1
    return None


def _is_plain_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _files(root: Path, problems: list[str]) -> Iterator[tuple[str, ...]]:
    """Every regular file below ``root`` as path components, depth first, names sorted.

    This order is the lexicographic order of the component tuples, which is
    what lets a step skip everything up to where the last one stopped.
    """

    def walk(rel: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        folder = root.joinpath(*rel)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"{folder}: cannot be listed ({exc.strerror})")
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from walk((*rel, entry.name))
            elif entry.is_file(follow_symlinks=False):
                yield (*rel, entry.name)

    return walk(())


def _read_file(path: Path, offset: int, step: _Step) -> int | None:
    """Read ``path`` from ``offset`` to its end; the offset to go on from if stopped early."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        step.problems.append(f"{path}: cannot be read back ({exc.strerror})")
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # replaced meanwhile: not ours to read
        # Drop cached pages so the blocks (and their checksums) come from the disk.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while True:
            if step.must_stop():
                return offset
            chunk = os.pread(fd, CHUNK, offset)
            if not chunk:
                return None
            offset += len(chunk)
            step.read += len(chunk)
            step.meter.update(step.meter.done + len(chunk), detail=path.name)
    except OSError as exc:
        step.problems.append(f"{path}: cannot be read back ({exc.strerror})")
        return None
    finally:
        os.close(fd)
