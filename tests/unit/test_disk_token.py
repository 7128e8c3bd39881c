"""Token check and ``token init`` on real files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from coldvault.config.model import TokenConfig
from coldvault.disk import token
from coldvault.errors import ConfigError, DiskError, TokenRejected


def _disk(tmp_path: Path) -> tuple[Path, TokenConfig]:
    root = tmp_path / "backup"
    root.mkdir()
    return root, TokenConfig(hash_file=tmp_path / "etc" / "token.sha512")


def test_init_then_verify(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    written = token.init(root, config)
    assert written == root / ".token"
    assert written.stat().st_size == 1024
    assert (written.stat().st_mode & 0o777) == 0o600
    line = config.hash_file.read_text()
    assert line == f"{hashlib.sha512(written.read_bytes()).hexdigest()}  .token\n"
    token.verify(root, config)  # does not raise


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    token.init(root, config)
    old = (root / ".token").read_bytes()
    with pytest.raises(DiskError, match="already exists"):
        token.init(root, config)
    assert (root / ".token").read_bytes() == old
    token.init(root, config, force=True)
    assert (root / ".token").read_bytes() != old
    token.verify(root, config)


def test_wrong_token_is_rejected(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    token.init(root, config)
    (root / ".token").write_bytes(os.urandom(1024))
    with pytest.raises(TokenRejected, match="does not match"):
        token.verify(root, config)


def test_missing_token_is_rejected(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    token.init(root, config)
    (root / ".token").unlink()
    with pytest.raises(TokenRejected, match="has no token"):
        token.verify(root, config)


def test_hash_file_path_field_is_never_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An original token.sha512 names a relative path; a matching file in the cwd must not count."""
    root, config = _disk(tmp_path)
    decoy = tmp_path / "cwd"
    decoy.mkdir()
    (decoy / ".token").write_bytes(b"decoy")
    config.hash_file.parent.mkdir()
    config.hash_file.write_text(f"{hashlib.sha512(b'decoy').hexdigest()}  .token\n")
    monkeypatch.chdir(decoy)
    (root / ".token").write_bytes(b"the real disk's token")
    with pytest.raises(TokenRejected):
        token.verify(root, config)
    (root / ".token").write_bytes(b"decoy")
    token.verify(root, config)


def test_original_sha512sum_output_is_accepted(tmp_path: Path) -> None:
    """The original setup wrote `sha512sum /media/backup/.token > token.sha512`."""
    root, config = _disk(tmp_path)
    (root / ".token").write_bytes(os.urandom(1024))
    config.hash_file.parent.mkdir()
    digest = hashlib.sha512((root / ".token").read_bytes()).hexdigest()
    config.hash_file.write_text(f"{digest}  /media/backup/.token\n")
    token.verify(root, config)


@pytest.mark.parametrize("content", ["", "not a hash  .token\n", "abc123  .token\n"])
def test_malformed_hash_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    root, config = _disk(tmp_path)
    config.hash_file.parent.mkdir()
    config.hash_file.write_text(content)
    with pytest.raises(ConfigError, match="sha512sum format"):
        token.verify(root, config)


def test_missing_hash_file_is_a_config_error(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        token.verify(root, config)
