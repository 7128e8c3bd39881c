"""Which layers ``coldvault open`` opened, kept for a later ``coldvault close``.

One-shot commands run in separate processes: ``open`` records the layers it
opened in ``<runtime_dir>/open-layers.json`` so that ``close`` closes exactly
those and leaves layers the user opened by hand alone. Each configured disk has
its own record (``open-layers.<disk>.json`` for a disk not named ``default``),
so closing one disk does not forget what was opened of another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RECORD_NAME = "open-layers.json"
DEFAULT_DISK = "default"


def record_path(runtime_dir: Path, disk: str = DEFAULT_DISK) -> Path:
    """Where the record of ``disk`` lives (disk names are safe file names)."""
    if disk == DEFAULT_DISK:
        return runtime_dir / RECORD_NAME
    return runtime_dir / f"open-layers.{disk}.json"


def load(runtime_dir: Path, disk: str = DEFAULT_DISK) -> list[str] | None:
    """The recorded layer names, or None when there is no (readable) record."""
    try:
        data = json.loads(record_path(runtime_dir, disk).read_text())
    except (OSError, ValueError):
        return None
    layers = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        return None
    return [str(name) for name in layers]


def save(runtime_dir: Path, layers: list[str], disk: str = DEFAULT_DISK) -> None:
    """Record ``layers`` (atomically); merged with what an earlier open recorded."""
    earlier = load(runtime_dir, disk) or []
    merged = list(dict.fromkeys([*earlier, *layers]))
    runtime_dir.mkdir(parents=True, exist_ok=True)
    path = record_path(runtime_dir, disk)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"layers": merged, "pid": os.getpid()}) + "\n")
    os.replace(tmp, path)


def clear(runtime_dir: Path, disk: str = DEFAULT_DISK) -> None:
    """Forget the record of ``disk`` (after a successful close)."""
    record_path(runtime_dir, disk).unlink(missing_ok=True)
