"""The state file survives anything: generated states, wrong types, random JSON, random bytes.

The loader's contract: it returns every job's state, or raises StateDamaged
(a ColdvaultError naming the file and the field); it never raises anything
else for the content of the file. What it returns can be used: the status
report, the due rules and the scheduled-verification choice run on it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import ROOT

from coldvault.config.model import (
    Config,
    DiskConfig,
    ImageJob,
    MountConfig,
    Settings,
    SourceRef,
    VerifySchedule,
    When,
)
from coldvault.errors import ColdvaultError
from coldvault.jobs.verify_steps import VerifyPosition
from coldvault.service.scheduled_verify import jobs_to_verify
from coldvault.service.state import (
    RESULTS,
    VERIFY_RESULTS,
    JobState,
    StateDamaged,
    StateFile,
    VerifyState,
)
from coldvault.service.status import build_report, render_text

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
PATH = Path("/var/lib/coldvault/state.json")
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- strategies ----------------------------------------------------------------------------

aware = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(8999, 12, 30), timezones=st.timezones()
)
fixed_offset = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
times = st.none() | st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(8999, 12, 30), timezones=fixed_offset
)
counts = st.integers(0, 2**63 - 1)
text = st.text(max_size=40).filter(lambda s: "\0" not in s)
rel = st.from_regex(r"[a-z0-9_.-]{1,12}(/[a-z0-9_-]{1,8}){0,2}", fullmatch=True).filter(
    lambda s: ".." not in s.split("/")
)
positions = st.none() | st.builds(
    VerifyPosition,
    snapshot=rel | st.just(""),
    part=counts,
    file=rel | st.just(""),
    offset=counts,
    targets=st.lists(rel, max_size=3).map(tuple),
)
verify_states = st.builds(
    VerifyState,
    last_finished=times,
    result=st.none() | st.sampled_from(VERIFY_RESULTS),
    problems=st.lists(text, max_size=3).map(tuple),
    problem_count=counts,
    items=counts,
    bytes_read=counts,
    sessions=counts,
    error=st.none() | text,
    notes=st.lists(text, max_size=2).map(tuple),
    position=positions,
    round_started=times,
    round_bytes=counts,
    round_items=counts,
    round_sessions=counts,
    round_problems=st.lists(text, max_size=2).map(tuple),
    round_problem_count=counts,
)
job_states = st.builds(
    JobState,
    last_attempt=times,
    last_success=times,
    result=st.none() | st.sampled_from(RESULTS),
    bytes_read=counts,
    bytes_written=counts,
    duration=st.none() | st.floats(0, 3e9),
    error=st.none() | text,
    summary=st.none() | text,
    verify=verify_states,
)
job_names = st.sampled_from(["daily", "nightly", "other"])
state_maps = st.dictionaries(job_names, job_states, max_size=3)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


def _document(jobs: dict[str, JobState]) -> dict[str, Any]:
    return {"version": 1, "jobs": {n: s.to_json() for n, s in jobs.items()}}


def _config(tmp: Path) -> Config:
    def job(name: str, when: When) -> ImageJob:
        return ImageJob(
            name,
            SourceRef("path", "/dev/null"),
            name,
            when=when,
            verify=VerifySchedule(timedelta(days=7), 1 << 30),
        )

    return Config(
        path=tmp / "config.yaml",
        disk=DiskConfig(device=tmp / "disk", mount=MountConfig(tmp, require_mount=False)),
        jobs=(job("daily", When(every=timedelta(days=1))), job("nightly", When(on_plug=True))),
        settings=Settings(state_file=tmp / "state.json", runtime_dir=tmp / "run"),
    )


def _usable(jobs: dict[str, JobState], tmp: Path) -> None:
    """What the daemon and ``status`` do with a loaded state must not fail."""
    config = _config(tmp)
    for now in (NOW, NOW.astimezone(timezone(timedelta(hours=-11)))):
        jobs_to_verify(config, jobs, now)
        report = build_report(config, now)
        render_text(report, now)
        json.dumps(report.to_json())


def _load_bytes(tmp: Path, raw: bytes) -> dict[str, JobState] | StateDamaged:
    path = tmp / "state.json"
    path.write_bytes(raw)
    try:
        return StateFile(path).load()
    except StateDamaged as exc:
        assert str(path) in exc.message and "is damaged" in exc.message
        return exc


# -- properties ----------------------------------------------------------------------------


@FUZZ
@given(jobs=state_maps)
def test_valid_states_round_trip_and_are_usable(tmp_path: Path, jobs: dict[str, JobState]) -> None:
    store = StateFile(tmp_path / "state.json")
    store.save(jobs)
    loaded = StateFile(store.path).load()
    assert loaded == jobs
    _usable(loaded, tmp_path)


@FUZZ
@given(jobs=state_maps.filter(bool), data=st.data())
def test_one_wrong_field_is_named(
    tmp_path: Path, jobs: dict[str, JobState], data: st.DataObject
) -> None:
    doc = _document(jobs)
    name = data.draw(st.sampled_from(sorted(doc["jobs"])))
    entry = doc["jobs"][name]
    inner = data.draw(st.booleans())
    target = entry["verify"] if inner else entry
    key = data.draw(st.sampled_from(sorted(k for k in target if k != "position")))
    value = data.draw(json_values)
    target[key] = value
    result = _load_bytes(tmp_path, json.dumps(doc).encode())
    if isinstance(result, StateDamaged):
        field = f"jobs.{name}.verify.{key}" if inner else f"jobs.{name}.{key}"
        assert field in result.message
    else:
        _usable(result, tmp_path)


@FUZZ
@given(doc=json_values)
def test_random_json(tmp_path: Path, doc: object) -> None:
    result = _load_bytes(tmp_path, json.dumps(doc).encode())
    if not isinstance(result, StateDamaged):
        _usable(result, tmp_path)


@FUZZ
@given(jobs=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
def test_random_job_entries(tmp_path: Path, jobs: dict[str, Any]) -> None:
    result = _load_bytes(tmp_path, json.dumps({"version": 1, "jobs": jobs}).encode())
    if not isinstance(result, StateDamaged):
        _usable(result, tmp_path)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, raw: bytes) -> None:
    result = _load_bytes(tmp_path, raw)
    if not isinstance(result, StateDamaged):
        _usable(result, tmp_path)


@FUZZ
@given(jobs=state_maps, cut=st.integers(0, 4000))
def test_truncated_files(tmp_path: Path, jobs: dict[str, JobState], cut: int) -> None:
    raw = json.dumps(_document(jobs)).encode()
    result = _load_bytes(tmp_path, raw[: min(cut, len(raw) - 1)])
    assert isinstance(result, StateDamaged) or result == {}  # "{}"-like prefixes cannot occur


# -- hand-picked cases ---------------------------------------------------------------------

NAIVE = {"last_attempt": "2026-12-01T18:00:00", "result": "failed"}


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (NAIVE, "jobs.x.last_attempt: '2026-12-01T18:00:00' has no UTC offset"),
        ({"last_success": "0001-01-01T00:00:00+14:00"}, "jobs.x.last_success"),
        ({"last_success": "yesterday"}, "jobs.x.last_success"),
        ({"bytes_written": -1}, "jobs.x.bytes_written: -1 is out of range"),
        ({"bytes_written": 2**64}, "jobs.x.bytes_written"),
        ({"bytes_written": True}, "jobs.x.bytes_written: expected a whole number"),
        ({"bytes_written": 1.5}, "jobs.x.bytes_written: expected a whole number"),
        ({"duration": "5"}, "jobs.x.duration: expected a number"),
        ({"duration": 10**400}, "jobs.x.duration"),
        ({"result": "running"}, "jobs.x.result"),
        ({"error": ["x"]}, "jobs.x.error: expected a string"),
        ({"verify": []}, "jobs.x.verify: expected an object"),
        ({"verify": {"position": {"snapshot": "../../etc"}}}, "jobs.x.verify.position.snapshot"),
        ({"verify": {"position": {"targets": ["/abs"]}}}, "jobs.x.verify.position.targets[0]"),
        ({"verify": {"problems": "one"}}, "jobs.x.verify.problems: expected a list"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, entry: dict[str, Any], field: str) -> None:
    result = _load_bytes(tmp_path, json.dumps({"version": 1, "jobs": {"x": entry}}).encode())
    assert isinstance(result, StateDamaged)
    assert field in result.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"version": 1, "jobs": {"x": {"duration": NaN}}}',
        b'{"version": 1, "jobs": {"x": {"duration": Infinity}}}',
        b'{"version": 1, "jobs": {"x": {"bytes_read": ' + b"9" * 5000 + b"}}}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": "1", "jobs": {}}',
        b'{"version": 1}',
        b"\xff\xfe{}",
        b"",
    ],
)
def test_bad_documents(tmp_path: Path, raw: bytes) -> None:
    assert isinstance(_load_bytes(tmp_path, raw), StateDamaged)


def test_nan_is_not_a_number(tmp_path: Path) -> None:
    assert math.isnan(json.loads("NaN"))  # Python's json accepts it: the loader must not


def test_a_fifo_or_folder_at_the_path_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    with pytest.raises(StateDamaged, match="not a regular file"):
        StateFile(fifo).load()
    folder = tmp_path / "dir.json"
    folder.mkdir()
    with pytest.raises(StateDamaged, match="not a regular file"):
        StateFile(folder).load()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ColdvaultError, match=r"cannot read the state file .*: Not a directory"):
        StateFile(blocker / "state.json").load()


# -- through a real `coldvault status` process ------------------------------------------------


def _status(tmp: Path, content: bytes) -> subprocess.CompletedProcess[str]:
    config = tmp / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "disk": {"device": str(tmp / "disk"), "mount": {"point": str(tmp / "backup")}},
                "settings": {
                    "state_file": str(tmp / "state.json"),
                    "runtime_dir": str(tmp / "run"),
                    "lock_file": str(tmp / "lock"),
                },
                "jobs": [
                    {"name": "x", "type": "image", "source": "/dev/null", "every": "1d"},
                ],
            }
        )
    )
    (tmp / "state.json").write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "daemon")}
    return subprocess.run(
        [sys.executable, "-m", "coldvault", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (json.dumps({"version": 1, "jobs": {"x": NAIVE}}).encode(), "jobs.x.last_attempt"),
        (b'{"version": 1, "jobs": {"x": {"bytes_read": "many"}}}', "jobs.x.bytes_read"),
        (b"\x00\x01garbage", "not JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[" * 50_000, "nested too deeply"),
    ],
)
def test_status_process_shows_a_damaged_state_file(
    tmp_path: Path, content: bytes, field: str
) -> None:
    out = _status(tmp_path, content)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert f"state file {tmp_path / 'state.json'} is damaged" in out.stdout
    assert field in out.stdout
    assert "x (image, every 1d): unknown" in out.stdout


def test_what_coldvault_writes_always_reads_back(tmp_path: Path) -> None:
    """A huge or NUL-bearing message (command stderr) is clipped, never a damaged file."""
    store = StateFile(tmp_path / "state.json")
    long = "x" * 200_000 + "\0tail"
    store.update(
        "x",
        error=long,
        summary="a\0b",
        verify=VerifyState(problems=(long,), error=long, notes=("\0",)),
    )
    got = StateFile(store.path).get("x")
    assert got.error is not None and got.error.endswith("...") and "\0" not in got.error
    assert got.summary == "a\\0b" and got.verify.problems[0].startswith("xxx")


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps({"version": 1, "jobs": {"x": v}}).encode())
    | state_maps.map(lambda jobs: json.dumps(_document(jobs)).encode())
)
def test_status_process_on_generated_state_files(tmp_path: Path, content: bytes) -> None:
    out = _status(tmp_path, content)
    assert out.returncode in (0, 1, 6, 7), out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    if out.returncode == 1:
        assert "is damaged" in out.stdout
