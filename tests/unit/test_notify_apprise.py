"""Apprise notifications delivered to a real HTTP server on 127.0.0.1 (``json://``)."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
from pathlib import Path

import pytest
from tests.conftest import require
from tests.unit.monitor_env import folder_config, http_server, image_job, run_jobs

from coldvault.config.model import NotifyTarget

require(importlib.util.find_spec("apprise") is not None, "apprise is not installed")


def test_failure_and_disk_done_are_delivered_with_a_readable_text(tmp_path: Path) -> None:
    host = socket.gethostname().split(".")[0]
    with http_server() as (base, got):
        url = base.replace("http://", "json://") + "/hook"
        good = image_job(tmp_path, "good")
        bad = image_job(tmp_path, "bad", present=False)
        only_success = NotifyTarget(url=url + "-success", on=("success",))
        config = folder_config(
            tmp_path,
            (good, bad),
            notify=(NotifyTarget(url=url, on=("failure", "disk_done")), only_success),
        )
        run_jobs(config)
    by_path: dict[str, list[dict[str, str]]] = {}
    for r in got:
        assert r.method == "POST" and r.headers["Content-Type"].startswith("application/json")
        by_path.setdefault(r.path, []).append(json.loads(r.body))
    failure, done = by_path["/hook"]
    [success] = by_path["/hook-success"]  # each target gets only the events it lists
    print(json.dumps(done, indent=2))  # the report's sample
    assert failure["type"] == "failure"
    assert failure["title"] == f"coldvault on {host}: bad failed"
    assert failure["message"].startswith(f"On {host}, the backup job bad on disk default failed")
    assert "bad.src does not exist" in failure["message"]
    assert "What to do: check `source:` in the job" in failure["message"]
    assert done["title"] == f"coldvault on {host}: disk default may be unplugged"
    assert done["type"] == "failure"  # one job failed
    text = done["message"]
    assert "closed it: the disk may be unplugged" in text
    assert "What ran: good succeeded (293.0 KiB in " in text and "bad FAILED (image source " in text
    assert "In all 293.0 KiB written in " in text
    assert success["title"] == f"coldvault on {host}: good done"


def test_an_unreachable_target_is_logged_masked_and_the_backup_stands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with http_server() as (base, _):
        pass  # closed: connections to its port are refused
    caplog.set_level(logging.INFO, logger="coldvault")
    url = base.replace("http://", "json://") + "/SECRET-TOPIC?cto=2&rto=2"
    job = image_job(tmp_path, "bad", present=False)
    config = folder_config(tmp_path, (job,), notify=(NotifyTarget(url=url, on=("failure",)),))
    [outcome] = run_jobs(config).jobs
    assert outcome.result == "failed"  # the job's own result, nothing added
    failed = [
        r
        for r in caplog.records
        if r.__dict__.get("journal_fields", {}).get("COLDVAULT_EVENT") == "notify_failed"
    ]
    assert len(failed) == 1
    assert failed[0].getMessage().startswith("failure notification to json://127.0.0.1:")
    assert "SECRET" not in caplog.text


def test_verify_failed_is_sent_and_disk_done_names_the_verification(tmp_path: Path) -> None:
    from coldvault.progress import no_progress
    from coldvault.service.runner import run_session
    from coldvault.system.cancel import CancelToken

    with http_server() as (base, got):
        url = base.replace("http://", "json://") + "/v"
        job = image_job(tmp_path, "img", snapshots=0)
        target = NotifyTarget(url=url, on=("verify_failed", "disk_done"))
        config = folder_config(tmp_path, (job,), notify=(target,))
        run_jobs(config)  # the backup
        part = sorted(p for p in (tmp_path / "backup" / "img").iterdir() if p.is_file())
        damaged = next(p for p in part if p.stat().st_size > 0 and "manifest" not in p.name)
        data = bytearray(damaged.read_bytes())
        data[100] ^= 0xFF
        damaged.write_bytes(bytes(data))
        got.clear()
        run_session(config, [], cancel=CancelToken(), progress=no_progress, verify=True)
    messages = [json.loads(r.body) for r in got]
    assert [m["title"].split(": ", 1)[1] for m in messages] == [
        "verify failed (img)",
        "disk default may be unplugged",
    ]
    assert (
        "verify failed for job img (disk default): verification failed: 1 problem(s)"
        in (messages[0]["message"])
    )
    assert "What ran: img: verification failed: 1 problem(s)" in messages[1]["message"]


def test_overdue_is_sent_once_per_episode(tmp_path: Path) -> None:
    from datetime import timedelta

    from coldvault.config.model import When
    from coldvault.monitor.overdue import OverdueWatch
    from coldvault.service import state as st
    from coldvault.service.due import local_now

    now = local_now()
    with http_server() as (base, got):
        url = base.replace("http://", "json://") + "/o"
        job = image_job(tmp_path, "img", when=When(every=timedelta(days=1)))
        config = folder_config(tmp_path, (job,), notify=(NotifyTarget(url=url, on=("overdue",)),))
        state = st.StateFile(config.settings.state_file)
        state.update("img", last_success=now - timedelta(days=3), result=st.SUCCESS)
        watch = OverdueWatch()
        assert watch.check(config, now) == ["img"]
        watch._next = 0.0  # the next check is due at once
        assert watch.check(config, now) == []  # still overdue: not sent again
        state.update("img", last_success=now, result=st.SUCCESS)
        watch._next = 0.0
        assert watch.check(config, now) == []
        watch._next = 0.0
        assert watch.check(config, now + timedelta(days=5)) == ["img"]  # a new episode
    messages = [json.loads(r.body) for r in got]
    assert len(messages) == 2
    assert (
        "the backup job img (disk default) is overdue: its last success was 3d"
        in (messages[0]["message"])
    )
