"""Files that hold secrets (the LUKS key, restic's password and credentials).

Such a file must be a regular file owned by root and unreadable by group and
others: anyone who can read it can decrypt the backups. It is opened without
blocking (a FIFO there must not hang the run) and judged on the open descriptor;
a child is handed ``/proc/PID/fd/N`` (Linux), so it reads the very file checked
even if the name is replaced meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from coldvault.errors import ColdvaultError
from coldvault.system.beneath import UnexpectedEntry, open_regular

MAX_SECRET_BYTES = 1 << 20  # a key or credentials file, never more


@contextlib.contextmanager
def opened_secret(
    path: Path, what: str, error: type[ColdvaultError], missing_hint: str
) -> Iterator[tuple[int, Path]]:
    """Open and check the secret file ``path`` (called ``what`` in messages).

    Yields the open descriptor and a path that reaches exactly the file checked.
    Raises ``error`` when the file is missing, not a regular file, or not root's
    with mode 600 or stricter.
    """
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist", hint=missing_hint) from None
    except UnexpectedEntry as exc:
        raise error(f"{what} {path} is not a regular file (it is a {exc.found})") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        _check_owner_and_mode(os.fstat(fd), path, what, error)
        linux = sys.platform.startswith("linux")
        yield fd, Path(f"/proc/{os.getpid()}/fd/{fd}") if linux else path
    finally:
        os.close(fd)


def read_secret(path: Path, what: str, error: type[ColdvaultError], missing_hint: str) -> bytes:
    """The checked contents of a secret file (at most ``MAX_SECRET_BYTES``)."""
    with opened_secret(path, what, error, missing_hint) as (fd, _):
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise error(f"{what} {path} is larger than {MAX_SECRET_BYTES} bytes")
    return data


def _check_owner_and_mode(
    st: os.stat_result, path: Path, what: str, error: type[ColdvaultError]
) -> None:
    if st.st_uid != 0:
        raise error(
            f"{what} {path} is owned by uid {st.st_uid}, not root",
            hint=f"chown root:root {path}",
        )
    if st.st_mode & 0o077:
        raise error(
            f"{what} {path} is readable or writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
