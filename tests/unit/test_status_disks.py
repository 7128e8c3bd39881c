"""`coldvault status` with several disks: per job per disk, the overdue rule, absent disks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from coldvault.config.model import (
    Config,
    Disk,
    DiskConfig,
    ImageJob,
    MountConfig,
    Settings,
    SourceRef,
    When,
)
from coldvault.service import due
from coldvault.service.state import FAILED, SUCCESS, StateFile
from coldvault.service.status import build_report, render_text

TZ = timezone(timedelta(hours=2))
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=TZ)
DAY = timedelta(days=1)


def _config(tmp: Path) -> Config:
    def disk(name: str) -> Disk:
        point = tmp / name
        point.mkdir(exist_ok=True)
        return Disk(name, DiskConfig(device=tmp / f"dev-{name}", mount=MountConfig(point, False)))

    home, office = disk("home"), disk("office")
    every_day = When(every=DAY)
    return Config(
        path=tmp / "config.yaml",
        disk=home.config,
        disks=(home, office),
        disk_name="home",
        jobs=(
            ImageJob("root", SourceRef("path", "/dev/null"), "root", when=every_day),
            ImageJob(
                "photos", SourceRef("path", "/dev/null"), "p", disks=("office",), when=every_day
            ),
        ),
        settings=Settings(state_file=tmp / "state.json", runtime_dir=tmp / "run"),
    )


def test_overdue_only_when_overdue_on_every_disk(tmp_path: Path) -> None:
    config = _config(tmp_path)
    state = StateFile(config.settings.state_file, "home")
    state.update("root", last_success=NOW - 5 * DAY, result=SUCCESS)  # overdue on home
    state.for_disk("office").update("root", last_success=NOW - 2 * DAY, result=SUCCESS)
    report = build_report(config, NOW)
    root = {j.name: j for j in report.jobs}["root"]
    assert [d.disk for d in root.disks] == ["home", "office"]
    assert root.disks[0].overdue and not root.disks[1].overdue
    assert not root.overdue  # office holds a backup within its interval
    assert root.last_success == NOW - 2 * DAY

    state.for_disk("office").update("root", last_success=NOW - 4 * DAY)
    root = {j.name: j for j in build_report(config, NOW).jobs}["root"]
    assert root.overdue and all(d.overdue for d in root.disks)


def test_text_and_json_show_each_disk(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "dev-home").write_bytes(b"")  # home is attached
    state = StateFile(config.settings.state_file, "home")
    state.update("root", last_success=NOW - timedelta(hours=2), result=SUCCESS)
    state.seen(NOW - timedelta(hours=2))
    office = state.for_disk("office")
    office.update("photos", last_attempt=NOW - DAY, result=FAILED, error="disk full")
    office.seen(NOW - 41 * DAY)
    report = build_report(config, NOW)
    text = render_text(report, NOW)
    assert "disk home: present (" in text and "last seen 2026-11-23 10:00 (2h ago)" in text
    assert "disk office: absent (" in text
    assert "WARNING: office: last seen 41 days ago" in text
    assert "root (image, every 1d): last success 2026-11-23 10:00 (2h ago)" in text
    assert (
        "  on home: last success 2026-11-23 10:00 (2h ago); last result success; next in 22h"
        in (text)
    )
    assert "  on office: last success never; last result -; next due now" in text
    assert "photos (image, every 1d)" in text and "  on home" not in text.split("photos")[1]
    assert "    error: disk full" in text
    data = json.loads(json.dumps(report.to_json()))
    assert [d["name"] for d in data["disks"]] == ["home", "office"]
    assert data["disks"][1]["absent_days"] == 41 and data["disks"][0]["warning"] is None
    assert data["disks"][1]["warning"] == "office: last seen 41 days ago"
    root = data["jobs"][0]
    assert [d["disk"] for d in root["disks"]] == ["home", "office"]
    assert root["disks"][1]["last_success"] is None and root["disks"][1]["overdue"] is True


def test_single_disk_text_is_unchanged_but_warns(tmp_path: Path) -> None:
    config = _config(tmp_path)
    single = Config(
        path=config.path, disk=config.disk, jobs=config.jobs[:1], settings=config.settings
    )
    StateFile(config.settings.state_file).seen(NOW - 31 * DAY)
    text = render_text(build_report(single, NOW), NOW)
    assert "\ndisk: absent (" in text and "  on default" not in text
    assert "WARNING: default: last seen 31 days ago" in text


def test_absent_too_long_rule() -> None:
    limit = 30 * DAY
    assert due.absent_too_long(NOW - 31 * DAY, False, NOW, limit) == 31 * DAY
    assert due.absent_too_long(NOW - 29 * DAY, False, NOW, limit) is None
    assert due.absent_too_long(NOW - 31 * DAY, True, NOW, limit) is None  # it is here
    assert due.absent_too_long(None, False, NOW, limit) is None  # never seen: no age
    assert due.absent_too_long(NOW - 300 * DAY, False, NOW, None) is None  # never warn


def test_the_running_daemon_tells_which_disk_is_present(tmp_path: Path) -> None:
    """With several disks the daemon's udev view wins over a look at the device paths."""
    from coldvault.service.status import RuntimeStatus

    config = _config(tmp_path)
    (tmp_path / "dev-home").write_bytes(b"")  # the path exists, but the daemon saw it go
    looked = {d.name: d.present for d in build_report(config, NOW).disks}
    assert looked == {"home": True, "office": False}
    live = RuntimeStatus(config.settings.runtime_dir)  # this process stands for the daemon
    live.write("disk present", disk_present=True, disks_present={"home": False, "office": True})
    report = build_report(config, NOW)
    assert {d.name: d.present for d in report.disks} == {"home": False, "office": True}
    assert "disk office: present (" in render_text(report, NOW)
    live.write("x", disk_present=True, disks_present={"home": True})  # not every disk: ignored
    assert {d.name: d.present for d in build_report(config, NOW).disks} == looked
