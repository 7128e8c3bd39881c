"""``coldvault mount JOB DIR``: the steps, each recorded before the next one starts.

Take the lock, open the backup disk if needed, open the snapshot folder beneath the
backup root, start the FUSE server (which inherits the lock and holds it), then,
unless ``raw``, attach the image to a read-only loop device and mount what is on
it read-only at DIR (a file system), or each partition of a partition table (one
read-only loop device over its range) at DIR/p1, DIR/p2, …
Any failure undoes what was done so far, in reverse.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from coldvault.config.model import Config, ImageJob
from coldvault.disk.stack import DiskStack
from coldvault.errors import JobError
from coldvault.jobs.image.reader import new_hasher
from coldvault.mount import attach, server, table
from coldvault.mount import record as mount_record
from coldvault.mount.record import MountRecord
from coldvault.mount.snapshot import open_snapshot
from coldvault.mount.spec import ServeSpec
from coldvault.mount.teardown import teardown
from coldvault.service.lock import open_locked
from coldvault.system.beneath import SafeDir
from coldvault.system.mounts import mount_at

log = logging.getLogger("coldvault.mount")

# Larger read requests to the FUSE server: fewer round trips for sequential reads.
FUSE_READ_AHEAD_KB = 4096


@dataclass(frozen=True)
class MountRequest:
    """What the user asked for."""

    job: ImageJob
    dir: Path
    snapshot: str = "latest"
    raw: bool = False


def mount(config: Config, request: MountRequest) -> MountRecord:
    """Mount the snapshot; return the record of what was set up."""
    runtime = config.settings.runtime_dir
    target = _prepare_dir(runtime, request.dir)
    lock_fd = open_locked(config.settings.lock_file, wait=0)
    try:
        stack = DiskStack(config.disk)
        stack.wait(0)
        root = stack.open()
        key = mount_record.path_for(runtime, target).stem
        fuse_dir = target if request.raw else mount_record.folder(runtime) / f"{key}.image"
        rec = MountRecord(
            dir=str(target),
            job=request.job.name,
            snapshot=request.snapshot,
            raw=request.raw,
            fuse_dir=str(fuse_dir),
            image=str(fuse_dir / f"{request.job.name}.img"),
            made_dirs=() if target.exists() else (str(target),),
            disk_layers=tuple(stack.opened_layers),
        )
        try:
            target.mkdir(parents=True, exist_ok=True)
            mount_record.save(runtime, rec)
            rec = _build(config, request, root, rec, lock_fd)
        except BaseException:
            _undo(config, rec, lock_held=True)
            raise
    finally:
        os.close(lock_fd)  # the FUSE server keeps its copy: the lock stays held
    return rec


def _prepare_dir(runtime: Path, wanted: Path) -> Path:
    target = wanted.resolve()
    if mount_record.load(runtime, target) is not None:
        raise JobError(
            f"coldvault already has a mount at {target}",
            hint=f"`coldvault umount {target}` first",
        )
    if target.exists():
        if not target.is_dir():
            raise JobError(f"{target} is not a folder")
        if mount_at(target) is not None:
            raise JobError(f"something is already mounted at {target}")
        if any(target.iterdir()):
            raise JobError(f"{target} is not empty", hint="mount at an empty folder")
    return target


def _build(
    config: Config, request: MountRequest, root: Path, rec: MountRecord, lock_fd: int
) -> MountRecord:
    runtime = config.settings.runtime_dir
    try:
        folder, name = open_snapshot(root, request.job, request.snapshot)
    except FileNotFoundError:
        raise JobError(
            f"no backups of job {request.job.name} in {root}", hint="run `coldvault run JOB` first"
        ) from None
    with folder:
        parts = table.load(folder, request.job.part_size)
        _check_algorithm(parts)
        rec = rec.with_(snapshot=name, checked=parts.checked)
        fuse_dir = Path(rec.fuse_dir)
        if not request.raw:
            fuse_dir.mkdir(mode=0o700, exist_ok=True)
            rec = rec.with_(made_dirs=(*rec.made_dirs, str(fuse_dir)))
        mount_record.save(runtime, rec)
        rec = _start_server(runtime, rec, folder, parts, lock_fd)
    if request.raw:
        return rec
    return _mount_inside(runtime, rec)


def _check_algorithm(parts: table.PartTable) -> None:
    if parts.algorithm is None:
        return
    try:
        new_hasher(parts.algorithm)
    except ImportError:
        raise JobError(
            f"the snapshot's parts are hashed with {parts.algorithm}, "
            "which is not installed here: they cannot be checked",
            hint=f"install the {parts.algorithm} module (pip install {parts.algorithm})",
        ) from None


def _start_server(
    runtime: Path, rec: MountRecord, folder: SafeDir, parts: table.PartTable, lock_fd: int
) -> MountRecord:
    spec = ServeSpec(
        Path(rec.fuse_dir),
        Path(rec.image).name,
        folder.fd,
        folder.path,
        lock_fd,
        parts,
        purpose=f"`coldvault mount` of {rec.job} at {rec.dir}",
    )
    log_file = mount_record.path_for(runtime, rec.dir).with_suffix(".log")
    pid, started = server.start(spec, log_file)
    rec = rec.with_(pid=pid, pid_start=started)
    mount_record.save(runtime, rec)
    _tune_read_ahead(Path(rec.fuse_dir))
    return rec


def _tune_read_ahead(fuse_dir: Path) -> None:
    """Raise the FUSE mount's read-ahead (128 KiB by default): larger, fewer requests."""
    dev = os.stat(fuse_dir).st_dev
    knob = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    try:
        knob.write_text(f"{FUSE_READ_AHEAD_KB}\n")
    except OSError as exc:
        log.debug("cannot set %s: %s", knob, exc)


