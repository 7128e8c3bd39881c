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
import os
import re
import secrets
from pathlib import Path, PurePosixPath

from coldvault.config.model import TokenConfig
from coldvault.errors import ConfigError, DiskError, TokenRejected
from coldvault.system.beneath import SafeDir, UnexpectedEntry, check_kind, open_regular
from coldvault.system.files import atomic_write

log = logging.getLogger("coldvault.disk.token")

TOKEN_BYTES = 1024
_HEX = re.compile(r"\\?([0-9a-fA-F]{128})\s")
_MAX_TOKEN_BYTES = 1 << 20  # a token is small; refuse to hash a huge file
_MAX_HASH_FILE_BYTES = 1 << 16  # only its first line is used


def expected_hash(hash_file: Path) -> str:
    """The SHA-512 hex digest stored in ``hash_file`` (sha512sum format).

    The hash file is on the host, but is opened without blocking and only read when
    it is a regular file: a FIFO there must not hang the run.
    """
    try:
        fd = open_regular(hash_file)
    except FileNotFoundError:
        raise ConfigError(
            f"token hash file {hash_file} does not exist",
            hint="create it with `coldvault token init` on the opened backup disk",
        ) from None
    except UnexpectedEntry as exc:
        raise ConfigError(
            f"token hash file {hash_file} is a {exc.found}, expected a regular file",
            hint="point disk.token.hash_file at the file `coldvault token init` wrote",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read token hash file {hash_file}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        text = f.read(_MAX_HASH_FILE_BYTES).decode(errors="replace")
    first = text.splitlines()[0] if text.strip() else ""
    match = _HEX.match(first + " ")
    if match is None:
        raise ConfigError(
            f"token hash file {hash_file} is not in sha512sum format",
            hint="its first line must be `<128 hex digits>  .token`",
        )
    return match.group(1).lower()


def _split(file: str) -> tuple[PurePosixPath, str]:
    """The folder (relative to the disk root) and the name of the token."""
    rel = PurePosixPath(file)
    if rel.is_absolute() or ".." in rel.parts or not rel.name:
        raise ConfigError(f"disk.token.file {file!r} must be a file name below the backup root")
    return rel.parent, rel.name


def read_token(root: Path, file: str) -> bytes:
    """The bytes of the disk's token ``<root>/<file>``, resolved beneath ``root``.

    No symlink is followed (a ``.token`` pointing at a host file is not the disk's
    token), and only a regular file is read (a FIFO never blocks the run).
    """
    folder_rel, name = _split(file)
    token_file = root / file
    try:
        with SafeDir.open_root(root) as top, top.sub(folder_rel) as folder:
            if folder.lstat(name) is None:
                raise FileNotFoundError(token_file)
            return folder.read_bytes(name, _MAX_TOKEN_BYTES)
    except FileNotFoundError:
        raise TokenRejected(
            f"the backup disk has no token {token_file}: it is not the configured backup disk",
            hint="nothing was written; if it is the right disk, run `coldvault token init`",
        ) from None
    except UnexpectedEntry as exc:
        raise TokenRejected(
            f"the disk's token {exc.path} is a {exc.found}, not a regular file: "
            "it is not trusted (coldvault never follows a symlink or reads a special file "
            "on the backup disk)",
            hint="nothing was written; if it is the right disk, remove it and run "
            "`coldvault token init`",
        ) from None
    except DiskError as exc:  # larger than the limit
        raise TokenRejected(f"the disk's token {token_file} is implausibly large") from exc
    except OSError as exc:
        raise TokenRejected(f"cannot read the disk's token {token_file}: {exc.strerror}") from None


def verify(root: Path, config: TokenConfig) -> None:
    """Raise TokenRejected unless ``<root>/<file>`` matches the stored hash."""
    expected = expected_hash(config.hash_file)
    token_file = root / config.file
    actual = hashlib.sha512(read_token(root, config.file)).hexdigest()
    if not hmac.compare_digest(actual.encode(), expected.encode()):
        raise TokenRejected(
            f"the token {token_file} does not match {config.hash_file}: "
            "this is not the configured backup disk",
            hint="nothing was written; attach the right disk",
        )


def init(root: Path, config: TokenConfig, *, force: bool = False) -> Path:
    """Write a new random token at ``root`` and its hash file; return the token path.

    The token is written beneath ``root`` without following symlinks (temporary
    file, fsync, rename). Refuses to replace an existing token or hash file unless
    ``force``; even then a symlink, folder or special file at the token's name is
    refused, never replaced or followed.
    """
    folder_rel, name = _split(config.file)
    token_file = root / config.file
    data = secrets.token_bytes(TOKEN_BYTES)
    with SafeDir.open_root(root) as top, top.sub(folder_rel, create=True) as folder:
        existing = folder.lstat(name)
        if not force:
            for path, present in (
                (token_file, existing is not None),
                (config.hash_file, os.path.lexists(config.hash_file)),
            ):
                if present:
                    raise DiskError(
                        f"{path} already exists",
                        hint="pass --force to replace the token (the old hash stops matching)",
                    )
        if existing is not None:
            check_kind(existing, token_file, "file")
        folder.write_atomic(name, data, 0o600, overwrite=force)
    digest = hashlib.sha512(data).hexdigest()
    config.hash_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(config.hash_file, f"{digest}  {config.file}\n".encode(), 0o600)
    return token_file
