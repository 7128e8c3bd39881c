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
