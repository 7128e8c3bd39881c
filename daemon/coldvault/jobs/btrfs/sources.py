"""A btrfs job's sources: their names, snapshot folders and plain-words checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from coldvault.config.model import BtrfsJob
from coldvault.errors import ConfigError, JobError
from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.snapshots import source_name
from coldvault.jobs.btrfs.subvol import Subvolume

log = logging.getLogger("coldvault.jobs.btrfs")

SNAPSHOT_DIR_NAME = ".coldvault-snapshots"


@dataclass(frozen=True)
class Source:
    """One source subvolume of a job and where its snapshots live."""

    path: Path
    name: str  # folder name on both sides and prefix of snapshot names
    snapshot_dir: Path  # <job snapshot dir>/<name>

    def backup_dir(self, job_dir: Path) -> Path:
        """Where this source's received copies live on the backup disk."""
        return job_dir / self.name


def job_sources(job: BtrfsJob) -> list[Source]:
    """The job's sources with their snapshot folders (no filesystem access beyond mountinfo)."""
    result: list[Source] = []
    for path in job.sources:
        name = source_name(path)
        clash = next((s for s in result if s.name == name), None)
        if clash is not None:
            raise ConfigError(
                f"job {job.name}: sources {clash.path} and {path} would both be stored as {name!r}",
                hint="split them into two jobs, or back up their common parent subvolume",
            )
        if job.snapshot_dir is not None:
            base = job.snapshot_dir
        else:
            base = subvol.containing_mount(path).mount_point / SNAPSHOT_DIR_NAME / job.name
        result.append(Source(path, name, base / name))
    return result


def check(source: Source) -> Subvolume:
    """Check the source is a subvolume and its snapshot folder on the same filesystem."""
    if not source.path.exists():
        raise JobError(f"source {source.path} does not exist", hint="check the job's sources")
    src_mount = subvol.require_btrfs(source.path, "source")
    info = subvol.info(source.path)  # not a subvolume: `btrfs subvolume show` says why
    snap_mount = subvol.containing_mount(source.snapshot_dir)
    if not subvol.same_filesystem(src_mount, snap_mount):
        raise JobError(
            f"snapshot directory {source.snapshot_dir} is on another filesystem "
            f"({snap_mount.source} at {snap_mount.mount_point}) than source {source.path} "
            f"({src_mount.source} at {src_mount.mount_point})",
            hint="Btrfs snapshots stay on their filesystem: set snapshot_dir to a folder on it",
        )
    return info


def nested_subvolumes(source: Source, info: Subvolume) -> list[Path]:
    """Subvolumes inside the source (not part of its snapshots), except coldvault snapshots."""
    entries = subvol.list_below(source.path)
    if not entries:
        return []
    # Listed paths start at the filesystem's top; only `show` knows where the source is.
    fs_path = info.fs_path or subvol.show(source.path).fs_path
    prefix = f"{fs_path}/" if fs_path else ""
    own = source.snapshot_dir.parent.resolve()
    nested = []
    for entry in entries:
        if not entry.path.startswith(prefix):
            continue
        path = source.path / entry.path[len(prefix) :]
        if path.resolve() == own or own in path.resolve().parents:
            continue
        if SNAPSHOT_DIR_NAME in path.relative_to(source.path).parts:
            continue  # snapshots of this or another coldvault job
        nested.append(path)
    return nested


def warn_nested(source: Source, info: Subvolume) -> list[Path]:
    """Log one warning per nested subvolume; return them."""
    nested = nested_subvolumes(source, info)
    for path in nested:
        log.warning(
            "%s is a nested subvolume inside source %s: it is NOT part of the backup "
            "(add it as a source of its own to back it up)",
            path,
            source.path,
        )
    return nested
