"""``offsite_failed`` messages delivered to a real HTTP server on 127.0.0.1 (``json://``), from a
daemon session copying to a real local restic repository."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from tests.conftest import require, require_programs
from tests.unit.monitor_env import folder_config, http_server, image_job, run_jobs

from coldvault.config.model import Config, NotifyTarget, OffsiteTarget
from coldvault.offsite import record
from coldvault.offsite.run import restic_for
from coldvault.progress import no_progress
from coldvault.service.runner import run_session
from coldvault.system.cancel import CancelToken

require(importlib.util.find_spec("apprise") is not None, "apprise is not installed")


def _config(tmp: Path, url: str, repository: str) -> tuple[Config, OffsiteTarget]:
    require_programs("restic")
    password = tmp / "restic.pass"
    password.write_text("right password\n")
    password.chmod(0o600)
    target = OffsiteTarget("s3", repository, password)
    listens = NotifyTarget(url=url, on=("offsite_failed",))
    config = folder_config(tmp, (image_job(tmp, "img"),), notify=(listens,))
    return replace(config, offsite=(target,)), target


def _offsite_session(config: Config) -> None:
    run_session(config, [], cancel=CancelToken(), progress=no_progress, offsite=True)


def test_a_failed_offsite_copy_sends_host_target_job_and_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coldvault")
    host = socket.gethostname().split(".")[0]
    with http_server() as (base, got):
        url = base.replace("http://", "json://") + "/o"
        config, target = _config(tmp_path, url, str(tmp_path / "repo"))
        restic_for(config, target, CancelToken()).init()
        run_jobs(config)  # the backup the copy reads
        target.password_file.write_text("a wrong password\n")
        _offsite_session(config)
        failed = [json.loads(r.body) for r in got]
        target.password_file.write_text("right password\n")
        got.clear()
        _offsite_session(config)  # works again: nothing is sent
        assert got == []
    [message] = failed
    print(json.dumps(message, indent=2))  # the report's sample
    assert message["type"] == "failure"
    assert message["title"] == f"coldvault on {host}: offsite copy failed (s3, img)"
    text = message["message"]
    assert text.startswith(f"On {host}, the offsite copy of job img to s3 failed: ")
    assert "the password does not open it" in text
    assert f"What to do: check {target.password_file}" in text
    assert str(tmp_path / "repo") not in text.replace(str(target.password_file), "")  # masked
    state = record.state_of(config, target).get("img")
    assert state.result == "success" and state.error is None
    [event] = [
        r.__dict__["journal_fields"]
        for r in caplog.records
        if r.__dict__.get("journal_fields", {}).get("COLDVAULT_EVENT") == "offsite_failed"
    ]
    assert event["COLDVAULT_JOB"] == "img" and event["COLDVAULT_OFFSITE"] == "s3"


def test_an_unreachable_repository_sends_nothing(tmp_path: Path) -> None:
    with http_server() as (closed, _):
        pass  # closed: connections to its port are refused
    with http_server() as (base, got):
        url = base.replace("http://", "json://") + "/o"
        repository = "rest:" + closed + "/"
        config, target = _config(tmp_path, url, repository)
        run_jobs(config)
        _offsite_session(config)
        assert got == []  # skipped, retried at the next run: not a failure
    state = record.state_of(config, target).get("img")
    assert state.result is None and state.error is not None  # the status shows why
