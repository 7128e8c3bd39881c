"""What restic needs to open a repository: its string, password and backend credentials.

The password file and the optional ``env_file`` follow the LUKS key file's rules
(root's, mode 600, a regular file opened without blocking). ``env_file`` holds
``NAME=value`` lines (``#`` comments and blank lines allowed, no shell syntax).
Every message that may quote restic's output goes through :func:`mask`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from coldvault.config.model import OffsiteTarget
from coldvault.errors import OffsiteError
from coldvault.system.secretfile import opened_secret, read_secret

MASK = "***"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OURS = ("RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND")
_USERINFO = re.compile(r"://([^/@\s]+)@")


@contextlib.contextmanager
def environment(target: OffsiteTarget) -> Iterator[dict[str, str]]:
    """The environment restic runs with for ``target`` (valid inside the block only)."""
    env = read_env_file(target.env_file) if target.env_file is not None else {}
    hint = f"set offsite {target.name}'s password_file to the repository's password"
    with opened_secret(target.password_file, "restic password file", OffsiteError, hint) as (
        _fd,
        reachable,
    ):
        env.update(RESTIC_REPOSITORY=target.repository, RESTIC_PASSWORD_FILE=str(reachable))
        env.pop("RESTIC_PASSWORD", None)
        yield env


def check(target: OffsiteTarget) -> None:
    """Raise OffsiteError now if the password or env_file breaks the rules (even when
    nothing needs restic this turn: a broken file is said at once, not at the next copy)."""
    with environment(target):
        pass


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of a credentials file (checked like a key file)."""
    data = read_secret(path, "restic env_file", OffsiteError, "fix or remove env_file")
    env: dict[str, str] = {}
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name) or name in _OURS:
            raise OffsiteError(
                f"{path}:{number}: expected NAME=value (a variable other than "
                f"{', '.join(_OURS)}); the line is not shown, it may hold a secret"
            )
        env[name] = value.strip()
    return env


def secrets_of(target: OffsiteTarget) -> list[str]:
    """The strings no message may show: the repository, its user:password part."""
    found = [target.repository]
    match = _USERINFO.search(target.repository)
    if match:
        found.append(match[1])
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def mask(target: OffsiteTarget, text: str) -> str:
    """``text`` with the repository string and its credentials replaced."""
    for secret in secrets_of(target):
        text = text.replace(secret, MASK if secret != target.repository else f"<{target.name}>")
    return text
