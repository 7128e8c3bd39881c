"""Which bytes of the image each part holds, and what each part must hash to.

Built from the snapshot's manifest (validated before it is trusted) or, for a
snapshot of the original script, from the part files themselves (no hashes: the
parts are served unchecked and ``coldvault mount`` says so).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from coldvault.errors import JobError
from coldvault.jobs.image.manifest import MANIFEST_NAME
from coldvault.jobs.image.parts import PART_RE, part_name
from coldvault.system.beneath import SafeDir

MANIFEST_LIMIT = 256 << 20  # a manifest of a 100 TB image with 100 MB parts is ~200 MB
_HEX = re.compile(r"^[0-9a-f]{32,128}$")
ALGORITHMS = ("blake3", "sha256")


@dataclass(frozen=True)
class PartSpec:
    """One part: its logical size, and what its bytes must be."""

    size: int  # logical bytes of the image this part covers
    zero: bool  # all zero bytes (stored as a 0-byte file, or as zeros)
    hash: str | None  # hex digest to check; None: unchecked (no manifest)
    bad: str = ""  # why this part can never be served ("" when it can)


@dataclass(frozen=True)
class PartTable:
    """The layout of one snapshot as an image."""

    part_size: int
    parts: tuple[PartSpec, ...]
    algorithm: str | None  # None: no manifest, nothing is checked

    @property
    def size(self) -> int:
        """Bytes of the whole image."""
        return sum(p.size for p in self.parts)

    @property
    def checked(self) -> bool:
        """Whether parts are checked against hashes."""
        return self.algorithm is not None

    def to_json(self) -> dict[str, object]:
        """JSON-ready form (handed to the FUSE process)."""
        return {
            "part_size": self.part_size,
            "algorithm": self.algorithm,
            "parts": [[p.size, p.zero, p.hash, p.bad] for p in self.parts],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> PartTable:
        """The inverse of :meth:`to_json`."""
        raw = data["parts"]
        assert isinstance(raw, list)
        parts = tuple(PartSpec(int(s), bool(z), h, str(b)) for s, z, h, b in raw)
        algorithm = data["algorithm"]
        part_size = data["part_size"]
        assert isinstance(part_size, int) and (algorithm is None or isinstance(algorithm, str))
        return cls(part_size, parts, algorithm)


def load(folder: SafeDir, default_part_size: int) -> PartTable:
    """The table of the snapshot ``folder``: from its manifest, else from its part files."""
    if folder.lstat(MANIFEST_NAME) is None:
        return _from_files(folder, default_part_size)
    text = folder.read_bytes(MANIFEST_NAME, MANIFEST_LIMIT)
    try:
        return _from_manifest(json.loads(text))
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise JobError(
            f"manifest {folder.child(MANIFEST_NAME)} is malformed: {exc or type(exc).__name__}",
            hint="`coldvault verify JOB --snapshot NAME` checks the snapshot; "
            "another snapshot may still be good",
        ) from None


def _int(value: object, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} is {value!r}, expected a whole number >= {minimum}")
    return value


def _from_manifest(data: object) -> PartTable:
    """Validate the manifest's fields before any of them is used."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    size = _int(data["source_size"], "source_size")
    part_size = _int(data["part_size"], "part_size", 1)
    algorithm = data["algorithm"]
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown hash algorithm {algorithm!r}")
    records = data["parts"]
    if not isinstance(records, list):
        raise ValueError("parts is not a list")
    count = -(-size // part_size)
    if len(records) < count:
        raise ValueError(f"it lists {len(records)} of {count} parts")
    parts = []
    for index in range(count):
        want = min(part_size, size - index * part_size)
        parts.append(_spec(records[index], want, index))
    return PartTable(part_size, tuple(parts), str(algorithm))


def _spec(record: object, want: int, index: int) -> PartSpec:
    if record is None:
        return PartSpec(want, False, None, "not recorded in the manifest (interrupted write?)")
    if not isinstance(record, dict):
        raise ValueError(f"part {index} is not a JSON object")
    if _int(record["size"], f"part {index} size") != want:
        raise ValueError(f"part {index} covers {record['size']} bytes, expected {want}")
    zero = record["zero"]
    digest = record["hash"]
    if not isinstance(zero, bool):
        raise ValueError(f"part {index}: zero is {zero!r}")
    if zero:
        return PartSpec(want, True, None)
    if not isinstance(digest, str) or not _HEX.match(digest):
        raise ValueError(f"part {index}: hash is {digest!r}")
    return PartSpec(want, False, digest)


def _from_files(folder: SafeDir, part_size: int) -> PartTable:
    """A snapshot of the original script: sizes from the part files, nothing to check."""
    sizes: dict[int, int] = {}
    for name, kind in folder.entries():
        m = PART_RE.match(name)
        if m and kind == "file":
            st = folder.lstat(name)
            if st is not None:
                sizes[int(m.group(1))] = st.st_size
    if not sizes:
        raise JobError(f"{folder.path} holds no parts", hint="see `coldvault list JOB`")
    count = max(sizes) + 1
    parts = []
    for index in range(count):
        stored = sizes.get(index)
        last = index == count - 1
        if stored is None:
            parts.append(PartSpec(part_size, False, None, f"{part_name(index)} is missing"))
        elif stored == 0:
            parts.append(PartSpec(part_size, True, None))
        elif stored == part_size or (last and stored < part_size):
            parts.append(PartSpec(stored, False, None))
        else:
            why = f"{part_name(index)} has {stored} bytes, expected {part_size}"
            parts.append(PartSpec(part_size, False, None, why))
    return PartTable(part_size, tuple(parts), None)
