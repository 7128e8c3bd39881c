"""A job's newest backup on a disk as marks the host remembers: ``{key: fingerprint}``.

A disk that comes back without the backup the host last wrote to it, or with a
different one, went back in time (restored from an old clone, swapped with a
copy, rolled back). The host compares what it remembers with what is there:

- image jobs: the key is the newest snapshot folder (``.`` with ``snapshots: 0``),
  the fingerprint the SHA-256 of its manifest file (each run writes a new one);
- btrfs jobs: one key ``SOURCE/SNAPSHOT`` per source, the newest complete
  received copy, the fingerprint its ``received_uuid``.

Everything is read beneath the mount point without following symlinks; what
cannot be read counts as missing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from coldvault.config.model import BtrfsJob, ImageJob, Job
from coldvault.errors import ColdvaultError
from coldvault.jobs.jobdir import open_job_folder
from coldvault.system.beneath import SafeDir

Marks = dict[str, str]


def newest(job: Job, job_dir: Path) -> Marks:
    """The marks of the job's newest backup on the disk ({} when it has none)."""
    try:
        with open_job_folder(job_dir, job.target, create=False) as top:
            if isinstance(job, ImageJob):
                return _image_newest(top, job)
            if isinstance(job, BtrfsJob):
                return _btrfs_newest(top, job)
    except (ColdvaultError, OSError):
        return {}
    return {}


def fingerprint(job: Job, job_dir: Path, key: str) -> str | None:
    """The fingerprint of ``key`` on the disk now; None when it is missing or unreadable."""
    try:
        with open_job_folder(job_dir, job.target, create=False) as top:
            if isinstance(job, ImageJob):
                return _manifest_hash(top, key)
            if isinstance(job, BtrfsJob):
                return _received_uuid(top, key)
    except (ColdvaultError, OSError):
        return None
    return None


def _image_newest(top: SafeDir, job: ImageJob) -> Marks:
    from coldvault.jobs.image import snapshots

    name = "." if job.snapshots == 0 else snapshots.newest(top)
    if name is None:
        return {}
    found = _manifest_hash(top, name)
    return {name: found} if found is not None else {}


def _manifest_hash(top: SafeDir, name: str) -> str | None:
    from coldvault.jobs.image.manifest import MANIFEST_NAME, MAX_BYTES

    if name == ".":
        return _hash_file(top, MANIFEST_NAME, MAX_BYTES)
    if "/" in name or name.startswith(".") or top.kind(name) != "folder":
        return None
    with top.sub(name) as folder:
        return _hash_file(folder, MANIFEST_NAME, MAX_BYTES)


def _hash_file(folder: SafeDir, name: str, limit: int) -> str | None:
    if folder.kind(name) != "file":
        return None
    return hashlib.sha256(folder.read_bytes(name, limit)).hexdigest()


def _btrfs_newest(top: SafeDir, job: BtrfsJob) -> Marks:
    from coldvault.jobs.btrfs import snapshots
    from coldvault.jobs.btrfs.diskdir import open_source_folder
    from coldvault.jobs.btrfs.snapshots import source_name

    out: Marks = {}
    for path in job.sources:
        src = source_name(path)
        folder = open_source_folder(top, src, create=False)
        if folder is None:
            continue
        with folder:
            complete = [s for s in snapshots.scan(folder, src).named(src) if s.complete]
        if complete and complete[-1].received_uuid:
            out[f"{src}/{complete[-1].path.name}"] = complete[-1].received_uuid
    return out


def _received_uuid(top: SafeDir, key: str) -> str | None:
    from coldvault.jobs.btrfs import subvol
    from coldvault.jobs.btrfs.diskdir import open_source_folder

    src, _, name = key.partition("/")
    if not src or not name or "/" in name or src.startswith(".") or name.startswith("."):
        return None
    folder = open_source_folder(top, src, create=False)
    if folder is None:
        return None
    with folder:
        found = subvol.info_at(folder, name)
    if found is None or not found.complete:
        return None
    return found.received_uuid
