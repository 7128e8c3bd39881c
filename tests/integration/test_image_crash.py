"""A backup run killed with SIGKILL at several points, then run again.

The killed run is a real child process; the kill point is chosen by wrapping
one function of the image job in that child so it kills itself there. After
the rerun the newest snapshot must equal an uninterrupted backup of the same
source, and no earlier snapshot may have changed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import ROOT
from tests.unit.image_env import (
    KiB,
    folder_state,
    make_job,
    patch,
    restore_bytes,
    run,
    snapshots,
    write_source,
)

from coldvault.jobs.image import manifest as manifest_mod

PART = 256 * KiB

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from coldvault.jobs.image import backup, parts, snapshots
    from tests.unit.image_env import make_job, run

    src, job_dir, point, nth = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    calls = 0

    def die_on_nth(original, after):
        def wrapper(*args, **kwargs):
            global calls
            calls += 1
            if calls == nth and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if calls == nth and after:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    if point == "tmp-written":  # data in the temporary file, not yet renamed
        parts.PartWriter.commit = die_on_nth(parts.PartWriter.commit, after=False)
    elif point == "after-rename":  # part renamed into place, manifest not updated
        parts.PartWriter.commit = die_on_nth(parts.PartWriter.commit, after=True)
    elif point == "after-manifest":  # in-progress manifest saved after each part
        backup.SAVE_EVERY_SECONDS = 0.0
        backup.Pass.save_progress = die_on_nth(backup.Pass.save_progress, after=True)
    elif point == "linking":  # snapshot-inprogress only partly linked
        snapshots.os.link = die_on_nth(os.link, after=True)
    elif point == "before-finish":  # complete, not yet renamed
        snapshots.finish = die_on_nth(snapshots.finish, after=False)
    elif point == "before-prune":  # renamed, old snapshots not yet removed
        snapshots.prune = die_on_nth(snapshots.prune, after=False)
    run(make_job(src, snapshots=2), job_dir)
    print("finished without being killed")
    """
)

POINTS = [
    ("tmp-written", 1),
    ("tmp-written", 3),
    ("after-rename", 2),
    ("after-manifest", 2),
    ("linking", 3),
    ("before-finish", 1),
    ("before-prune", 1),
]


def _content(folder: Path) -> list[tuple[int, bool, str | None]]:
    m = manifest_mod.load(folder)
    assert m is not None and m.complete
    return [(p.size, p.zero, p.hash) for p in m.parts if p is not None]


@pytest.mark.parametrize(("point", "nth"), POINTS)
def test_killed_run_then_rerun(tmp_path: Path, point: str, nth: int) -> None:
    src = tmp_path / "src"
    job = make_job(src, snapshots=2)
    job_dir = tmp_path / "b"
    write_source(src, [(3 * PART, True), (2 * PART, False), (3 * PART + 99, True)])
    run(job, job_dir)
    patch(src, 10, b"second")
    run(job, job_dir)
    earlier = {s.name: folder_state(s) for s in snapshots(job_dir)}
    # the killed run: four parts change, one zero part gets data
    for offset in (PART + 1, 3 * PART + 2, 5 * PART + 3, 6 * PART + 4, 7 * PART + 5):
        patch(src, offset, b"third run")
    wanted = src.read_bytes()

    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(job_dir), point, str(nth)],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'daemon'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    interrupted = (job_dir / "snapshot-inprogress").is_dir()
    assert interrupted == (point != "before-prune")
    if point == "tmp-written":
        work = job_dir / "snapshot-inprogress"
        assert [n for n in os.listdir(work) if n.endswith(".tmp")]  # a half-written part
    for name, state in earlier.items():
        if (job_dir / name).exists():  # pruning an old snapshot is allowed, changing it not
            assert folder_state(job_dir / name) == state

    run(job, job_dir)
    reference = tmp_path / "reference"
    run(job, reference)  # an uninterrupted backup of the same source
    latest = snapshots(job_dir)[-1]
    assert _content(latest) == _content(snapshots(reference)[0])
    assert sorted(n for n in os.listdir(latest) if n.startswith("part_")) == sorted(
        n for n in os.listdir(snapshots(reference)[0]) if n.startswith("part_")
    )
    assert restore_bytes(job, job_dir, tmp_path / "out") == wanted
    assert not (job_dir / "snapshot-inprogress").exists()
    assert len(snapshots(job_dir)) == 2
    kept_earlier = [s for s in snapshots(job_dir) if s.name in earlier]
    for s in kept_earlier:
        assert folder_state(s) == earlier[s.name]
    assert not [n for n in os.listdir(latest) if n.endswith(".tmp")]
