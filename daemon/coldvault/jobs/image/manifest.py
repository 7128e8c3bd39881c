"""The per-snapshot manifest: what each part holds, so unchanged parts are never read back.

``.coldvault-manifest.json`` in a snapshot folder records the source size, part
and block size, the hash algorithm and, per part, the hash of its logical
bytes (``None`` for an all-zero part), its logical size, whether it is all
zeros, and the stored file's inode, size and mtime. A part file whose
(inode, size, mtime) differs from its record is *unknown*: it was written after
the manifest was saved (an interrupted run) and is rewritten, never trusted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coldvault.errors import JobError
from coldvault.system.files import atomic_write

MANIFEST_NAME = ".coldvault-manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PartRecord:
    """One part as it was stored."""

    size: int  # logical bytes of the source this part covers
    zero: bool  # all zero bytes (hash not computed)
    hash: str | None  # hex digest of the logical bytes; None when zero
    stored: int  # the part file's size on disk (0 for a null part)
    ino: int
    mtime_ns: int

    def same_data(self, other: PartRecord) -> bool:
        """Whether both records describe the same logical bytes."""
        if self.size != other.size or self.zero != other.zero:
            return False
        return self.zero or self.hash == other.hash


@dataclass(frozen=True)
class Manifest:
    """The manifest of one snapshot folder."""

    source_size: int
    part_size: int
    block_size: int
    algorithm: str
    parts: tuple[PartRecord | None, ...]  # None: unknown (written but not recorded)
    source: str = ""
    created: str = ""  # ISO time the snapshot was completed ("" while in progress)
    changed: int = 0  # parts this run wrote
    bytes_read: int = 0
    bytes_written: int = 0
    complete: bool = False
    adopted: bool = False  # made by hashing a folder of the original script
    extra: dict[str, Any] = field(default_factory=dict)


def path_in(folder: Path) -> Path:
    """Where the manifest of ``folder`` lives."""
    return folder / MANIFEST_NAME


def load(folder: Path) -> Manifest | None:
    """The manifest of ``folder``, or None if it has none (first run, original script)."""
    path = path_in(folder)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise JobError(
            f"cannot read manifest {path}: {exc}",
            hint="move the file away; the next run rebuilds it by hashing the parts",
        ) from None
    try:
        parts = tuple(None if p is None else PartRecord(**p) for p in data.pop("parts"))
        data.pop("version", None)
        return Manifest(parts=parts, **data)
    except (KeyError, TypeError) as exc:
        raise JobError(f"manifest {path} is malformed: {exc}") from None


def save(folder: Path, manifest: Manifest) -> None:
    """Write the manifest atomically: temporary file, fsync, rename, fsync the folder."""
    data = asdict(manifest)
    data["version"] = FORMAT_VERSION
    text = json.dumps(data, separators=(",", ":"))
    atomic_write(path_in(folder), text)
