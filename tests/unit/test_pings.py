"""Dead-man's-switch pings to a real HTTP server on 127.0.0.1 around real job runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tests.unit.monitor_env import folder_config, http_server, image_job, run_jobs

from coldvault.config.model import ImageJob
from coldvault.monitor import pings
from coldvault.monitor.secrets import Masker, mask_url


def test_start_success_and_fail_pings_with_the_log_as_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coldvault")  # the daemon's level: INFO lines kept
    with http_server() as (base, got):
        good = image_job(tmp_path, "good")
        bad = image_job(tmp_path, "bad", present=False)
        config = folder_config(tmp_path, (good, bad), ping=f"{base}/ping/KEY-{{job}}")
        outcomes = run_jobs(config).jobs
    assert [o.result for o in outcomes] == ["success", "failed"]
    assert [(r.method, r.path) for r in got] == [
        ("POST", "/ping/KEY-good/start"),
        ("POST", "/ping/KEY-good"),
        ("POST", "/ping/KEY-bad/start"),
        ("POST", "/ping/KEY-bad/fail"),
    ]
    assert got[0].body == b""
    assert b"INFO: good: 2 parts, 2 changed, 293.0 KiB read" in got[1].body  # last log lines
    fail = got[3].body.decode()
    assert "ERROR: bad: backup failed: image source" in fail and "bad.src does not exist" in fail


def test_a_job_ping_replaces_the_default_and_kuma_urls_get_status_and_msg(tmp_path: Path) -> None:
    with http_server() as (base, got):
        kuma = f"{base}/api/push/TOKEN?status=up&msg=OK&ping="
        good = image_job(tmp_path, "good", ping=kuma)
        bad = image_job(tmp_path, "bad", present=False, ping=kuma)
        run_jobs(folder_config(tmp_path, (good, bad), ping=f"{base}/unused/{{job}}"))
    assert [r.method for r in got] == ["GET", "GET"]  # Kuma has no start ping
    up, down = (r.path for r in got)
    assert up.startswith("/api/push/TOKEN?status=up&msg=") and "ping=" in up
    assert down.startswith("/api/push/TOKEN?status=down&msg=")
    assert "does+not+exist" in down or "does%20not%20exist" in down


def test_a_server_that_never_answers_costs_one_timeout_and_is_logged_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pings, "TIMEOUT_SECONDS", 1.0)  # the test's own, shorter timeout
    caplog.set_level(logging.INFO, logger="coldvault")
    with http_server(answer=False) as (base, got):
        url = f"{base}/SECRET-UUID-1234"
        job: ImageJob = image_job(tmp_path, "good", ping=url)
        [outcome] = run_jobs(folder_config(tmp_path, (job,))).jobs
    assert outcome.result == "success"  # the backup's result stands
    assert [r.path for r in got] == ["/SECRET-UUID-1234/start", "/SECRET-UUID-1234"]  # no retry
    failed = [r for r in caplog.records if "ping to" in r.getMessage()]
    assert len(failed) == 2
    assert "no answer within 1 s" in failed[0].getMessage()
    fields = failed[0].__dict__["journal_fields"]
    assert fields["COLDVAULT_EVENT"] == "notify_failed"
    assert "SECRET" not in caplog.text


def test_a_refused_connection_is_tried_twice_then_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with http_server() as (base, _):
        pass  # closed: its port now refuses connections
    caplog.set_level(logging.INFO, logger="coldvault")
    assert not pings.send_ping(f"{base}/KEY-abcdef", pings.SUCCESS, ["x"], job="j")
    assert "j: success ping to http://127.0.0.1:" in caplog.text
    assert "KEY-abcdef" not in caplog.text


def test_masking_keeps_hosts_and_hides_keys_and_tokens() -> None:
    assert mask_url("https://hc-ping.com/2f1c7b0e-6a8d") == "https://hc-ping.com/***"
    assert mask_url("tgram://123456:ABCDEF/987654") == "tgram://***/***"
    assert mask_url("mailtos://me:pw@example.org?to=a@b.org") == "mailtos://***@example.org/***"
    assert mask_url("json://127.0.0.1:8080/") == "json://127.0.0.1:8080/"
    mask = Masker(["tgram://123456:ABCDEF/987654"])
    assert mask("bot 123456:ABCDEF refused chat 987654") == "bot *** refused chat ***"


def test_config_validate_shows_urls_masked(tmp_path: Path, coldvault_cmd: list[str]) -> None:
    import subprocess

    (tmp_path / "backup").mkdir()
    (tmp_path / "c.yaml").write_text(
        f"disk: {{mount: {{point: {tmp_path}/backup, require_mount: false}}}}\n"
        "settings:\n"
        "  ping: https://hc-ping.com/SECRET-PING-KEY/{job}\n"
        "  notify:\n"
        "    - url: tgram://123456:SECRET-BOT-TOKEN/987654321\n"
        "      on: [failure, disk_done]\n"
        "jobs:\n"
        "  - {name: a, type: image, source: /dev/null}\n"
        "  - {name: b, type: image, source: /dev/null, ping: 'https://k.example.org/api/push/SECRET-KUMA?status=up'}\n"
    )
    out = subprocess.run(
        [*coldvault_cmd, "config", "validate", str(tmp_path / "c.yaml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ping a: https://hc-ping.com/***" in out
    assert "ping b: https://k.example.org/***" in out
    assert "notify: tgram://***/*** on failure, disk_done" in out
    assert "SECRET" not in out and "987654321" not in out
