"""Token check and ``token init`` on real files."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
from tests.unit.fifo_guard import fifo_guard

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


def _matching_hash(config: TokenConfig, data: bytes) -> None:
    config.hash_file.parent.mkdir(exist_ok=True)
    config.hash_file.write_text(f"{hashlib.sha512(data).hexdigest()}  .token\n")


def test_token_symlink_to_a_host_file_is_rejected(tmp_path: Path) -> None:
    """A planted `.token -> /host/file` whose content matches must not pass."""
    root, config = _disk(tmp_path)
    host_file = tmp_path / "host-token"
    host_file.write_bytes(b"the real token, kept on the host")
    _matching_hash(config, host_file.read_bytes())
    (root / ".token").symlink_to(host_file)
    with pytest.raises(TokenRejected, match=r"\.token is a symlink, not a regular file"):
        token.verify(root, config)


def test_token_in_a_symlinked_folder_is_rejected(tmp_path: Path) -> None:
    root, _ = _disk(tmp_path)
    config = TokenConfig(hash_file=tmp_path / "etc" / "token.sha512", file="id/.token")
    elsewhere = tmp_path / "host"
    elsewhere.mkdir()
    (elsewhere / ".token").write_bytes(b"x")
    _matching_hash(config, b"x")
    (root / "id").symlink_to(elsewhere)
    with pytest.raises(TokenRejected, match=r"id is a symlink"):
        token.verify(root, config)


def test_token_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    _matching_hash(config, b"")
    with (
        fifo_guard(root / ".token") as stepped_in,
        pytest.raises(TokenRejected, match=r"\.token is a FIFO, not a regular file"),
    ):
        token.verify(root, config)
    assert not stepped_in


@pytest.mark.parametrize("kind", ["folder", "socket"])
def test_token_of_another_kind_is_rejected(tmp_path: Path, kind: str) -> None:
    root, config = _disk(tmp_path)
    _matching_hash(config, b"")
    if kind == "folder":
        (root / ".token").mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(root / ".token"))
        sock.close()
    with pytest.raises(TokenRejected, match=rf"\.token is a {kind}"):
        token.verify(root, config)


def test_hash_file_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    config.hash_file.parent.mkdir()
    with (
        fifo_guard(config.hash_file) as stepped_in,
        pytest.raises(ConfigError, match=r"token\.sha512 is a FIFO, expected a regular file"),
    ):
        token.verify(root, config)
    assert not stepped_in


def test_hash_file_may_be_a_symlink_on_the_host(tmp_path: Path) -> None:
    """The host is trusted: /etc/coldvault/token.sha512 may link to where it is kept."""
    root, config = _disk(tmp_path)
    token.init(root, config)
    kept = tmp_path / "kept.sha512"
    config.hash_file.rename(kept)
    config.hash_file.symlink_to(kept)
    token.verify(root, config)


def test_init_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    host_file = tmp_path / "host-file"
    host_file.write_bytes(b"precious")
    (root / ".token").symlink_to(host_file)
    with pytest.raises(DiskError, match="already exists"):
        token.init(root, config)
    with pytest.raises(DiskError, match=r"\.token is a symlink"):
        token.init(root, config, force=True)
    assert host_file.read_bytes() == b"precious"
    assert (root / ".token").is_symlink()
    assert not config.hash_file.exists()


def test_init_refuses_when_only_the_hash_file_exists(tmp_path: Path) -> None:
    root, config = _disk(tmp_path)
    config.hash_file.parent.mkdir()
    config.hash_file.write_text("old\n")
    with pytest.raises(DiskError, match=r"token\.sha512 already exists"):
        token.init(root, config)
    assert not (root / ".token").exists()
