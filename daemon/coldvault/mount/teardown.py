"""``coldvault umount DIR``: undo a mount in reverse, from its record.

Every step checks the current state first and the record is rewritten after each,
so an umount that stopped half-way (a busy mount) is finished by running it again,
and one whose FUSE process was killed still unmounts, detaches and closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from coldvault.config.model import Config
from coldvault.disk import record as disk_record
from coldvault.disk.mount import holders
from coldvault.disk.stack import DiskStack
from coldvault.errors import Busy, CommandError, JobError
from coldvault.mount import attach, server
from coldvault.mount import record as mount_record
from coldvault.mount.record import MountRecord
from coldvault.service.lock import open_locked
from coldvault.system.mounts import mount_at

log = logging.getLogger("coldvault.mount")

CLOSE_LOCK_WAIT = 10.0


def teardown(config: Config, rec: MountRecord, *, lock_held: bool = False) -> list[str]:
    """Undo ``rec`` in reverse; return what was done, in words. The record is deleted."""
    runtime = config.settings.runtime_dir
    done: list[str] = []
    for point in reversed(rec.mounts):
        _unmount(Path(point))
        done.append(f"unmounted {point}")
        rec = rec.with_(mounts=tuple(p for p in rec.mounts if p != point))
        mount_record.save(runtime, rec)
    for loop in reversed(rec.loops):
        if attach.detach(Path(loop), rec.image):
            done.append(f"detached {loop}")
        rec = rec.with_(loops=tuple(d for d in rec.loops if d != loop))
        mount_record.save(runtime, rec)
    if server.stop(rec.pid, rec.pid_start):
        done.append(f"stopped the FUSE server (pid {rec.pid})")
    if mount_at(Path(rec.fuse_dir)) is not None:  # the server died without unmounting
        _unmount(Path(rec.fuse_dir))
    rec = rec.with_(pid=None)
    mount_record.save(runtime, rec)
    for folder in reversed(rec.made_dirs):
        with contextlib.suppress(OSError):  # only when empty: never remove what is not ours
            os.rmdir(folder)
    if rec.disk_layers:
        done.append(_close_disk(config, rec.disk_layers, lock_held))
    mount_record.path_for(runtime, rec.dir).with_suffix(".log").unlink(missing_ok=True)
    mount_record.delete(runtime, rec.dir)
    return done


def _unmount(point: Path) -> None:
    try:
        attach.unmount(point)
    except CommandError as exc:
        users = holders(point)
        raise JobError(
            f"cannot unmount {point}: " + (f"busy: {'; '.join(users)}" if users else exc.message),
            hint="leave the folder and close the files there, then run `coldvault umount` again",
        ) from exc


def _close_disk(config: Config, layers: tuple[str, ...], lock_held: bool) -> str:
    """Close the disk layers ``mount`` opened (under the lock, like any disk session)."""
    fd = None
    if not lock_held:
        try:
            fd = open_locked(config.settings.lock_file, wait=CLOSE_LOCK_WAIT)
        except Busy as exc:
            # Someone (the daemon) took the disk meanwhile: leave the layers to `close`.
            disk_record.save(config.settings.runtime_dir, list(layers))
            log.warning("%s; the backup disk stays open: `coldvault close` closes it", exc.message)
            return "left the backup disk open (busy)"
    try:
        stack = DiskStack(config.disk)
        stack.adopt(layers)
        stack.close()
    finally:
        if fd is not None:
            os.close(fd)
    return f"closed the backup disk ({', '.join(layers)})"
