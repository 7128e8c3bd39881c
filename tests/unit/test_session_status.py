"""The daemon's STATUS= line follows the session: opening, each job, closing."""

from __future__ import annotations

from pathlib import Path

from coldvault.config.model import Config
from coldvault.service.daemon import _Session
from coldvault.system.cancel import CancelToken


def test_status_says_closing_after_the_jobs(tmp_path: Path) -> None:
    from coldvault.config.loader import load

    source = tmp_path / "src.img"
    source.write_bytes(b"\0" * 4096)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"disk:\n  mount:\n    point: {tmp_path}\n    require_mount: false\n"
        f"jobs:\n  - name: img\n    type: image\n    source: {source}\n"
    )
    config: Config = load(path)
    session = _Session(config, list(config.jobs), CancelToken(), lambda: None)
    assert session.describe() == "opening the backup disk for img"
    session._on_job(config.jobs[0])
    assert session.describe() == "img: starting"
    session._on_job(None)  # every job has run: teardown follows
    assert session.describe() == "closing the backup disk"