def _mount_inside(runtime: Path, rec: MountRecord) -> MountRecord:
    image = Path(rec.image)
    found = attach.probe(image)
    if found.fstype is None and found.pttype is None:
        raise JobError(
            f"no file system or partition table recognised in the snapshot {rec.snapshot}",
            hint="`coldvault mount --raw` exposes the image file as it is",
        )
    if found.fstype is not None:
        rec = _attach(runtime, rec, image)
        return _mount_one(runtime, rec, Path(rec.loops[-1]), Path(rec.dir), found.fstype, "")
    for part in attach.partitions(image):
        rec = _mount_partition(runtime, rec, part)
    if not rec.mounts:
        raise JobError(
            f"no partition of the {found.pttype} partition table holds a file system "
            "coldvault could mount",
            hint="`coldvault mount --raw` exposes the image file as it is",
        )
    return rec


def _attach(
    runtime: Path, rec: MountRecord, image: Path, part: attach.Partition | None = None
) -> MountRecord:
    if part is None:
        loop = attach.attach(image)
    else:
        loop = attach.attach(image, offset=part.offset, size=part.size)
    rec = rec.with_(loops=(*rec.loops, str(loop)))
    mount_record.save(runtime, rec)
    return rec


def _mount_partition(runtime: Path, rec: MountRecord, part: attach.Partition) -> MountRecord:
    label = f"p{part.number}"
    rec = _attach(runtime, rec, Path(rec.image), part)
    dev = Path(rec.loops[-1])
    fstype = attach.probe(dev).fstype
    if fstype is None or fstype == "swap":
        what = "swap" if fstype == "swap" else "no file system recognised"
        return rec.with_(notes=(*rec.notes, f"{label}: {what}, not mounted"))
    point = Path(rec.dir) / label
    point.mkdir(exist_ok=True)
    rec = rec.with_(made_dirs=(*rec.made_dirs, str(point)))
    mount_record.save(runtime, rec)
    try:
        return _mount_one(runtime, rec, dev, point, fstype, f"{label}: ")
    except JobError as exc:
        with contextlib.suppress(OSError):
            point.rmdir()
        log.warning("%s", exc)
        return rec.with_(notes=(*rec.notes, f"{label}: not mounted: {exc.message}"))


def _mount_one(
    runtime: Path, rec: MountRecord, dev: Path, point: Path, fstype: str, label: str
) -> MountRecord:
    rescue = attach.mount_ro(dev, point, fstype)
    rec = rec.with_(mounts=(*rec.mounts, str(point)))
    if rescue is not None:
        note = (
            f"{label}{fstype} mounted with `{rescue}`: it was not cleanly unmounted when it "
            "was backed up, and its journal/log was not replayed (the newest changes may "
            "be missing)"
        )
        rec = rec.with_(notes=(*rec.notes, note))
    mount_record.save(runtime, rec)
    return rec


def _undo(config: Config, rec: MountRecord, *, lock_held: bool) -> None:
    """Tear down what a failed mount made; the original error is what the user sees."""
    current = mount_record.load(config.settings.runtime_dir, rec.dir) or rec
    try:
        teardown(config, current, lock_held=lock_held)
    except Exception as exc:
        log.error("undoing the failed mount left something behind: %s", exc)
