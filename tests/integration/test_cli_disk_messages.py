"""What ``coldvault run`` prints about the disk: hints kept, each error once, no false "closed".

Host tier: a mount-only disk (a loop-mounted file system, or tmpfs) driven through
the real command line. The LUKS, LVM and MD layers are covered in tests/vm/guest.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root

from coldvault.errors import EXIT_FAILURE

MiB = 1 << 20


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def cleanup() -> Iterator[list[tuple[str, str]]]:
    """("umount", point) and ("losetup", device) entries, undone in reverse after the test."""
    undo: list[tuple[str, str]] = []
    yield undo
    for kind, what in reversed(undo):
        argv = ["umount", what] if kind == "umount" else ["losetup", "-d", what]
        subprocess.run(argv, check=False, capture_output=True)


def write_config(tmp: Path, disk: str, source: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        f"disk:\n{disk}"
        f"settings:\n  state_file: {tmp / 'state.json'}\n  lock_file: {tmp / 'lock'}\n"
        f"  runtime_dir: {tmp / 'run'}\n  inhibit_sleep: false\n"
        f"jobs:\n  - name: img\n    type: image\n    source: {source}\n"
        f"    part_size: 1M\n    snapshots: 0\n"
    )
    return path


def _kill_and_wait(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it released its files (gone, or a zombie)."""
    os.kill(pid, 9)
    for _ in range(600):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"pid {pid} did not die")


def coldvault(cmd: list[str], config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [*cmd, "-c", str(config), *args], check=False, capture_output=True, text=True, env=env
    )


def test_run_prints_the_disk_full_hint(
    tmp_path: Path, cleanup: list[tuple[str, str]], coldvault_cmd: list[str]
) -> None:
    require_root()
    require_programs("mount", "umount")
    point = tmp_path / "backup"
    point.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point))
    cleanup.append(("umount", str(point)))
    source = tmp_path / "source.img"
    source.write_bytes(os.urandom(4 * MiB))
    config = write_config(
        tmp_path, f"  mount:\n    point: {point}\n    require_mount: false\n", source
    )
    done = coldvault(coldvault_cmd, config, "run", "img")
    assert done.returncode == EXIT_FAILURE, done.stderr
    assert "img: backup failed: backup disk full" in done.stderr
    assert done.stderr.count("  hint: ") == 1, done.stderr
    assert "earlier snapshots are intact" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.startswith("img: failed in ")


def test_failed_mount_is_reported_once_and_nothing_is_called_closed(
    tmp_path: Path, cleanup: list[tuple[str, str]], coldvault_cmd: list[str]
) -> None:
    require_root()
    require_programs("mount", "losetup")
    blank = tmp_path / "blank.img"
    with blank.open("wb") as f:
        f.truncate(16 * MiB)  # no file system: mount fails
    loop = sh("losetup", "-f", "--show", str(blank)).strip()
    cleanup.append(("losetup", loop))
    point = tmp_path / "backup"
    point.mkdir()
    source = tmp_path / "source.img"
    source.write_bytes(b"\0" * MiB)
    disk = f"  mount:\n    point: {point}\n    device: {loop}\n    fstype: ext4\n"
    config = write_config(tmp_path, disk, source)
    done = coldvault(coldvault_cmd, config, "run", "img")
    assert done.returncode == EXIT_FAILURE, done.stderr
    assert done.stderr.count(f"could not mount {loop}") == 1, done.stderr
    assert done.stderr.count("hint: check disk.mount") == 1, done.stderr
    assert "closed" not in done.stderr, done.stderr  # nothing was opened, nothing closed
    assert "Traceback" not in done.stderr


def test_busy_teardown_is_one_error_and_no_unplug_promise(
    tmp_path: Path, cleanup: list[tuple[str, str]], coldvault_cmd: list[str]
) -> None:
    require_root()
    require_programs("mount", "umount", "losetup", "mkfs.ext4")
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(32 * MiB)
    sh("mkfs.ext4", "-q", str(image))
    loop = sh("losetup", "-f", "--show", str(image)).strip()
    cleanup.append(("losetup", loop))
    point = tmp_path / "backup"
    point.mkdir()
    cleanup.append(("umount", str(point)))  # if the test fails with it mounted
    source = tmp_path / "source.img"
    source.write_bytes(b"\0" * MiB)
    disk = f"  mount:\n    point: {point}\n    device: {loop}\n    fstype: ext4\n"
    config = write_config(tmp_path, disk, source)
    opened = coldvault(coldvault_cmd, config, "open")
    assert opened.returncode == 0, opened.stderr
    holder = subprocess.Popen(["sleep", "600"], cwd=point)
    try:
        busy = coldvault(coldvault_cmd, config, "close")
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == EXIT_FAILURE, busy.stderr
    assert busy.stderr.count("teardown incomplete") == 1, busy.stderr
    assert "do not unplug" in busy.stderr and f"pid {holder.pid} (sleep)" in busy.stderr
    assert "may be unplugged" not in busy.stderr
    assert busy.stderr.count("hint: ") == 1 and "coldvault close` again" in busy.stderr
    retry = coldvault(coldvault_cmd, config, "close")
    assert retry.returncode == 0, retry.stderr
    assert "backup disk closed (mount); it may be unplugged" in retry.stderr


def test_run_whose_teardown_fails_exits_1_and_says_so_once(
    tmp_path: Path, cleanup: list[tuple[str, str]], coldvault_cmd: list[str]
) -> None:
    require_root()
    require_programs("mount", "umount", "losetup", "mkfs.ext4")
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(32 * MiB)
    sh("mkfs.ext4", "-q", str(image))
    loop = sh("losetup", "-f", "--show", str(image)).strip()
    cleanup.append(("losetup", loop))
    point = tmp_path / "backup"
    point.mkdir()
    cleanup.append(("umount", str(point)))
    source = tmp_path / "source.img"
    source.write_bytes(b"\0" * MiB)
    pid_file = tmp_path / "holder.pid"
    # The job's `after` hook leaves a process inside the mount: the teardown finds it busy.
    holder = f"cd {point} && sleep 600 </dev/null >/dev/null 2>&1 & echo $! > {pid_file}"
    disk = f"  mount:\n    point: {point}\n    device: {loop}\n    fstype: ext4\n"
    config = write_config(tmp_path, disk, source)
    config.write_text(config.read_text() + f"    after: [sh, -c, {holder!r}]\n")
    try:
        done = coldvault(coldvault_cmd, config, "run", "img")
    finally:
        if pid_file.exists():
            _kill_and_wait(int(pid_file.read_text()))
    assert done.returncode == EXIT_FAILURE, done.stderr
    assert done.stdout.startswith("img: success"), done.stdout
    assert done.stderr.count("teardown incomplete") == 1, done.stderr
    assert "do not unplug" in done.stderr and "may be unplugged" not in done.stderr
    closed = coldvault(coldvault_cmd, config, "close")
    assert closed.returncode == 0, closed.stderr
    assert "closed: mount" in closed.stdout
