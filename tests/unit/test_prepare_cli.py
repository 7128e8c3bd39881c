"""``disk init`` / ``add-mirror`` through the real CLI: dry runs and refusals change nothing."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.prepare_loops import loop_device, partition, require_loop_tools, sh, snapshot

from coldvault.cli.disk_prepare_cmd import read_passphrase
from coldvault.errors import DiskError


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Path]:
    require_loop_tools()
    with loop_device(tmp_path) as dev:
        yield dev


def _image_digest(tmp_path: Path) -> str:
    sh("sync")
    return hashlib.sha256((tmp_path / "disk.img").read_bytes()).hexdigest()


def _host_files(tmp_path: Path) -> list[str]:
    return [
        "--key-file", str(tmp_path / "etc" / "backup.key"),
        "--hash-file", str(tmp_path / "etc" / "token.sha512"),
        "--mount-point", str(tmp_path / "media"),
        "--write-config", str(tmp_path / "etc" / "config.yaml"),
    ]  # fmt: skip


def _init(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, "disk", "init", *args],
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_dry_run_prints_everything_and_changes_nothing(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    part = partition(loop, label="olddata")
    sh("mkfs.btrfs", "-q", "-L", "precious", part)
    before = (snapshot(loop), snapshot(part), _image_digest(tmp_path))
    done = _init(
        coldvault_cmd, str(loop), "--dry-run", "--yes-destroy", str(loop),
        "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", *_host_files(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f'signature {part.name}: btrfs at 0x10040 (label "precious")' in out
    assert f"partition {part}" in out
    assert f"wipefs --all {part}" in out
    create = "mdadm --create /dev/md/backup --run --level=1 --raid-devices=2 --metadata=1.2"
    assert f"{create} {part} missing" in out
    assert "--pbkdf=pbkdf2 --pbkdf-force-iterations=1000 --key-file=- /dev/md/backup" in out
    assert "mdadm --stop /dev/md/backup" in out
    assert "disk:\n  device: /dev/disk/by-partlabel/backup\n" in out
    after = (snapshot(loop), snapshot(part), _image_digest(tmp_path))
    assert after == before
    assert "precious" in before[1][0]  # the comparison saw the filesystem
    assert not (tmp_path / "etc").exists()
    assert not (tmp_path / "media").exists()


def test_refusal_without_confirmation_changes_nothing(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    sh("mkfs.btrfs", "-q", "-L", "precious", loop)
    before = (snapshot(loop), _image_digest(tmp_path))
    done = _init(coldvault_cmd, str(loop), "--passphrase-file", "/dev/null", *_host_files(tmp_path))
    assert done.returncode == 1
    assert "holds data" in done.stderr and f"--yes-destroy {loop}" in done.stderr
    assert "Traceback" not in done.stderr
    assert 'btrfs at 0x10040 (label "precious")' in done.stdout  # shown before refusing
    assert (snapshot(loop), _image_digest(tmp_path)) == before
    assert not (tmp_path / "etc").exists()


def test_mounted_device_is_refused_by_the_cli(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    sh("mkfs.btrfs", "-q", loop)
    point = tmp_path / "mnt"
    point.mkdir()
    sh("mount", loop, point)
    done = _init(coldvault_cmd, str(loop), "--yes-destroy", str(loop), *_host_files(tmp_path))
    assert done.returncode == 1
    assert f"{loop} is mounted on {point}" in done.stderr


def test_existing_key_file_is_kept_without_force(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    key = tmp_path / "etc" / "backup.key"
    key.parent.mkdir()
    key.write_bytes(b"the other disk's key")
    done = _init(coldvault_cmd, str(loop), "--dry-run", *_host_files(tmp_path))
    assert done.returncode == 1
    assert f"key file {key} already exists" in done.stderr
    assert key.read_bytes() == b"the other disk's key"


def test_existing_disk_section_is_kept_without_force(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    cfg = tmp_path / "etc" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text("disk:\n  mount:\n    point: /srv/old\n")
    done = _init(coldvault_cmd, str(loop), "--dry-run", *_host_files(tmp_path))
    assert done.returncode == 78
    assert "already has a disk: section" in done.stderr
    assert cfg.read_text() == "disk:\n  mount:\n    point: /srv/old\n"


def test_no_terminal_and_no_passphrase_file_stops_before_writing(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    before = (snapshot(loop), _image_digest(tmp_path))
    done = _init(coldvault_cmd, str(loop), *_host_files(tmp_path))
    assert done.returncode == 1
    assert "no terminal to ask for the LUKS passphrase" in done.stderr
    assert (snapshot(loop), _image_digest(tmp_path)) == before
    assert not (tmp_path / "etc").exists()


def test_add_mirror_needs_a_running_array(
    loop: Path, tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    done = subprocess.run(
        [*coldvault_cmd, "disk", "add-mirror", str(loop), "--array", "/dev/md/no-such-array"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "the array /dev/md/no-such-array is not running" in done.stderr


def test_passphrase_file_first_line_is_the_passphrase(tmp_path: Path) -> None:
    file = tmp_path / "pass"
    file.write_bytes(b"s3cret words\nignored\n")
    assert read_passphrase(file) == b"s3cret words"
    file.write_bytes(b"\n")
    with pytest.raises(DiskError, match="empty line"):
        read_passphrase(file)
    with pytest.raises(DiskError, match="cannot read passphrase file"):
        read_passphrase(tmp_path / "missing")
