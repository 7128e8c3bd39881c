"""What ``coldvault status`` says about mounts: which snapshot is mounted where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coldvault.mount import server
from coldvault.mount.record import all_records


def mounts(runtime_dir: Path) -> list[dict[str, Any]]:
    """One entry per recorded mount, with whether its FUSE server still runs."""
    out = []
    for rec in all_records(runtime_dir):
        out.append(
            {
                "job": rec.job,
                "snapshot": rec.snapshot,
                "dir": rec.dir,
                "raw": rec.raw,
                "mounts": list(rec.mounts),
                "pid": rec.pid,
                "running": server.running(rec.pid, rec.pid_start) is not None,
            }
        )
    return out


def lines(entries: list[dict[str, Any]]) -> list[str]:
    """Human-readable lines for :func:`mounts`."""
    out = []
    for m in entries:
        where = ", ".join(m["mounts"]) or m["dir"] + (" (image file)" if m["raw"] else "")
        state = "holds the backup disk" if m["running"] else "FUSE server gone: run umount"
        out.append(f"mounted: {m['job']} {m['snapshot']} at {where} ({state})")
    return out
