"""A real ``coldvault daemon`` subprocess in a temp dir, with a notify socket the test owns."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from tests.conftest import ROOT

WAIT = 60.0  # upper bound for anything "within seconds": a failure bound, not a timing claim


class Notifications:
    """A bound AF_UNIX datagram socket collecting sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []
        self.sender_alive: Callable[[], bool] = lambda: True

    def pump(self, seconds: float) -> list[str]:
        """Receive for ``seconds``; return what arrived."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(65536).decode())
            except TimeoutError:
                break
        self.messages += got
        return got

    def wait_for(self, pred: Callable[[str], bool], timeout: float = WAIT) -> str:
        """The first new message matching ``pred``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(min(left, 1.0))
            try:
                msg = self.sock.recv(65536).decode()
            except TimeoutError:
                if not self.sender_alive():
                    break
                continue
            self.messages.append(msg)
            if pred(msg):
                return msg
        raise AssertionError(f"no matching notification; got {self.messages[-10:]}")

    def statuses(self) -> list[str]:
        """Every STATUS= value received so far, in order."""
        return [
            line[len("STATUS=") :]
            for m in self.messages
            for line in m.splitlines()
            if line.startswith("STATUS=")
        ]

    def close(self) -> None:
        self.sock.close()


class DaemonEnv:
    """Paths, config and processes of one test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.disk = tmp / "disk"  # the "device" the daemon waits for
        self.backup = tmp / "backup"  # the backup root (a plain folder)
        self.backup.mkdir()
        self.state = tmp / "state.json"
        self.runtime = tmp / "run"
        self.config = tmp / "config.yaml"
        self.log = tmp / "daemon.log"
        self.notify = Notifications(tmp / "notify.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(
        self, jobs: list[dict[str, Any]], disk: dict[str, Any] | None = None, **settings: Any
    ) -> None:
        data = {
            "disk": {
                "device": str(self.disk),
                "mount": {"point": str(self.backup), "require_mount": False},
                **(disk or {}),
            },
            "settings": {
                "state_file": str(self.state),
                "runtime_dir": str(self.runtime),
                "lock_file": str(self.tmp / "lock"),
                "poll_seconds": 0.5,
                **settings,
            },
            "jobs": jobs,
        }
        self.config.write_text(yaml.safe_dump(data))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        env["PYTHONPATH"] = str(ROOT / "daemon")
        return {**env, **extra}

    def start(self, watchdog_usec: int | None = 400_000) -> subprocess.Popen[bytes]:
        extra = {"NOTIFY_SOCKET": str(self.notify.path)}
        if watchdog_usec is not None:
            extra["WATCHDOG_USEC"] = str(watchdog_usec)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coldvault", "--config", str(self.config), "daemon"],
                env=self.env(**extra),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        proc = self.proc
        self.notify.sender_alive = lambda: proc.poll() is None
        return proc

    def cli(self, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "coldvault", "--config", str(self.config), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status_json(self) -> dict[str, Any]:
        out = self.cli("status", "--json")
        assert out.returncode in (0, 7), out.stderr
        data: dict[str, Any] = json.loads(out.stdout)
        return data

    def job_state(self, name: str) -> dict[str, Any] | None:
        if not self.state.exists():
            return None
        entry: dict[str, Any] | None = json.loads(self.state.read_text())["jobs"].get(name)
        return entry

    def wait_until(self, what: str, pred: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            assert self.proc is None or self.proc.poll() is None, (
                f"daemon exited ({self.proc.returncode}) while waiting for {what}:\n"
                + self.log_text()
            )
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.log_text()}")

    def stop(self) -> int:
        """SIGTERM the daemon; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the daemon dumps its threads' stacks
            time.sleep(1)
            raise AssertionError(f"daemon did not stop after SIGTERM:\n{self.log_text()}") from None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


@contextlib.contextmanager
def daemon_env(tmp: Path) -> Iterator[DaemonEnv]:
    env = DaemonEnv(tmp)
    try:
        yield env
    finally:
        env.cleanup()


def image_job(name: str, source: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "image",
        "source": str(source),
        "part_size": "1M",
        "block_size": "64k",
        "every": "1d",
        **extra,
    }


def completed_snapshots(job_dir: Path) -> list[Path]:
    return sorted(
        p for p in job_dir.glob("snapshot-*") if p.is_dir() and p.name != "snapshot-inprogress"
    )


def image_digest(parts_dir: Path, part_size: int) -> str:
    """SHA-256 of the image the parts stand for (a 0-byte part is all zeros)."""
    h = hashlib.sha256()
    for part in sorted(parts_dir.glob("part_*")):
        size = part.stat().st_size
        h.update(bytes(part_size) if size == 0 else part.read_bytes())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
