"""``coldvault demo`` end to end through the real CLI, in a temporary folder."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_demo_runs_twice_and_restores_identically(tmp_path: Path, coldvault_cmd: list[str]) -> None:
    work = tmp_path / "demo"
    for _ in range(2):  # re-runnable: the second run replaces its own files
        out = subprocess.run(
            [*coldvault_cmd, "demo", "--dir", str(work)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "first backup : 11 parts, 11 changed" in out.stdout
        assert "second backup: 11 parts, 2 changed" in out.stdout
        assert "8.0 MiB written" in out.stdout  # two 4 MiB parts
        assert "verify: 22 parts in 2 snapshots, all good" in out.stdout
        assert "cmp source.img restored.img: identical" in out.stdout
    assert (work / "restored.img").read_bytes() == (work / "source.img").read_bytes()
    snaps = sorted((work / "backup" / "demo").iterdir())
    assert len(snaps) == 2


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path, coldvault_cmd: list[str]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    out = subprocess.run(
        [*coldvault_cmd, "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 1
    assert "not made by `coldvault demo`" in out.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
