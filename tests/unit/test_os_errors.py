"""Operating-system errors (a file where a folder should be, I/O errors) reach the user
as one clear line and a non-zero exit, never as a traceback."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

from coldvault.errors import describe_os_error


def test_describe_os_error_names_the_file_and_hints_for_io_errors() -> None:
    err = describe_os_error(OSError(errno.EIO, "Input/output error", "/media/backup/x"))
    assert err.message == "Input/output error: /media/backup/x"
    assert err.hint is not None and "dmesg" in err.hint
    assert err.exit_code == 1


def test_run_with_a_file_in_place_of_the_job_folder_fails_cleanly(
    tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "img").write_text("not a folder")
    source = tmp_path / "src.img"
    source.write_bytes(b"\x01" * 3_000_000)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"""disk:
  mount: {{point: {backup}, require_mount: false}}
settings: {{state_file: {tmp_path}/state.json, runtime_dir: {tmp_path}/run,
           lock_file: {tmp_path}/lock}}
jobs:
  - {{name: img, type: image, source: {source}, part_size: 1M, hash: sha256}}
"""
    )
    done = subprocess.run(
        [*coldvault_cmd, "-c", str(config), "run"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{backup / 'img'} is a file, expected a folder" in done.stderr
    assert (backup / "img").read_text() == "not a folder"
