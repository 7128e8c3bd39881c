"""Budgeted, resumable verification of btrfs jobs on loop-mounted Btrfs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import require_programs
from tests.integration.btrfs_env import (
    MakeFs,
    create_subvolume,
    damage_first_block,
    job_for,
    make_fs,
    random_file,
    run_job,
    subvol_field,
)
from tests.verify_env import verify_round

from coldvault.config.model import BtrfsJob
from coldvault.jobs.btrfs import diskstate
from coldvault.jobs.verify_steps import StepResult, verify_step
from coldvault.progress import ProgressMeter, no_progress
from coldvault.system.cancel import CancelToken

__all__ = ["make_fs"]  # the fixture, used by name
MiB = 1 << 20


def _steps(job: BtrfsJob, job_dir: Path, budget: int | None) -> list[StepResult]:
    return verify_round(job, job_dir, budget, most=100)


def test_budget_splits_inside_files_and_the_union_covers_every_byte(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "a.bin", 3 * MiB)
    random_file(vol / "sub" / "b.bin", 2 * MiB)
    random_file(vol / "sub" / "c.bin", MiB // 2)
    os.symlink("/etc/passwd", vol / "link")  # never followed
    job = job_for(vol)
    run_job(job, dst.mount / "data")
    job_dir = dst.mount / "data"

    [whole] = _steps(job, job_dir, None)
    assert whole.problems == () and whole.items == 3
    assert whole.bytes_read == 5 * MiB + MiB // 2

    split = _steps(job, job_dir, 2 * MiB)
    assert len(split) >= 3
    assert sum(s.bytes_read for s in split) == 5 * MiB + MiB // 2  # every byte once
    assert sum(s.items for s in split) == 3
    stopped_inside = [s.position for s in split if s.position is not None and s.position.offset]
    assert stopped_inside, "a step should have stopped inside a file"
    assert all(s.problems == () for s in split)

    # A backup between two steps does not restart the round: its targets stay.
    first = split[0].position
    assert first is not None and first.targets
    random_file(vol / "new.bin", MiB)
    run_job(job, job_dir)
    meter = ProgressMeter(job.name, "verifying", no_progress)
    rest = verify_step(job, job_dir, first, None, meter, CancelToken())
    assert rest.complete and rest.problems == ()
    assert split[0].bytes_read + rest.bytes_read == 5 * MiB + MiB // 2


def test_damaged_block_found_in_a_later_step(make_fs: MakeFs) -> None:
    require_programs("filefrag", "btrfs-map-logical")
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "a.bin", MiB)
    random_file(vol / "z.bin", MiB)
    job = job_for(vol)
    first = run_job(job, dst.mount / "data")
    copy = dst.mount / "data" / "data" / str(first.snapshot)
    damage_first_block(dst.device, copy / "z.bin")  # bit rot behind Btrfs's back
    steps = _steps(job, dst.mount / "data", MiB)
    found = [(i, p) for i, s in enumerate(steps) for p in s.problems]
    assert len(found) == 1, found
    index, problem = found[0]
    assert index > 0 and "z.bin" in problem and "cannot be read back" in problem
    # Marked on the disk as the manual verify does: the next run does not build on it.
    marks = json.loads((copy.parent / diskstate.FILE).read_text())["damaged"]
    assert marks[subvol_field(copy, "UUID")]["problems"] == [problem]
    random_file(vol / "c.bin", 4096)
    assert "full" in run_job(job, dst.mount / "data").summary


def test_cancel_keeps_the_position(make_fs: MakeFs) -> None:
    src, dst = make_fs("src"), make_fs("dst")
    vol = create_subvolume(src.mount / "data")
    random_file(vol / "a.bin", 4 * MiB)
    job = job_for(vol)
    run_job(job, dst.mount / "data")
    cancel = CancelToken()

    def stop(_: object) -> None:
        cancel.cancel("test stop")

    meter = ProgressMeter(job.name, "verifying", stop, interval=0)
    step = verify_step(job, dst.mount / "data", None, None, meter, cancel)
    assert step.position is not None and step.position.file == "a.bin"
    assert step.bytes_read == step.position.offset == MiB  # stopped after one chunk
    meter = ProgressMeter(job.name, "verifying", no_progress)
    rest = verify_step(job, dst.mount / "data", step.position, None, meter, CancelToken())
    assert rest.complete and step.bytes_read + rest.bytes_read == 4 * MiB
