"""The disk's identity: a random ``.token`` whose SHA-512 is stored on the host.

The hash file uses the ``sha512sum`` format (``<hex>  <name>``) like the
original ``token.sha512``. Only the hash is read from it: its file-name field
is never resolved (the original ``sha512sum -c`` resolved it against the
current directory). The comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from pathlib import Path

from coldvault.config.model import TokenConfig
from coldvault.errors import ConfigError, DiskError, TokenRejected
from coldvault.system.files import atomic_write

log = logging.getLogger("coldvault.disk.token")

TOKEN_BYTES = 1024
_HEX = re.compile(r"\\?([0-9a-fA-F]{128})\s")
_MAX_TOKEN_BYTES = 1 << 20  # a token is small; refuse to hash a huge file


def expected_hash(hash_file: Path) -> str:
    """The SHA-512 hex digest stored in ``hash_file`` (sha512sum format)."""
    try:
        text = hash_file.read_text(errors="replace")
    except FileNotFoundError:
        raise ConfigError(
            f"token hash file {hash_file} does not exist",
            hint="create it with `coldvault token init` on the opened backup disk",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read token hash file {hash_file}: {exc.strerror}") from None
    first = text.splitlines()[0] if text.strip() else ""
    match = _HEX.match(first + " ")
    if match is None:
        raise ConfigError(
            f"token hash file {hash_file} is not in sha512sum format",
            hint="its first line must be `<128 hex digits>  .token`",
        )
    return match.group(1).lower()


def token_hash(token_file: Path) -> str:
    """SHA-512 hex digest of the token file; TokenRejected when it is missing."""
    try:
        with open(token_file, "rb") as f:
            data = f.read(_MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        raise TokenRejected(
            f"the backup disk has no token {token_file}: it is not the configured backup disk",
            hint="nothing was written; if it is the right disk, run `coldvault token init`",
        ) from None
    except OSError as exc:
        raise TokenRejected(f"cannot read the disk's token {token_file}: {exc.strerror}") from None
    if len(data) > _MAX_TOKEN_BYTES:
        raise TokenRejected(f"the disk's token {token_file} is implausibly large")
    return hashlib.sha512(data).hexdigest()


def verify(root: Path, config: TokenConfig) -> None:
    """Raise TokenRejected unless ``<root>/<file>`` matches the stored hash."""
    expected = expected_hash(config.hash_file)
    token_file = root / config.file
    actual = token_hash(token_file)
    if not hmac.compare_digest(actual.encode(), expected.encode()):
        raise TokenRejected(
            f"the token {token_file} does not match {config.hash_file}: "
            "this is not the configured backup disk",
            hint="nothing was written; attach the right disk",
        )


def init(root: Path, config: TokenConfig, *, force: bool = False) -> Path:
    """Write a new random token at ``root`` and its hash file; return the token path.

    Refuses to replace an existing token or hash file unless ``force``.
    """
    token_file = root / config.file
    if not force:
        for existing in (token_file, config.hash_file):
            if existing.exists():
                raise DiskError(
                    f"{existing} already exists",
                    hint="pass --force to replace the token (the old hash stops matching)",
                )
    atomic_write(token_file, secrets.token_bytes(TOKEN_BYTES), 0o600)
    digest = hashlib.sha512(token_file.read_bytes()).hexdigest()
    config.hash_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(config.hash_file, f"{digest}  {config.file}\n".encode(), 0o600)
    return token_file
