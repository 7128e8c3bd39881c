"""The per-snapshot manifest: what each part holds, so unchanged parts are never read back.

``.coldvault-manifest.json`` in a snapshot folder records the source size, part
and block size, the hash algorithm and, per part, the hash of its logical
bytes (``None`` for an all-zero part), its logical size, whether it is all
zeros, and the stored file's inode, size and mtime. A part file whose
(inode, size, mtime) differs from its record is *unknown*: it was written after
the manifest was saved (an interrupted run) and is rewritten, never trusted.

The file lies on the backup disk and is input like any other: it is read with a
size limit, only when it is a regular file, and validated field by field before
anything trusts it. A manifest that fails is :class:`ManifestDamaged`, an integrity
problem of that one snapshot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from coldvault.errors import ColdvaultError, IntegrityError
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir

MANIFEST_NAME = ".coldvault-manifest.json"
FORMAT_VERSION = 1
MAX_BYTES = 256 << 20  # ~1.5 million parts; a larger file is not one of ours
HASH_HEX = {"sha256": 64, "blake3": 64}
_MAX_SIZE = (1 << 63) - 1  # what a file offset can hold
MAX_BLOCK = 256 << 20  # verify and restore allocate one block: bounded, whatever the file says


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

    @property
    def count(self) -> int:
        """How many parts the source needs."""
        return -(-self.source_size // self.part_size)

    def span(self, index: int) -> int:
        """The logical size of part ``index``."""
        return min(self.part_size, self.source_size - index * self.part_size)

    def with_parts(self, parts: list[PartRecord | None]) -> Manifest:
        """A copy with ``parts`` replaced."""
        return replace(self, parts=tuple(parts))


class ManifestDamaged(IntegrityError):
    """A manifest exists but cannot be trusted: unreadable, not JSON, or inconsistent."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"manifest {path} is damaged: {why}",
            hint="the parts of this snapshot cannot be checked against it; the next run "
            "re-hashes or rewrites them for a new snapshot, and restoring this snapshot "
            "needs the manifest moved away (then it restores unverified)",
        )
        self.path, self.why = path, why


def path_in(folder: SafeDir) -> Path:
    """Where the manifest of ``folder`` lives (for messages)."""
    return folder.child(MANIFEST_NAME)


def load(folder: SafeDir) -> Manifest | None:
    """The validated manifest of ``folder``; None when it has none (first run, original script).

    Raises :class:`ManifestDamaged` for anything that is not a valid manifest.
    """
    path = path_in(folder)
    st = folder.lstat(MANIFEST_NAME)
    if st is None:
        return None
    if st.st_size > MAX_BYTES:  # refused before reading a byte of it
        raise ManifestDamaged(path, f"{st.st_size} bytes, more than any manifest ({MAX_BYTES})")
    try:
        raw = folder.read_bytes(MANIFEST_NAME, MAX_BYTES)
        data = json.loads(raw)
    except ColdvaultError as exc:  # not a regular file, or too large
        raise ManifestDamaged(path, exc.message) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ManifestDamaged(path, f"unreadable ({exc})") from None
    return validate(data, path)


def save(folder: SafeDir, manifest: Manifest) -> None:
    """Write the manifest atomically: temporary file, fsync, rename, fsync the folder."""
    data = asdict(manifest)
    data["version"] = FORMAT_VERSION
    text = json.dumps(data, separators=(",", ":"))
    crashpoint.reached("image.manifest-save")
    folder.write_atomic(MANIFEST_NAME, text)


# ---- validation ---------------------------------------------------------------------------


class _Bad(Exception):
    """One reason a manifest is invalid."""


def _int(value: object, what: str, low: int = 0, high: int = _MAX_SIZE) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _Bad(f"{what} must be a whole number from {low} to {high}, not {value!r:.40}")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise _Bad(f"{what} must be true or false, not {value!r:.40}")
    return value


def _str(value: object, what: str) -> str:
    if type(value) is not str or len(value) > 4096:
        raise _Bad(f"{what} must be a short text, not {value!r:.40}")
    return value


