"""Starting and stopping the FUSE server process (the parent's side of :mod:`.serve`)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path

import psutil

from coldvault.errors import JobError
from coldvault.mount.spec import ServeSpec
from coldvault.system import proc

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
MODULE = "coldvault.mount.serve"


def start(spec: ServeSpec, log_file: Path) -> tuple[int, float]:
    """Start the server, wait for its ``ready``; return (pid, start time).

    It runs in a session of its own (a closed terminal does not end it) and
    inherits the snapshot folder's and the lock's descriptors.
    """
    spec_r, spec_w = os.pipe()
    ready_r, ready_w = os.pipe()
    try:
        with log_file.open("ab") as log:
            child = proc.spawn(
                [sys.executable, "-m", MODULE],
                stdin=spec_r,
                stdout=ready_w,
                stderr=log,
                pass_fds=(spec.folder_fd, spec.lock_fd),
                start_new_session=True,
                close_fds=True,
            )
    except BaseException:
        for fd in (spec_w, ready_r):
            os.close(fd)
        raise
    finally:
        os.close(spec_r)
        os.close(ready_w)
    try:
        with open(spec_w, "wb") as instructions, contextlib.suppress(BrokenPipeError):
            instructions.write(spec.to_json().encode())
        answer = _read_answer(ready_r)
    finally:
        os.close(ready_r)
    if answer != "ready":
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
        detail = answer.removeprefix("error: ") or _tail(log_file)
        raise JobError(f"the FUSE server did not start: {detail}", hint=f"see {log_file}")
    child.returncode = 0  # it outlives us on purpose: keep Popen from warning about it
    return child.pid, psutil.Process(child.pid).create_time()


def _read_answer(fd: int) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    data = b""
    while b"\n" not in data and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return " | ".join(lines[-3:]) or "it exited without a word"


def running(pid: int | None, started: float | None) -> psutil.Process | None:
    """The server process, if it still runs (the same process, not a reused pid)."""
    if pid is None:
        return None
    try:
        p = psutil.Process(pid)
        if started is not None and abs(p.create_time() - started) > 1.0:
            return None
        if p.status() == psutil.STATUS_ZOMBIE or MODULE not in " ".join(p.cmdline()):
            return None
        return p
    except psutil.Error:
        return None


def stop(pid: int | None, started: float | None) -> bool:
    """Stop the server (SIGTERM, then SIGKILL); return whether it was running."""
    p = running(pid, started)
    if p is None:
        return False
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(psutil.Error):
            p.send_signal(signum)
        if _gone(p, STOP_TIMEOUT):
            return True
    raise JobError(f"the FUSE server (pid {p.pid}) does not stop", hint="see `ps` and `dmesg`")


def _gone(p: psutil.Process, seconds: float) -> bool:
    """Wait until ``p`` exited (a zombie counts: it serves nothing, and init reaps it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
