"""LUKS key-file permission check on real files (owner and mode)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import require_root

from coldvault.disk.luks import check_key_file
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
