"""`coldvault status` pieces: ages, the runtime status file, the report and its overdue flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from coldvault.config.model import (
    Config,
    DiskConfig,
    ImageJob,
    MountConfig,
    Settings,
    SourceRef,
    When,
)
from coldvault.progress import Progress, format_age
from coldvault.service.state import FAILED, SUCCESS, StateFile
from coldvault.service.status import RuntimeStatus, build_report, render_text

TZ = timezone(timedelta(hours=2))
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=TZ)


def test_format_age() -> None:
    assert format_age(timedelta(seconds=40)) == "40s"
    assert format_age(timedelta(minutes=12, seconds=5)) == "12m"
    assert format_age(timedelta(hours=3)) == "3h"
    assert format_age(timedelta(hours=3, minutes=5)) == "3h 5m"
    assert format_age(timedelta(days=2, hours=4)) == "2d 4h"
    assert format_age(timedelta(seconds=-5)) == "0s"


def _config(tmp: Path) -> Config:
    def job(name: str, when: When) -> ImageJob:
        return ImageJob(name, SourceRef("path", "/dev/null"), name, when=when)

    return Config(
        path=tmp / "config.yaml",
        disk=DiskConfig(device=tmp / "disk", mount=MountConfig(tmp, require_mount=False)),
        jobs=(
            job("daily", When(every=timedelta(days=1))),
            job("nightly", When(at=(time(3, 0),))),
            job("plug", When(on_plug=True)),
        ),
        settings=Settings(state_file=tmp / "state.json", runtime_dir=tmp / "run"),
    )


def test_report_overdue_and_text(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = StateFile(config.settings.state_file)
    store.update("daily", last_success=NOW - timedelta(hours=30), result=SUCCESS)  # late 6h
    store.update("nightly", last_success=NOW - timedelta(days=3), result=FAILED, error="boom")
    report = build_report(config, NOW)
    jobs = {j.name: j for j in report.jobs}
    assert not jobs["daily"].overdue and jobs["nightly"].overdue and not jobs["plug"].overdue
    assert report.overdue and not report.disk_present and report.daemon is None
    assert jobs["daily"].next_due == NOW - timedelta(hours=6)
    text = render_text(report, NOW)
    assert "daemon: not running" in text and "disk: absent" in text
    assert "daily (image, every 1d): last success" in text and "due now (since 6h)" in text
    assert "nightly (image, at 03:00)" in text and "OVERDUE by" in text and "error: boom" in text
    assert "plug (image, on plug): last success never" in text
    as_json = json.loads(json.dumps(report.to_json()))
    assert as_json["overdue"] is True and as_json["jobs"][1]["error"] == "boom"


def test_runtime_status_live_and_stale(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "disk").write_bytes(b"")
    live = RuntimeStatus(config.settings.runtime_dir)
    progress = Progress("daily", "reading", 5 << 20, 10 << 20, 1 << 20, 2e6, 2.5, "part 5 of 10")
    live.write(progress.describe(), disk_present=True, progress=progress)
    report = build_report(config, NOW)
    assert report.daemon is not None and report.daemon["pid"] == os.getpid()
    daily = next(j for j in report.jobs if j.name == "daily")
    assert daily.progress is not None and daily.progress["done_bytes"] == 5 << 20
    assert "running: daily: reading 5.0 MiB of 10.0 MiB" in render_text(report, NOW)
    live.clear()
    assert not live.path.exists()

    # A status file left by a process that is gone is ignored.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    live.path.write_text(json.dumps({"pid": int(dead.stdout), "activity": "x", "job": "daily"}))
    report = build_report(config, NOW)
    assert report.daemon is None and all(j.progress is None for j in report.jobs)
    assert report.disk_present  # decided from the device path itself
