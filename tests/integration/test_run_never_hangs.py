"""A real ``coldvault run`` never hangs on a FIFO, and SIGTERM ends it wherever it waits.

Each test starts the CLI as its own process (own session, so the test can end
everything it started), with the backup root a plain folder. "Promptly" is bounded
by WAIT: a failure bound for a hang, not a timing claim.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import ROOT, require
from tests.integration.hung_fuse import hung_file

from coldvault.service.lock import hold_lock

WAIT = 60.0
EXIT_CANCELLED = 130


class Run:
    """Paths and the configuration of one ``coldvault run``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.backup = tmp / "backup"
        self.backup.mkdir()
        self.device = tmp / "device"  # what `disk.device` waits for
        self.device.write_bytes(b"")
        self.lock = tmp / "lock"
        self.config = tmp / "config.yaml"
        self.hash_file: Path | None = None

    def write(self, job: dict[str, Any]) -> None:
        disk: dict[str, Any] = {
            "device": str(self.device),
            "mount": {"point": str(self.backup), "require_mount": False},
        }
        if self.hash_file is not None:
            disk["token"] = {"hash_file": str(self.hash_file)}
        data = {
            "disk": disk,
            "settings": {
                "state_file": str(self.tmp / "state.json"),
                "runtime_dir": str(self.tmp / "run"),
                "lock_file": str(self.lock),
            },
            "jobs": [{"name": "img", "type": "image", "part_size": "1M", **job}],
        }
        self.config.write_text(yaml.safe_dump(data))

    @contextlib.contextmanager
    def start(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "daemon")}
        argv = [sys.executable, "-m", "coldvault", "--config", str(self.config), "run", *args]
        child = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(WAIT)  # a read nobody answers may outlive SIGKILL: the test ends it

    def finish(self, *args: str) -> tuple[int, str]:
        """Run to the end (bounded by WAIT); exit code and all output."""
        with self.start(*args) as child:
            out, err = child.communicate(timeout=WAIT)
            return child.returncode, out + err


