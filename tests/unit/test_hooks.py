"""Job hooks run in one place (service/hooks.py) for every job type: order, environment,
which failures fail the job, and that ``after`` runs whenever ``before`` started."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tests.unit.monitor_env import folder_config, image_job, run_jobs

from coldvault.config.model import Hooks


def _log_hook(log: Path, label: str) -> tuple[str, ...]:
    line = f'{label} $COLDVAULT_JOB $COLDVAULT_RESULT "$COLDVAULT_ERROR"'
    return ("sh", "-c", f"echo {line} >> {log}")


def _lines(log: Path) -> list[str]:
    return [line.rstrip() for line in log.read_text().splitlines()]


def _hooks(log: Path, **extra: tuple[tuple[str, ...], ...]) -> Hooks:
    kinds = ("before", "after", "on_success", "on_failure")
    values = {k: (_log_hook(log, k),) for k in kinds}
    values.update(extra)
    return Hooks(**values)


def test_hooks_run_in_order_with_one_environment(tmp_path: Path) -> None:
    log = tmp_path / "log"
    job = image_job(tmp_path, hooks=_hooks(log))
    config = folder_config(tmp_path, (job,), hooks=Hooks(on_success=(_log_hook(log, "global"),)))
    [outcome] = run_jobs(config).jobs
    assert outcome.result == "success"
    assert _lines(log) == [
        "before img running",
        "after img running",
        "on_success img success",
        "global img success",
    ]


def test_failing_before_fails_the_job_and_after_still_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coldvault")
    log = tmp_path / "log"
    job = image_job(tmp_path, hooks=_hooks(log, before=(("false",),)))
    [outcome] = run_jobs(folder_config(tmp_path, (job,))).jobs
    assert outcome.result == "failed"
    assert outcome.error is not None and outcome.error.startswith("before hook of job img failed")
    lines = _lines(log)
    assert lines[0] == "after img running"
    assert lines[1].startswith("on_failure img failed before hook of job img failed")
    assert "img: before hook failed" in caplog.text  # the hook_failed event


def test_after_runs_when_the_job_fails_and_its_failure_does_not_hide_the_job_error(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    job = image_job(tmp_path, present=False, hooks=_hooks(log, after=(("false",),)))
    [outcome] = run_jobs(folder_config(tmp_path, (job,))).jobs
    assert outcome.result == "failed"
    assert outcome.error is not None and "img.src" in outcome.error  # the job's own error
    assert _lines(log)[0] == "before img running"


def test_failing_after_fails_a_successful_job_and_on_success_never_does(tmp_path: Path) -> None:
    bad_after = image_job(tmp_path, "a", hooks=Hooks(after=(("false",),)))
    bad_success = image_job(tmp_path, "b", hooks=Hooks(on_success=(("false",),)))
    outcomes = run_jobs(folder_config(tmp_path, (bad_after, bad_success))).jobs
    assert [(o.job, o.result) for o in outcomes] == [("a", "failed"), ("b", "success")]
    assert outcomes[0].error is not None and "after hook of job a failed" in outcomes[0].error
