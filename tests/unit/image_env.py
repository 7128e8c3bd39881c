"""Helpers for the image job tests: sources with data and zero regions, runs, digests."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from coldvault.config.model import ImageJob, SourceRef
from coldvault.jobs.base import JobResult, RestoreRequest
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.manifest import Manifest
from coldvault.jobs.image.runner import ImageRunner
from coldvault.progress import no_progress
from coldvault.system.beneath import SafeDir
from coldvault.system.cancel import CancelToken

KiB = 1 << 10
MiB = 1 << 20


def make_job(source: Path | str, **overrides: object) -> ImageJob:
    """A small image job (64 KiB blocks, 256 KiB parts) unless overridden."""
    values: dict[str, object] = {
        "name": "img",
        "source": SourceRef("path", str(source)),
        "target": "img",
        "part_size": 256 * KiB,
        "block_size": 64 * KiB,
        "snapshots": 3,
    }
    values.update(overrides)
    return ImageJob(**values)  # type: ignore[arg-type]


def write_source(path: Path, regions: list[tuple[int, bool]], seed: int = 1) -> bytes:
    """Write ``(length, random?)`` regions (False: zeros) to ``path``; return the bytes."""
    rng = random.Random(seed)
    data = b"".join(rng.randbytes(n) if rand else bytes(n) for n, rand in regions)
    path.write_bytes(data)
    return data


def patch(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of ``path`` in place."""
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def run(job: ImageJob, job_dir: Path, cancel: CancelToken | None = None) -> JobResult:
    """One backup run in this process (``job_dir``'s parent plays the mount point)."""
    job_dir.parent.mkdir(parents=True, exist_ok=True)
    return ImageRunner(job).run(job_dir, no_progress, cancel or CancelToken())


def restore_bytes(job: ImageJob, job_dir: Path, dest: Path, **kw: object) -> bytes:
    """Restore (default: latest) to ``dest`` and return its content."""
    ImageRunner(job).restore(job_dir, RestoreRequest(dest=dest, **kw), no_progress, CancelToken())  # type: ignore[arg-type]
    return dest.read_bytes()


def snapshots(job_dir: Path) -> list[Path]:
    """Completed snapshot folders, oldest first."""
    return sorted(p for p in job_dir.iterdir() if p.name.startswith("snapshot-2"))


def folder_state(folder: Path) -> dict[str, tuple[int, str, int]]:
    """name → (inode, sha256 of content, mode) for every file of ``folder``."""
    out = {}
    for name in sorted(os.listdir(folder)):
        st = os.stat(folder / name)
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        out[name] = (st.st_ino, digest, st.st_mode)
    return out


def part_inodes(folder: Path) -> dict[str, int]:
    """name → inode of the part files of ``folder``."""
    return {n: os.stat(folder / n).st_ino for n in os.listdir(folder) if n.startswith("part_")}


def load_manifest(folder: Path) -> Manifest | None:
    """The validated manifest of the snapshot folder ``folder``."""
    with SafeDir.open_root(folder) as d:
        return manifest_mod.load(d)
