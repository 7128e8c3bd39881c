"""The notify wrapper against a real datagram socket: messages, watchdog pacing, never blocking."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldvault.service.notify import Notifier, watchdog_interval


@pytest.fixture
def sock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify"))
    s.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield s
    s.close()


def test_watchdog_interval() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    # Armed for another process (our parent): not ours to ping.
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    mine = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == 1.5


def test_messages_and_paced_watchdog(sock: socket.socket) -> None:
    now = [100.0]
    n = Notifier(clock=lambda: now[0])
    assert "NOTIFY_SOCKET" not in os.environ  # children must not inherit it
    n.ready("waiting for disk")
    assert sock.recv(4096).decode().startswith("READY=1\nSTATUS=waiting for disk\nMAINPID=")
    n.status("waiting for disk")  # unchanged: not sent again
    n.status("home: reading")
    assert sock.recv(4096) == b"STATUS=home: reading"
    n.watchdog()
    n.watchdog()  # within half the timeout: no second ping
    now[0] += 1.0
    n.watchdog()
    assert n.seconds_to_watchdog() == 1.0
    n.stopping("stopping: SIGTERM received")
    n.extend_timeout(30)
    got = [sock.recv(4096).decode() for _ in range(4)]
    assert got == [
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping: SIGTERM received",
        "EXTEND_TIMEOUT_USEC=30000000",
    ]


def test_a_full_socket_never_blocks(sock: socket.socket) -> None:
    n = Notifier()
    for i in range(1000):  # far beyond the receive queue; nobody reads
        n.status(f"step {i}")
    assert sock.recv(4096).startswith(b"STATUS=step 0")


def test_outside_systemd_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = Notifier()
    assert not n.enabled and n.seconds_to_watchdog() is None
    n.ready("x")
    n.watchdog()