def validate(data: object, path: Path) -> Manifest:
    """``data`` (parsed JSON) as a :class:`Manifest`, or :class:`ManifestDamaged`."""
    try:
        return _validate(data)
    except _Bad as exc:
        raise ManifestDamaged(path, str(exc)) from None


def _validate(data: object) -> Manifest:
    if not isinstance(data, dict):
        raise _Bad("not a JSON object")
    known = {f.name for f in fields(Manifest)} | {"version"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _Bad(f"unknown keys {', '.join(map(str, unknown))[:200]}")
    missing = [
        k for k in ("source_size", "part_size", "block_size", "algorithm", "parts") if k not in data
    ]
    if missing:
        raise _Bad(f"missing keys {', '.join(missing)}")
    if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise _Bad(f"format version {data['version']!r:.20} is not {FORMAT_VERSION}")
    head = Manifest(
        source_size=_int(data["source_size"], "source_size"),
        part_size=_int(data["part_size"], "part_size", 1),
        block_size=_int(data["block_size"], "block_size", 1, MAX_BLOCK),
        algorithm=_str(data["algorithm"], "algorithm"),
        parts=(),
        source=_str(data.get("source", ""), "source"),
        created=_str(data.get("created", ""), "created"),
        changed=_int(data.get("changed", 0), "changed"),
        bytes_read=_int(data.get("bytes_read", 0), "bytes_read"),
        bytes_written=_int(data.get("bytes_written", 0), "bytes_written"),
        complete=_bool(data.get("complete", False), "complete"),
        adopted=_bool(data.get("adopted", False), "adopted"),
        extra=_extra(data.get("extra", {})),
    )
    if head.part_size % head.block_size:
        raise _Bad(f"part_size {head.part_size} is not a multiple of block_size {head.block_size}")
    if head.algorithm not in HASH_HEX:
        raise _Bad(f"unknown hash algorithm {head.algorithm!r:.40}")
    raw_parts = data["parts"]
    if not isinstance(raw_parts, list):
        raise _Bad("parts must be a list")
    if len(raw_parts) != head.count:
        raise _Bad(
            f"{len(raw_parts)} parts listed, but {head.source_size} bytes in parts of "
            f"{head.part_size} make {head.count}"
        )
    parts = tuple(_part(p, i, head) for i, p in enumerate(raw_parts))
    return replace(head, parts=parts)


def _extra(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad("extra must be an object")
    return value


_PART_KEYS = {f.name for f in fields(PartRecord)}


def _part(raw: object, index: int, head: Manifest) -> PartRecord | None:
    if raw is None:
        return None
    what = f"part {index}"
    if not isinstance(raw, dict) or set(raw) != _PART_KEYS:
        raise _Bad(f"{what} must be an object with keys {', '.join(sorted(_PART_KEYS))}")
    record = PartRecord(
        size=_int(raw["size"], f"{what} size"),
        zero=_bool(raw["zero"], f"{what} zero"),
        hash=None if raw["hash"] is None else _str(raw["hash"], f"{what} hash"),
        stored=_int(raw["stored"], f"{what} stored"),
        ino=_int(raw["ino"], f"{what} ino", 0, (1 << 64) - 1),
        mtime_ns=_int(raw["mtime_ns"], f"{what} mtime_ns", -(1 << 63), _MAX_SIZE),
    )
    if record.size != head.span(index):
        raise _Bad(f"{what} covers {record.size} bytes, expected {head.span(index)}")
    if record.stored not in (0, record.size) or (record.stored == 0 and not record.zero):
        raise _Bad(f"{what} is stored as {record.stored} bytes for {record.size}")
    if record.zero != (record.hash is None):
        raise _Bad(f"{what}: a hash must be given exactly when the part is not all zeros")
    if record.hash is not None and not _is_hex(record.hash, HASH_HEX[head.algorithm]):
        raise _Bad(f"{what} hash is not {HASH_HEX[head.algorithm]} hex digits")
    return record


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)
