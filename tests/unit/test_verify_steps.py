"""Scheduled, budgeted verification of image jobs on real files; its records and events."""

from __future__ import annotations

import logging
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from tests.unit.image_env import KiB, make_job, patch, run, snapshots, write_source
from tests.verify_env import verify_round

from coldvault.config.model import (
    Config,
    DiskConfig,
    ImageJob,
    MountConfig,
    Settings,
    VerifySchedule,
)
from coldvault.jobs.image.runner import ImageRunner
from coldvault.jobs.verify_steps import StepResult, VerifyPosition, verify_step
from coldvault.platform.ioprio import current_io_class
from coldvault.progress import Progress, ProgressMeter, no_progress
from coldvault.service import due
from coldvault.service import state as st
from coldvault.service.scheduled_verify import jobs_to_verify, verify_due_jobs
from coldvault.service.status import build_report, render_text
from coldvault.system.cancel import CancelToken

PART = 256 * KiB
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _backup(tmp: Path) -> tuple[ImageJob, Path]:
    """Two snapshots of a 4-part source that share 3 parts by hard links."""
    src = tmp / "src"
    write_source(src, [(3 * PART, True), (PART // 2, True)])
    job = make_job(src)
    job_dir = tmp / "backup" / "img"
    run(job, job_dir)
    patch(src, 0, b"changed")
    run(job, job_dir)
    return job, job_dir


def _steps(job: ImageJob, job_dir: Path, budget: int | None) -> list[StepResult]:
    return verify_round(job, job_dir, budget, most=50)


def _distinct_part_bytes(job_dir: Path) -> int:
    seen = {}
    for folder in snapshots(job_dir):
        for part in folder.glob("part_*"):
            s = part.stat()
            seen[(s.st_dev, s.st_ino)] = s.st_size
    return sum(seen.values())


def test_budget_splits_a_round_and_the_union_covers_every_part(tmp_path: Path) -> None:
    job, job_dir = _backup(tmp_path)
    whole = _steps(job, job_dir, None)
    assert len(whole) == 1 and whole[0].problems == ()
    assert whole[0].items == 8  # 4 parts in each of 2 snapshots

    split = _steps(job, job_dir, PART)  # one part's worth a session
    assert len(split) >= 3
    assert sum(s.items for s in split) == 8  # every (snapshot, part) exactly once
    # Parts shared by hard links are read once in the whole round, not once per session.
    assert sum(s.bytes_read for s in split) == _distinct_part_bytes(job_dir)
    assert all(s.problems == () for s in split)


def test_damage_found_in_a_later_session(tmp_path: Path) -> None:
    job, job_dir = _backup(tmp_path)
    last = snapshots(job_dir)[-1] / "part_00000003"
    stamp = last.stat()
    patch(last, 10, b"\x00rot\x00")  # bit rot: content changes, size and mtime do not
    os.utime(last, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    split = _steps(job, job_dir, PART)
    found = [(i, p) for i, s in enumerate(split) for p in s.problems]
    # The damaged inode is linked into both snapshots: each link is named.
    assert len(found) == 2, found
    assert all(i > 0 and "part_00000003" in p and "hash differs" in p for i, p in found)
    assert any(str(last) in p for _, p in found)


def test_cancel_stops_within_a_block_and_the_next_step_goes_on(tmp_path: Path) -> None:
    job, job_dir = _backup(tmp_path)
    cancel = CancelToken()

    def stop_at_once(_: Progress) -> None:
        cancel.cancel("test stop")

    meter = ProgressMeter(job.name, "verifying", stop_at_once, interval=0)
    first = verify_step(job, job_dir, None, None, meter, cancel)
    assert not first.complete and first.items == 1  # stopped right after the first part
    rest = _steps_from(job, job_dir, first.position)
    assert first.items + sum(s.items for s in rest) == 8


def _steps_from(job: ImageJob, job_dir: Path, position: VerifyPosition | None) -> list[StepResult]:
    meter = ProgressMeter(job.name, "verifying", no_progress)
    return [verify_step(job, job_dir, position, None, meter, CancelToken())]


def test_cancel_inside_a_part_read(tmp_path: Path) -> None:
    """A stop request set while a part is being hashed ends the read within one block."""
    job, job_dir = _backup(tmp_path)
    cancel = CancelToken()
    cancel.cancel("stop before anything")
    meter = ProgressMeter(job.name, "verifying", no_progress)
    step = verify_step(job, job_dir, None, None, meter, cancel)
    assert step.position == VerifyPosition(snapshot=snapshots(job_dir)[0].name, part=0)
    assert step.bytes_read == 0 and step.items == 0


def _legacy_folder(tmp: Path) -> tuple[ImageJob, Path]:
    """A folder as the original script left it: parts, no manifest."""
    job_dir = tmp / "legacy"
    folder = job_dir / "snapshot-2020-01-01-000000"
    folder.mkdir(parents=True)
    (folder / "part_00000000").write_bytes(os.urandom(PART))
    (folder / "part_00000001").write_bytes(b"")
    return make_job("/unused"), job_dir


def test_original_script_folders_are_not_yet_adopted_not_damaged(tmp_path: Path) -> None:
    job, job_dir = _legacy_folder(tmp_path)
    [step] = _steps(job, job_dir, None)
    assert step.problems == () and step.items == 0
    assert any("not yet adopted" in n for n in step.notes)
    # `coldvault verify` agrees: no problem, so no exit 6.
    report = ImageRunner(job).verify(job_dir, None, True, no_progress, CancelToken())
    assert report.ok, report.problems


def test_verify_cli_on_an_original_script_folder_exits_0(
    tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    _legacy_folder(tmp_path / "root")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
disk:
  mount: {{point: {tmp_path / "root"}, require_mount: false}}
settings:
  state_file: {tmp_path / "state.json"}
  runtime_dir: {tmp_path / "run"}
  lock_file: {tmp_path / "lock"}
jobs:
  - {{name: legacy, type: image, source: /dev/null, target: legacy,
      part_size: 256k, block_size: 64k, snapshots: 3}}
"""
    )
    out = subprocess.run(
        [*coldvault_cmd, "--config", str(config), "verify", "legacy", "--all"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not yet adopted" in out.stderr and "Traceback" not in out.stderr


# -- the scheduled layer: due rule, records, events, status, I/O priority ---------------------


def _config(tmp: Path, job: ImageJob, budget: int | None) -> Config:
    return Config(
        path=tmp / "config.yaml",
        disk=DiskConfig(mount=MountConfig(tmp / "backup", require_mount=False)),
        jobs=(job,),
        settings=Settings(
            state_file=tmp / "state.json",
            runtime_dir=tmp / "run",
            verify=VerifySchedule(timedelta(days=30), budget),
        ),
    )


def test_verify_due_rule() -> None:
    every = VerifySchedule(timedelta(days=30))
    assert due.verify_due(every, None, False, True, NOW)  # never verified: now
    assert not due.verify_due(every, None, False, False, NOW)  # nothing to verify yet
    assert not due.verify_due(every, NOW - timedelta(days=29), False, True, NOW)
    assert due.verify_due(every, NOW - timedelta(days=30), False, True, NOW)
    assert due.verify_due(every, NOW, True, True, NOW)  # a round under way goes on
    assert not due.verify_due(VerifySchedule(None), None, True, True, NOW)  # never


def test_sessions_record_progress_results_and_events(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job, job_dir = _backup(tmp_path)
    job = ImageJob(**{**job.__dict__, "target": "img"})
    config = _config(tmp_path, job, PART)
    assert config.job_dir(job) == job_dir
    state = st.StateFile(config.settings.state_file)
    state.update(job.name, last_success=NOW, result=st.SUCCESS)
    classes: list[int | None] = []

    def session(now: datetime) -> None:
        verify_due_jobs(
            config,
            state,
            cancel=CancelToken(),
            progress=lambda _: classes.append(current_io_class()),
            on_job=lambda _: None,
            clock=lambda: now,
        )

    caplog.set_level(logging.INFO, logger="coldvault")
    session(NOW)
    v = state.get(job.name).verify
    assert v.position is not None and v.result is None and v.round_sessions == 1
    assert v.round_started == NOW
    assert jobs_to_verify(config, state.load(), NOW) == [job]  # goes on next session
    text = render_text(build_report(config, NOW), NOW)
    assert "never verified; verification under way" in text

    sessions = 1
    while state.get(job.name).verify.position is not None:
        session(NOW + timedelta(hours=sessions))
        sessions += 1
        assert sessions < 20
    v = state.get(job.name).verify
    assert v.result == st.VERIFY_OK and v.sessions == sessions >= 3 and v.items == 8
    assert v.last_finished == NOW + timedelta(hours=sessions - 1)
    assert jobs_to_verify(config, state.load(), NOW + timedelta(days=1)) == []
    events = [getattr(r, "journal_fields", {}).get("COLDVAULT_EVENT") for r in caplog.records]
    assert events.count("verify_finished") == 1 and "verify_failed" not in events
    # The reads ran at idle I/O priority (where the system has I/O classes).
    if psutil.LINUX:
        assert classes and set(classes) == {int(psutil.IOPRIO_CLASS_IDLE)}
    assert current_io_class() != int(psutil.IOPRIO_CLASS_IDLE)  # put back afterwards
    report = build_report(config, NOW + timedelta(days=1))
    assert report.exit_code == 0 and not report.verify_problems
    text = render_text(report, NOW + timedelta(days=1))
    assert "  verify (every 30d, at most 256.0 KiB a session): verified ok (8 checked" in text
    assert "; next in 2" in text  # 30 days after it finished

    # Rot, then the next round (30 days on): problems in state, status, events, exit 6.
    part = snapshots(job_dir)[0] / "part_00000002"
    stamp = part.stat()
    patch(part, 5, b"rot")
    os.utime(part, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    later = NOW + timedelta(days=31)
    caplog.clear()
    while True:
        session(later)
        if state.get(job.name).verify.position is None:
            break
    v = state.get(job.name).verify
    assert v.result == st.VERIFY_PROBLEMS and v.problem_count == 2  # the part is in both
    assert all("part_00000002" in p for p in v.problems)
    failed = [r for r in caplog.records if "verify_failed" in str(r.__dict__)]
    assert failed and failed[0].levelno == logging.ERROR
    report = build_report(config, later)
    assert report.exit_code == 6 and report.verify_problems
    text = render_text(report, later)
    assert "VERIFY FOUND 2 PROBLEM(S)" in text and "problem: " in text
    assert report.to_json()["jobs"][0]["verify"]["problem_count"] == 2


def test_problems_win_over_overdue(tmp_path: Path) -> None:
    job, _ = _backup(tmp_path)
    job = ImageJob(**{**job.__dict__, "when": job.when.__class__(every=timedelta(days=1))})
    config = _config(tmp_path, job, None)
    state = st.StateFile(config.settings.state_file)
    state.update(
        job.name,
        last_success=NOW - timedelta(days=5),  # overdue
        verify=st.VerifyState(last_finished=NOW, result=st.VERIFY_PROBLEMS, problem_count=1),
    )
    report = build_report(config, NOW)
    assert report.overdue and report.verify_problems and report.exit_code == 6
    state.update(job.name, verify=st.VerifyState(last_finished=NOW, result=st.VERIFY_OK))
    assert build_report(config, NOW).exit_code == 7


def test_a_job_that_cannot_be_verified_is_recorded_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = make_job("/unused", target="nothing-here")
    config = _config(tmp_path, job, None)
    (tmp_path / "backup").mkdir()
    state = st.StateFile(config.settings.state_file)
    state.update(job.name, last_success=NOW, result=st.SUCCESS)
    caplog.set_level(logging.INFO, logger="coldvault")
    verify_due_jobs(
        config,
        state,
        cancel=CancelToken(),
        progress=no_progress,
        on_job=lambda _: None,
        clock=lambda: NOW,
    )
    v = state.get(job.name).verify
    # No backup folder at all: recorded as "could not run", logged as verify_failed.
    assert v.result == st.VERIFY_ERROR and v.position is None and v.last_finished == NOW
    assert v.error is not None and "no backups in" in v.error
    assert "verify_failed" in caplog.text or any(
        "verify_failed" in str(r.__dict__) for r in caplog.records
    )
    report = build_report(config, NOW)
    assert report.exit_code == 0  # nothing was found damaged
    assert "verification could not run: no backups in" in render_text(report, NOW)


def test_session_verifies_after_backups_and_a_stop_ends_it_within_a_part(tmp_path: Path) -> None:
    """run_session as the daemon calls it: backups first, then the scheduled verification;
    the daemon's stop token ends the verification at once and the round goes on later."""
    from coldvault.service.runner import run_session

    src = tmp_path / "src"
    write_source(src, [(16 * PART, True)])
    job = make_job(src, snapshots=0)
    config = Config(
        path=tmp_path / "config.yaml",
        disk=DiskConfig(mount=MountConfig(tmp_path / "backup", require_mount=False)),
        jobs=(job,),
        settings=Settings(
            state_file=tmp_path / "state.json",
            runtime_dir=tmp_path / "run",
            lock_file=tmp_path / "lock",
            inhibit_sleep=False,
        ),
    )
    (tmp_path / "backup").mkdir()
    cancel = CancelToken()
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.phase == "verifying (scheduled)" and p.done_bytes:
            cancel.cancel("SIGTERM received")  # what the daemon's signal handler does

    outcome = run_session(config, [job], cancel=cancel, progress=progress, verify=True)
    assert [o.result for o in outcome.jobs] == [st.SUCCESS]
    phases = [p.phase for p in seen]
    assert phases.index("reading") < phases.index("verifying (scheduled)")
    assert seen[-1].describe().startswith("img: verifying (scheduled) ")  # the STATUS= line
    state = st.StateFile(config.settings.state_file)
    v = state.get(job.name).verify
    assert v.position is not None and v.result is None
    assert v.round_items < 16  # stopped after the part under way, not at the end

    rest = run_session(config, [], cancel=CancelToken(), progress=no_progress, verify=True)
    assert rest.jobs == ()
    v = state.get(job.name).verify
    assert v.result == st.VERIFY_OK and v.items == 16 and v.sessions == 2
