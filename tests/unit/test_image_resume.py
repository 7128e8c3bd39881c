"""Resuming an interrupted image backup: what is logged, what is dropped before the pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.unit.image_env import KiB, make_job, restore_bytes, run, snapshots, write_source
from tests.unit.test_image_backup import CancelAfter

from coldvault.errors import Cancelled

PART = 256 * KiB
MANIFEST = ".coldvault-manifest.json"


@pytest.mark.parametrize("with_base", [False, True])
def test_resuming_without_a_manifest_reports_no_size_change(
    tmp_path: Path, with_base: bool, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    write_source(src, [(8 * PART, True)])
    job = make_job(src)
    if with_base:
        run(job, tmp_path / "b")
        write_source(src, [(8 * PART, True)], seed=2)  # every part changes, same size
    with pytest.raises(Cancelled):
        run(job, tmp_path / "b", CancelAfter(4 * 4 + 2))  # mid part 4
    work = tmp_path / "b" / "snapshot-inprogress"
    (work / MANIFEST).unlink()  # killed before the first in-progress save
    caplog.clear()
    with caplog.at_level("INFO", logger="coldvault"):
        run(job, tmp_path / "b")
    assert "resuming the interrupted" in caplog.text
    assert "source size changed" not in caplog.text
    assert restore_bytes(job, tmp_path / "b", tmp_path / "out") == src.read_bytes()


def test_a_real_size_change_is_still_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    write_source(src, [(3 * PART, True)])
    job = make_job(src)
    run(job, tmp_path / "b")
    write_source(src, [(5 * PART, True)])
    with caplog.at_level("INFO", logger="coldvault"):
        run(job, tmp_path / "b")
    assert f"source size changed from {3 * PART} to {5 * PART} bytes" in caplog.text


def test_parts_past_a_shrunk_source_are_dropped_before_the_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    write_source(src, [(2 * PART, True)])
    job = make_job(src)
    run(job, tmp_path / "b")
    write_source(src, [(9 * PART, True)], seed=3)
    with pytest.raises(Cancelled):
        run(job, tmp_path / "b", CancelAfter(7 * 4 + 2))
    work = tmp_path / "b" / "snapshot-inprogress"
    assert len([n for n in os.listdir(work) if n.startswith("part_")]) >= 6
    write_source(src, [(3 * PART, True)], seed=3)
    with caplog.at_level("INFO", logger="coldvault"):
        result = run(job, tmp_path / "b")
    assert "removed" in caplog.text and "past the end of the source" in caplog.text
    latest = snapshots(tmp_path / "b")[-1]
    assert latest.name == result.snapshot
    assert sorted(n for n in os.listdir(latest) if n.startswith("part_")) == [
        f"part_{i:08d}" for i in range(3)
    ]
    assert restore_bytes(job, tmp_path / "b", tmp_path / "out") == src.read_bytes()
