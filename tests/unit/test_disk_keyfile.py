"""LUKS key-file permission check on real files (owner and mode)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root
from tests.unit.fifo_guard import fifo_guard

from coldvault.disk.luks import check_key_file, opened_key_file
from coldvault.errors import DiskError


def _key(tmp_path: Path, mode: int, uid: int = 0) -> Path:
    key = tmp_path / "backup.key"
    key.write_bytes(b"k" * 64)
    key.chmod(mode)
    if uid != 0:
        os.chown(key, uid, -1)
    return key


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_root_key_is_accepted(tmp_path: Path, mode: int) -> None:
    require_root()
    check_key_file(_key(tmp_path, mode))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
def test_key_readable_by_others_is_refused_with_chmod_hint(tmp_path: Path, mode: int) -> None:
    require_root()
    key = _key(tmp_path, mode)
    with pytest.raises(DiskError) as info:
        check_key_file(key)
    assert info.value.hint == f"chmod 600 {key}"
    assert f"{mode:04o}" in info.value.message


def test_key_not_owned_by_root_is_refused_with_chown_hint(tmp_path: Path) -> None:
    require_root()
    key = _key(tmp_path, 0o600, uid=4242)
    with pytest.raises(DiskError) as info:
        check_key_file(key)
    assert "uid 4242" in info.value.message
    assert info.value.hint == f"chown root:root {key}"


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match="does not exist"):
        check_key_file(tmp_path / "nope.key")


def test_key_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match="not a regular file"):
        check_key_file(tmp_path)


def test_key_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    key = tmp_path / "backup.key"
    with (
        fifo_guard(key) as stepped_in,
        pytest.raises(DiskError, match="is not a regular file \\(it is a FIFO\\)"),
    ):
        check_key_file(key)
    assert not stepped_in


def test_key_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "backup.key").mkdir()
    with pytest.raises(DiskError, match="is not a regular file"):
        check_key_file(tmp_path / "backup.key")


def test_cryptsetup_reads_exactly_the_key_that_was_checked(tmp_path: Path) -> None:
    """The checked descriptor is what cryptsetup reads, even after the name is replaced.

    ``--test-passphrase`` checks a key against a LUKS header in a plain file: no
    device-mapper needed, so this runs on the host.
    """
    require_root()
    require_programs("cryptsetup")
    key = _key(tmp_path, 0o600)
    header = tmp_path / "luks.img"
    header.write_bytes(b"")
    os.truncate(header, 32 << 20)
    subprocess.run(
        [
            "cryptsetup",
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            str(key),
            str(header),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with opened_key_file(key) as reachable:
        assert reachable != key
        key.rename(tmp_path / "moved.key")
        key.write_bytes(b"a planted key")  # the name now holds another file
        key.chmod(0o600)
        test = [
            "cryptsetup",
            "open",
            "--test-passphrase",
            "--key-file",
            str(reachable),
            str(header),
        ]
        assert subprocess.run(test, check=False, capture_output=True, timeout=120).returncode == 0
    wrong = ["cryptsetup", "open", "--test-passphrase", "--key-file", str(key), str(header)]
    assert subprocess.run(wrong, check=False, capture_output=True, timeout=120).returncode != 0
