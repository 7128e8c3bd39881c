"""Durable file writes: every small file coldvault must not lose goes through here."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make renames and new names in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_and_sync(fd: int, payload: bytes) -> None:
    """Write all of ``payload`` to ``fd``, fsync it, and close it (also on failure)."""
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes | str, mode: int = 0o644, *, overwrite: bool = True
) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, fsync the folder.

    Readers see the old content or the new, never a mix. Without ``overwrite`` an
    existing file is never replaced (FileExistsError).
    """
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_and_sync(fd, payload)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # unlike rename, fails when ``path`` exists
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
