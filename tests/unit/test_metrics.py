"""``settings.metrics_file`` scraped through the real prometheus-node-exporter's textfile
collector after a successful and a failed job."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.conftest import require
from tests.unit.monitor_env import folder_config, image_job, run_jobs

EXPORTER = "prometheus-node-exporter"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The exporter reading a temp folder; yields (folder, metrics URL)."""
    binary = shutil.which(EXPORTER) or shutil.which("node_exporter")
    require(binary is not None, f"{EXPORTER} is not installed (apt install {EXPORTER})")
    assert binary is not None
    folder = tmp_path_factory.mktemp("textfile")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30  # a failure bound, not a timing claim
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=5).read()
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the exporter did not start listening"
            time.sleep(0.1)
        yield folder, url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def scrape(url: str) -> dict[str, float]:
    """Every sample of coldvault's and the textfile collector's, by its full series name."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("coldvault_", "node_textfile_scrape_error")):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def test_success_and_failure_are_scraped(exporter: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = exporter
    good = image_job(tmp_path, "good")
    bad = image_job(tmp_path, "bad", present=False)
    config = folder_config(tmp_path, (good, bad), metrics_file=folder / "coldvault.prom")
    before = time.time()
    run_jobs(config)
    got = scrape(url)
    print("\n".join(f"{k} {v}" for k, v in sorted(got.items())))  # the report's sample
    assert got["node_textfile_scrape_error"] == 0
    g, b = '{disk="default",job="good"}', '{disk="default",job="bad"}'
    assert got[f"coldvault_job_last_result{g}"] == 1
    assert got[f"coldvault_job_last_result{b}"] == 0
    assert got[f"coldvault_job_last_success_timestamp_seconds{g}"] >= int(before)
    assert f"coldvault_job_last_success_timestamp_seconds{b}" not in got  # never succeeded
    assert got[f"coldvault_job_last_attempt_timestamp_seconds{b}"] >= int(before)
    assert got[f"coldvault_job_last_read_bytes{g}"] == 300_000
    assert got[f"coldvault_job_last_bytes{g}"] >= 300_000
    assert got[f"coldvault_job_last_bytes{b}"] == 0
    assert got[f"coldvault_job_overdue{g}"] == 0
    assert got['coldvault_disk_last_seen_timestamp_seconds{disk="default"}'] >= int(before)
    assert got[f"coldvault_verify_problems{g}"] == 0
    assert not list(folder.glob(".*tmp"))  # written atomically, nothing left behind

    # The failing job is fixed: the next session turns its result to 1.
    (tmp_path / "bad.src").write_bytes(bytes(4096))
    run_jobs(config)
    again = scrape(url)
    assert again[f"coldvault_job_last_result{b}"] == 1
    assert again[f"coldvault_job_last_success_timestamp_seconds{b}"] >= int(before)
    assert again["node_textfile_scrape_error"] == 0


def test_offsite_series_are_scraped(exporter: tuple[Path, str], tmp_path: Path) -> None:
    from datetime import timedelta

    from coldvault.config.model import OffsiteTarget, When
    from coldvault.monitor.metrics import write_metrics
    from coldvault.offsite import record
    from coldvault.service import state as st
    from coldvault.service.due import local_now

    folder, url = exporter
    now = local_now()
    day = timedelta(days=1)
    s3 = OffsiteTarget("s3", "/srv/restic", tmp_path / "pw", when=When(every=day))
    lan = OffsiteTarget("lan", "/srv/lan", tmp_path / "pw", jobs=("home",))
    jobs = (image_job(tmp_path, "home"), image_job(tmp_path, "root"))
    config = replace(
        folder_config(tmp_path, jobs, metrics_file=folder / "coldvault.prom"), offsite=(s3, lan)
    )
    state = record.state_of(config, s3)
    state.update(
        "home", last_attempt=now, last_success=now, result=st.SUCCESS, bytes_written=11_000_000
    )
    state.update("root", last_attempt=now, last_success=now - 3 * day, result=st.FAILED, error="x")
    state.update(record.CHECK, last_success=now - day, result=st.SUCCESS)
    skipped = record.state_of(config, lan)
    skipped.update("home", last_attempt=now, error="lan: connection refused")  # never reached
    write_metrics(config, now)
    got = scrape(url)
    print("\n".join(f"{k} {v}" for k, v in sorted(got.items()) if "offsite" in k))
    assert got["node_textfile_scrape_error"] == 0
    home, root = '{job="home",offsite="s3"}', '{job="root",offsite="s3"}'
    assert got[f"coldvault_offsite_last_success_timestamp_seconds{home}"] == pytest.approx(
        now.timestamp()
    )
    assert got[f"coldvault_offsite_last_result{home}"] == 1
    assert got[f"coldvault_offsite_last_bytes_added{home}"] == 11_000_000
    assert got[f"coldvault_offsite_overdue{home}"] == 0
    assert got[f"coldvault_offsite_last_result{root}"] == 0
    assert got[f"coldvault_offsite_overdue{root}"] == 1  # 3 days > 1 + 1 day
    assert got[f"coldvault_offsite_unreachable{root}"] == 0  # failed, not skipped
    assert got['coldvault_offsite_check_last_result{offsite="s3"}'] == 1
    lan_home = '{job="home",offsite="lan"}'
    assert got[f"coldvault_offsite_unreachable{lan_home}"] == 1
    assert f"coldvault_offsite_last_result{lan_home}" not in got  # no result yet
    assert f"coldvault_offsite_last_success_timestamp_seconds{lan_home}" not in got
    assert 'coldvault_offsite_overdue{job="root",offsite="lan"}' not in got  # not its job
    assert 'coldvault_job_overdue{disk="default",job="home"}' in got

    # A damaged offsite state leaves its target out; everything else is written.
    record.path_of(config).write_text("{")
    write_metrics(config, now)
    again = scrape(url)
    assert again["node_textfile_scrape_error"] == 0
    assert not any("coldvault_offsite_" in k and "{" in k for k in again)
    assert 'coldvault_job_overdue{disk="default",job="home"}' in again  # the jobs' series stay
