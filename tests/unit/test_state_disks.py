"""The state file per disk: old single-disk files, several disks, last_seen, hostile entries."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from coldvault.service.state import SUCCESS, StateDamaged, StateFile

T0 = datetime(2026, 11, 23, 3, 0, 12, tzinfo=timezone(timedelta(hours=1)))
T1 = T0 + timedelta(days=1)


def test_version_1_file_is_disk_default(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    entry = {"last_success": T0.isoformat(), "result": "success"}
    path.write_text(json.dumps({"version": 1, "jobs": {"home": entry}}))
    assert StateFile(path).get("home").last_success == T0
    assert StateFile(path, "office").load() == {}
    assert set(StateFile(path).load_disks()) == {"default"}


def test_each_disk_has_its_own_jobs(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateFile(path, "home").update("root", last_success=T0, result=SUCCESS)
    StateFile(path, "office").update("root", last_success=T1, result=SUCCESS)
    StateFile(path).update("root", last_success=T1, result=SUCCESS)
    assert StateFile(path, "home").get("root").last_success == T0
    assert StateFile(path, "office").get("root").last_success == T1
    raw = json.loads(path.read_text())
    # The default disk stays where an older coldvault reads it.
    assert raw["jobs"]["root"]["last_success"] == T1.isoformat()
    assert raw["disks"]["home"]["jobs"]["root"]["last_success"] == T0.isoformat()
    assert "jobs" not in raw["disks"]["default"]


def test_last_seen_is_kept_per_disk(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateFile(path, "home").seen(T0)
    StateFile(path, "office").update("root", result=SUCCESS)
    disks = StateFile(path).load_disks()
    assert disks["home"].last_seen == T0 and disks["office"].last_seen is None
    assert disks["office"].jobs["root"].result == SUCCESS


def test_saving_one_disk_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateFile(path, "home").update("a", result=SUCCESS)
    StateFile(path, "office").save({})
    assert StateFile(path, "home").get("a").result == SUCCESS


@pytest.mark.parametrize(
    ("disks", "field"),
    [
        ({"../x": {}}, "disks.../x"),
        ({"home": []}, "disks.home"),
        ({"home": {"last_seen": "yesterday"}}, "disks.home.last_seen"),
        ({"home": {"last_seen": "2026-01-01T00:00:00"}}, "disks.home.last_seen"),
        ({"home": {"jobs": {"a": {"bytes_read": -1}}}}, "disks.home.jobs.a.bytes_read"),
        ({"home": {"jobs": []}}, "disks.home.jobs"),
        ("home", "disks"),
        ({"home": {"marks": {"root": {"../x": "ab"}}}}, "disks.home.marks.root.../x"),
        ({"home": {"marks": {"root": {"/etc": "ab"}}}}, "disks.home.marks.root./etc"),
        ({"home": {"marks": {"root": {"snap": 5}}}}, "disks.home.marks.root.snap"),
        ({"home": {"marks": {"root": []}}}, "disks.home.marks.root"),
        ({"home": {"marks": {"root": {"s": "x" * 2000}}}}, "disks.home.marks.root"),
        ({"home": {"rolled_back": "yes"}}, "disks.home.rolled_back"),
        ({"home": {"rolled_back": [1]}}, "disks.home.rolled_back[0]"),
    ],
)
def test_hostile_disk_entries_are_named(tmp_path: Path, disks: object, field: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 2, "jobs": {}, "disks": disks}))
    with pytest.raises(StateDamaged) as info:
        StateFile(path, "home").load()
    assert f"damaged: {field}:" in info.value.message


def test_marks_and_findings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateFile(path, "office")
    store.set_marks("root", {"snapshot-2026-11-23-030012": "ab" * 32})
    store.set_marks("home", {"home/home.20261123T030012": "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab"})
    store.change_disk(rolled_back=("root: snapshot-x is missing",))
    disk = StateFile(path, "office").disk_state()
    assert disk.marks["root"] == {"snapshot-2026-11-23-030012": "ab" * 32}
    assert set(disk.marks) == {"root", "home"}
    assert disk.rolled_back == ("root: snapshot-x is missing",)
    assert StateFile(path, "home").disk_state().marks == {}
