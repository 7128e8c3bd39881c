"""`coldvault status` for offsite copies, from an offsite state written by StateFile."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from coldvault.config.model import (
    Config,
    DiskConfig,
    ImageJob,
    MountConfig,
    OffsiteTarget,
    Settings,
    SourceRef,
    When,
)
from coldvault.errors import EXIT_FAILURE, EXIT_OK, EXIT_OVERDUE
from coldvault.offsite import record
from coldvault.service.state import FAILED, SUCCESS, StateFile
from coldvault.service.status import build_report, render_text

TZ = timezone(timedelta(hours=2))
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=TZ)
DAY = timedelta(days=1)


def _config(tmp: Path, *targets: OffsiteTarget) -> Config:
    def job(name: str, when: When) -> ImageJob:
        return ImageJob(name, SourceRef("path", "/dev/null"), name, when=when)

    return Config(
        path=tmp / "config.yaml",
        disk=DiskConfig(device=tmp / "disk", mount=MountConfig(tmp, require_mount=False)),
        jobs=(job("daily", When(every=DAY)), job("plug", When(on_plug=True))),
        settings=Settings(state_file=tmp / "state.json", runtime_dir=tmp / "run"),
        offsite=targets,
    )


def _target(name: str, **kw: object) -> OffsiteTarget:
    return OffsiteTarget(name, "/srv/restic", Path("/etc/pw"), **kw)  # type: ignore[arg-type]


def _fresh_jobs(config: Config) -> None:
    """The disk backups are recent: only the offsite part can be late."""
    for name in ("daily", "plug"):
        StateFile(config.settings.state_file).update(name, last_success=NOW, result=SUCCESS)


def test_an_offsite_copy_older_than_the_target_interval_is_overdue(tmp_path: Path) -> None:
    s3 = _target("s3", when=When(every=DAY))
    config = _config(tmp_path, s3)
    _fresh_jobs(config)
    state = record.state_of(config, s3)
    state.update("daily", last_success=NOW - timedelta(hours=30), result=SUCCESS, bytes_written=5)
    state.update(
        "plug", last_success=NOW - 3 * DAY, result=FAILED, error="s3: the password does not open it"
    )
    state.update(record.CHECK, last_success=NOW - 2 * DAY, result=SUCCESS)
    report = build_report(config, NOW)
    [target] = report.offsite
    lines = {j.job: j for j in target.jobs}
    assert not lines["daily"].overdue and lines["plug"].overdue  # 3 days > 1 + 1 day
    assert report.offsite_overdue and not report.overdue
    assert report.exit_code == EXIT_OVERDUE
    text = render_text(report, NOW)
    print(text)
    assert "offsite s3 (every 1d):" in text
    assert "  daily: last success 2026-11-22 06:00 (1d 6h ago); last result success; added 5 B" in (
        text
    )
    assert "  plug: last success 2026-11-20 12:00 (3d ago); last result failed" in text
    assert "OVERDUE (due since 2d)" in text
    assert "    plug: error: s3: the password does not open it" in text
    assert "  restic check (every 30d): last success 2026-11-21 12:00 (2d ago)" in text
    out = json.loads(json.dumps(report.to_json()))
    assert out["offsite_overdue"] is True and out["exit_code"] == EXIT_OVERDUE
    [j] = out["offsite"]
    assert j["name"] == "s3" and j["overdue"] is True
    assert j["jobs"][0]["bytes_added"] == 5 and j["jobs"][1]["error"].startswith("s3: the")
    assert j["check"]["last_success"] == "2026-11-21T12:00:00+02:00"


def test_unreachable_is_skipped_not_failed_and_a_recent_copy_is_well(tmp_path: Path) -> None:
    s3 = _target("s3", when=When(at=(time(2, 0),)))
    config = _config(tmp_path, s3)
    _fresh_jobs(config)
    state = record.state_of(config, s3)
    state.update("daily", last_success=NOW - timedelta(hours=8), result=SUCCESS)
    state.update("plug", last_success=NOW - timedelta(hours=8), result=SUCCESS)
    state.update("plug", last_attempt=NOW, error="s3: connection refused")  # skipped
    report = build_report(config, NOW)
    assert not report.offsite_overdue and report.exit_code == EXIT_OK
    [target] = report.offsite
    plug = {j.job: j for j in target.jobs}["plug"]
    assert plug.skipped and plug.result == SUCCESS
    text = render_text(report, NOW)
    assert "offsite s3 (at 02:00):" in text
    assert "    plug: skipped, repository unreachable: s3: connection refused" in text
    assert "restic check (every 30d): never" in text


def test_a_target_without_schedule_uses_each_jobs_interval(tmp_path: Path) -> None:
    every_session = _target("usb")
    config = _config(tmp_path, every_session)
    _fresh_jobs(config)
    state = record.state_of(config, every_session)
    state.update("daily", last_success=NOW - 3 * DAY, result=SUCCESS)
    report = build_report(config, NOW)
    lines = {j.job: j for j in report.offsite[0].jobs}
    assert lines["daily"].overdue  # the job's own every: 1d
    assert not lines["plug"].overdue  # on_plug only: no interval, never overdue
    assert report.exit_code == EXIT_OVERDUE
    assert "offsite usb (every disk session):" in render_text(report, NOW)
    state.update("daily", last_success=NOW - timedelta(hours=2))
    assert build_report(config, NOW).exit_code == EXIT_OK


def test_a_never_copied_job_is_overdue_and_a_damaged_offsite_state_exits_1(
    tmp_path: Path,
) -> None:
    s3 = _target("s3", when=When(every=DAY), jobs=("daily",))
    config = _config(tmp_path, s3)
    _fresh_jobs(config)
    report = build_report(config, NOW)
    [line] = report.offsite[0].jobs  # only the job the target names
    assert line.job == "daily" and line.overdue and line.last_success is None
    assert "daily: last success never; last result -; added 0 B; OVERDUE (no copy exists)" in (
        render_text(report, NOW)
    )
    record.path_of(config).write_text('{"version": 2, "jobs": {"daily": {"result": "maybe"}}}')
    damaged = build_report(config, NOW)
    assert damaged.exit_code == EXIT_FAILURE and not damaged.offsite_overdue
    assert "  OFFSITE STATE: state file " in render_text(damaged, NOW)
    assert damaged.to_json()["offsite"][0]["state_error"].startswith("state file ")


def test_no_offsite_targets_no_offsite_lines(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _fresh_jobs(config)
    report = build_report(config, NOW)
    assert report.offsite == () and report.to_json()["offsite"] == []
    assert "\noffsite " not in render_text(report, NOW)
