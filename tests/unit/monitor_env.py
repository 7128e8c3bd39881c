"""Helpers for the monitoring tests: a config on a plain folder "disk", a session run,
and a local HTTP server that records what it receives."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.unit.image_env import make_job, write_source

from coldvault.config.model import Config, DiskConfig, ImageJob, MountConfig, Settings
from coldvault.progress import no_progress
from coldvault.service.runner import SessionOutcome, run_session
from coldvault.system.cancel import CancelToken


def folder_config(tmp: Path, jobs: tuple[ImageJob, ...], **settings: Any) -> Config:
    """A config whose "disk" is the folder ``tmp/backup`` (no mount required)."""
    (tmp / "backup").mkdir(exist_ok=True)
    base = Settings(
        state_file=tmp / "state.json",
        runtime_dir=tmp / "run",
        lock_file=tmp / "lock",
        inhibit_sleep=False,
    )
    return Config(
        path=tmp / "config.yaml",
        disk=DiskConfig(mount=MountConfig(tmp / "backup", require_mount=False)),
        jobs=jobs,
        settings=replace(base, **settings),
    )


def image_job(tmp: Path, name: str = "img", *, present: bool = True, **kw: Any) -> ImageJob:
    """A small image job; its source is missing (the job fails) unless ``present``."""
    src = tmp / f"{name}.src"
    if present:
        write_source(src, [(300_000, True)])
    return make_job(src, name=name, target=name, **kw)


def run_jobs(config: Config) -> SessionOutcome:
    """One session over every job of ``config``, as the daemon runs it."""
    return run_session(config, config.jobs, cancel=CancelToken(), progress=no_progress)


@dataclass
class Received:
    """One request the local server got."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def http_server(*, answer: bool = True) -> Iterator[tuple[str, list[Received]]]:
    """A server on 127.0.0.1; yields its base URL and the list of requests received.

    With ``answer`` False it accepts connections and never replies.
    """
    got: list[Received] = []
    hold = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            got.append(Received(self.command, self.path, body, dict(self.headers.items())))
            if not answer:
                hold.wait(60)
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = do_HEAD = do_PUT = _any

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        hold.set()
        server.shutdown()
        server.server_close()
