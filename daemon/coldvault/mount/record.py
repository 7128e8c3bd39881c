"""What ``coldvault mount`` set up, kept so ``coldvault umount`` can undo it exactly.

One JSON file per mount in ``<runtime_dir>/mounts/``, rewritten (atomically) after
every step, so a mount that failed half-way, or whose FUSE process was killed, is
still undone in reverse: unmount ``mounts`` (newest first), detach ``loops``, stop
the FUSE process ``pid`` (identified with its start time, never a reused pid),
unmount ``fuse_dir`` if still mounted, close the disk layers ``disk_layers``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from coldvault.system.files import atomic_write

MOUNTS_DIR = "mounts"


@dataclass(frozen=True)
class MountRecord:
    """One ``coldvault mount`` and everything it made."""

    dir: str  # the DIR the user named (resolved)
    job: str
    snapshot: str
    raw: bool
    fuse_dir: str  # where the FUSE file system is mounted (DIR itself with --raw)
    image: str  # the image file inside it
    checked: bool = True  # parts are checked against a manifest
    pid: int | None = None  # the FUSE server
    pid_start: float | None = None  # its start time (psutil), against pid reuse
    loops: tuple[str, ...] = ()  # read-only loop devices (one per partition, or one)
    mounts: tuple[str, ...] = ()  # mount points, in the order they were mounted
    made_dirs: tuple[str, ...] = ()  # folders mount created (removed again when empty)
    disk_layers: tuple[str, ...] = ()  # disk layers ``mount`` opened (closed by umount)
    notes: tuple[str, ...] = field(default_factory=tuple)  # rescue options used, ...

    def with_(self, **changes: object) -> MountRecord:
        """A copy with ``changes``."""
        return replace(self, **changes)  # type: ignore[arg-type]


def folder(runtime_dir: Path) -> Path:
    """Where the records live."""
    return runtime_dir / MOUNTS_DIR


def path_for(runtime_dir: Path, mount_dir: Path | str) -> Path:
    """The record file of the mount at ``mount_dir``."""
    key = hashlib.sha256(str(mount_dir).encode()).hexdigest()[:16]
    return folder(runtime_dir) / f"{key}.json"


def save(runtime_dir: Path, rec: MountRecord) -> None:
    """Write ``rec`` atomically."""
    path = path_for(runtime_dir, rec.dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(asdict(rec), indent=1) + "\n", 0o600)


def _parse(text: str) -> MountRecord:
    data = json.loads(text)
    for key in ("mounts", "loops", "made_dirs", "disk_layers", "notes"):
        data[key] = tuple(data.get(key, ()))
    return MountRecord(**data)


def load(runtime_dir: Path, mount_dir: Path | str) -> MountRecord | None:
    """The record of the mount at ``mount_dir``, or None."""
    try:
        return _parse(path_for(runtime_dir, mount_dir).read_text())
    except FileNotFoundError:
        return None


def all_records(runtime_dir: Path) -> list[MountRecord]:
    """Every recorded mount (unreadable files are skipped)."""
    found = []
    try:
        names = sorted(os.listdir(folder(runtime_dir)))
    except FileNotFoundError:
        return []
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            try:
                found.append(_parse((folder(runtime_dir) / name).read_text()))
            except (OSError, ValueError, TypeError):
                continue
    return found


def delete(runtime_dir: Path, mount_dir: Path | str) -> None:
    """Forget the mount at ``mount_dir`` (after everything was undone)."""
    path_for(runtime_dir, mount_dir).unlink(missing_ok=True)
