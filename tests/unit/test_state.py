"""The state file: round trip, atomic replacement, damaged file, cache invalidation."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from coldvault.errors import ColdvaultError
from coldvault.service.state import FAILED, SUCCESS, JobState, StateFile

T0 = datetime(2026, 11, 23, 3, 0, 12, tzinfo=timezone(timedelta(hours=1)))


def test_absent_file_means_never_ran(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "state.json")
    assert store.load() == {}
    assert store.get("home") == JobState()


def test_update_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    store = StateFile(path)
    store.update(
        "home",
        last_attempt=T0,
        last_success=T0,
        result=SUCCESS,
        bytes_written=123,
        duration=4.5,
        summary="3 parts changed",
    )
    store.update("root", last_attempt=T0, result=FAILED, error="source /dev/sdz2 is missing")
    fresh = StateFile(path).load()  # a second reader sees exactly what was written
    assert fresh["home"] == JobState(T0, T0, SUCCESS, 0, 123, 4.5, None, "3 parts changed")
    assert fresh["root"].error == "source /dev/sdz2 is missing"
    assert fresh["root"].last_success is None
    raw = json.loads(path.read_text())
    assert raw["jobs"]["home"]["last_success"] == "2026-11-23T03:00:12+01:00"
    # Atomic write leaves no temporary file behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_update_rereads_what_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    daemon.update("a", result=SUCCESS)
    assert daemon.load()["a"].result == SUCCESS  # now cached in `daemon`
    cli.update("b", result=FAILED)
    os.utime(path, ns=(1, 1))  # make sure the change is visible even within one mtime tick
    daemon.update("a", bytes_written=7)
    assert set(StateFile(path).load()) == {"a", "b"}


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 9, "jobs": {"x": {"result": "success", "new": 1}}}))
    assert StateFile(path).get("x").result == "success"


@pytest.mark.parametrize("content", ["{", "[]", '{"jobs": {"x": {"last_success": "yesterday"}}}'])
def test_damaged_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(ColdvaultError, match=r"state file .* is damaged"):
        StateFile(path).load()


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        ColdvaultError, match=r"cannot (read|write) the state file .*: Not a directory"
    ):
        StateFile(blocker / "state.json").update("x", result=SUCCESS)