def _stop(child: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM; the exit code and output (a hang fails the test after WAIT)."""
    child.send_signal(signal.SIGTERM)
    try:
        out, err = child.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"coldvault run ignored SIGTERM for {WAIT} s")
    return child.returncode, out + err


def _handles_sigterm(child: subprocess.Popen[str]) -> None:
    """Wait until ``child`` has its SIGTERM handler (``SigCgt`` in /proc), then a moment more.

    Before that a SIGTERM would kill the interpreter while it is still starting,
    which says nothing about coldvault.
    """
    deadline = time.monotonic() + WAIT
    while True:
        assert child.poll() is None, "coldvault run ended before it was stopped"
        status = Path(f"/proc/{child.pid}/status").read_text()
        caught = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            break
        assert time.monotonic() < deadline, "coldvault run never installed its SIGTERM handler"
        time.sleep(0.05)
    time.sleep(0.5)  # let it reach the wait (not a timing claim: any later moment would do)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture
def cv(tmp_path: Path) -> Run:
    return Run(tmp_path)


def test_a_fifo_source_is_refused_at_once(cv: Run) -> None:
    fifo = cv.tmp / "source"
    os.mkfifo(fifo)
    cv.write({"source": str(fifo)})
    code, out = cv.finish()
    assert code == 1, out
    assert f"image source {fifo} is a FIFO: an image source must be a regular file" in out
    (cv.tmp / "source").unlink()
    (cv.tmp / "source").write_bytes(b"\1" * 4096)
    assert cv.finish()[0] == 0  # the lock was released, the next run works


def test_a_fifo_token_is_refused_at_once(cv: Run) -> None:
    (cv.tmp / "src.img").write_bytes(b"\1" * 4096)
    cv.hash_file = cv.tmp / "token.sha512"
    cv.hash_file.write_text("0" * 128 + "  .token\n")
    os.mkfifo(cv.backup / ".token")
    cv.write({"source": str(cv.tmp / "src.img")})
    code, out = cv.finish()
    assert code == 4, out
    assert f"{cv.backup / '.token'} is a FIFO, not a regular file" in out
    assert sorted(p.name for p in cv.backup.iterdir()) == [".token"]  # nothing written


def test_a_fifo_hash_file_is_refused_at_once(cv: Run) -> None:
    (cv.tmp / "src.img").write_bytes(b"\1" * 4096)
    cv.hash_file = cv.tmp / "token.sha512"
    os.mkfifo(cv.hash_file)
    (cv.backup / ".token").write_bytes(b"t")
    cv.write({"source": str(cv.tmp / "src.img")})
    code, out = cv.finish()
    assert code == 78, out
    assert f"token hash file {cv.hash_file} is a FIFO" in out


def test_sigterm_ends_a_run_blocked_in_a_before_hook(cv: Run) -> None:
    mark = cv.tmp / "hook-started"
    (cv.tmp / "src.img").write_bytes(b"\1" * 4096)
    hook = ["sh", "-c", f"echo $$ > {mark}.tmp && mv {mark}.tmp {mark} && exec sleep 600"]
    cv.write({"source": str(cv.tmp / "src.img"), "before": [hook]})
    with cv.start() as child:
        _wait_for(mark)
        code, out = _stop(child)
        sleeper = int(mark.read_text())
        with pytest.raises(ProcessLookupError):  # the hook was stopped too, not left behind
            os.kill(sleeper, 0)
    assert code == EXIT_CANCELLED, out
    assert "img: cancelled" in out
    assert not any(p.name.startswith("snapshot-2") for p in (cv.backup / "img").glob("*"))


def test_sigterm_ends_a_run_waiting_for_the_disk(cv: Run) -> None:
    (cv.tmp / "src.img").write_bytes(b"\1" * 4096)
    cv.device.unlink()
    cv.write({"source": str(cv.tmp / "src.img")})
    with cv.start("--wait", "600") as child:
        _handles_sigterm(child)
        code, out = _stop(child)
    assert code == EXIT_CANCELLED, out


def test_sigterm_ends_a_run_waiting_for_the_lock(cv: Run) -> None:
    (cv.tmp / "src.img").write_bytes(b"\1" * 4096)
    cv.write({"source": str(cv.tmp / "src.img")})
    with hold_lock(cv.lock), cv.start("--wait-lock", "600") as child:
        _handles_sigterm(child)
        code, out = _stop(child)
    assert code == EXIT_CANCELLED, out


def test_sigterm_ends_a_run_in_the_middle_of_reading_the_source(cv: Run) -> None:
    source = cv.tmp / "big.img"
    with source.open("wb") as f:  # sparse: reading it costs time, storing it nothing
        f.truncate(20 << 30)
    cv.write({"source": str(source), "part_size": "64M"})
    with cv.start() as child:
        _handles_sigterm(child)
        deadline = time.monotonic() + WAIT
        while not list((cv.backup / "img").glob("*/part_*")):
            assert child.poll() is None, "the run ended before it was stopped"
            assert time.monotonic() < deadline, "no part was ever written"
            time.sleep(0.05)
        code, out = _stop(child)
    assert code == EXIT_CANCELLED, out
    assert "img: cancelled" in out


def test_sigterm_ends_a_run_whose_source_read_hangs(cv: Run) -> None:
    """A read that never returns (a FUSE file whose server never answers, like a dead
    disk or server): SIGTERM must still end the run."""
    require(Path("/dev/fuse").exists(), "needs /dev/fuse")
    with hung_file(cv.tmp / "fuse", 64 << 20) as hung:
        cv.write({"source": str(cv.tmp / "fuse" / "src")})
        with cv.start() as child:
            _handles_sigterm(child)
            assert hung.reads.wait(WAIT), "the run never read its source"
            code, out = _stop(child)
    assert code == EXIT_CANCELLED, out
    assert "img: cancelled" in out
