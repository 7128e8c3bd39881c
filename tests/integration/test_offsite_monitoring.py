"""Offsite copies in `coldvault status` and the metrics file, through the real CLI and restic."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.offsite_env import OffsiteEnv


def _status(env: OffsiteEnv) -> tuple[int, dict[str, object]]:
    done = env.cli("status", "--json")
    assert "Traceback" not in done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return done.returncode, data


def test_status_and_metrics_after_an_offsite_run(tmp_path: Path) -> None:
    env = OffsiteEnv(tmp_path)
    env.settings = {"metrics_file": str(tmp_path / "coldvault.prom")}
    env.add_target("local", str(tmp_path / "repo"), every="1d")
    env.ok("offsite", "init", "local")
    env.ok("run")
    code, before = _status(env)
    [target] = before["offsite"]  # type: ignore[index]
    assert target["jobs"][0]["overdue"] is True and target["jobs"][0]["last_success"] is None
    assert code == 7 and before["offsite_overdue"] is True  # the job is fresh, its copy missing

    env.ok("offsite", "run", "local")
    code, after = _status(env)
    [target] = after["offsite"]  # type: ignore[index]
    [root] = target["jobs"]
    assert code == 0 and after["offsite_overdue"] is False
    assert root["job"] == "root" and root["result"] == "success" and root["last_success"]
    assert root["bytes_added"] > 4 << 20  # 4 MiB of random data (plus manifest)
    assert target["check"]["result"] == "success"  # never checked: due after the first copy
    text = env.ok("status")
    print(text)
    assert "offsite local (every 1d):" in text and "root: last success " in text
    assert "restic check (every 30d): last success " in text
    metrics = (tmp_path / "coldvault.prom").read_text()
    assert 'coldvault_offsite_last_result{job="root",offsite="local"} 1.0' in metrics
    assert 'coldvault_offsite_overdue{job="root",offsite="local"} 0.0' in metrics
    assert 'coldvault_offsite_check_last_result{offsite="local"} 1.0' in metrics


def test_an_unreachable_repository_is_shown_as_skipped(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    env = OffsiteEnv(tmp_path)
    env.add_target("lan", f"rest:http://127.0.0.1:{port}/")
    env.ok("run")
    assert env.cli("offsite", "run", "lan").returncode == 3  # skipped
    code, data = _status(env)
    [root] = data["offsite"][0]["jobs"]  # type: ignore[index]
    assert root["skipped"] is True and root["result"] is None and "refused" in root["error"]
    assert code == 0  # every-session target: the job's own schedule (manual) has no interval
    assert "root: skipped, repository unreachable: " in env.ok("status")
