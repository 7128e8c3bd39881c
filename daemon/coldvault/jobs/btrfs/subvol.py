"""Btrfs subvolumes as btrfs-progs reports them: ``subvolume show``/``list``, delete, du.

Every command goes through :mod:`coldvault.system.proc`. The parsers take the
text printed by btrfs-progs (6.2 on Debian 12) so they can be tested on
recorded output.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import struct
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from coldvault.errors import CommandError, JobError
from coldvault.system import proc
from coldvault.system.beneath import SafeDir
from coldvault.system.mounts import MountInfo, mounts

log = logging.getLogger("coldvault.jobs.btrfs")

# Inode number of a subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
SUBVOL_ROOT_INODE = 256


@dataclass(frozen=True)
class Subvolume:
    """What ``btrfs subvolume show`` says about one subvolume."""

    path: Path
    name: str
    uuid: str
    parent_uuid: str | None
    received_uuid: str | None
    subvol_id: int
    generation: int
    readonly: bool
    created: datetime | None
    fs_path: str = ""  # path from the filesystem's top level ("" for the top level itself)

    @property
    def complete(self) -> bool:
        """A received copy counts only when read-only with ``received_uuid`` set."""
        return self.readonly and self.received_uuid is not None


@dataclass(frozen=True)
class ListEntry:
    """One line of ``btrfs subvolume list [-u] [-R]`` (path relative to the fs top)."""

    subvol_id: int
    generation: int
    top_level: int
    path: str
    uuid: str | None = None
    received_uuid: str | None = None


def _uuid(value: str) -> str | None:
    return None if value in ("-", "") else value


def parse_show(text: str, path: Path) -> Subvolume:
    """Parse ``btrfs subvolume show PATH`` output."""
    fields: dict[str, str] = {}
    lines = text.splitlines()
    for line in lines[1:]:
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        created = None
        if _uuid(fields.get("Creation time", "-")):
            created = datetime.strptime(fields["Creation time"], "%Y-%m-%d %H:%M:%S %z")
        return Subvolume(
            path=path,
            name=fields["Name"],
            uuid=fields["UUID"],
            parent_uuid=_uuid(fields.get("Parent UUID", "-")),
            received_uuid=_uuid(fields.get("Received UUID", "-")),
            subvol_id=int(fields["Subvolume ID"]),
            generation=int(fields["Generation"]),
            readonly="readonly" in fields.get("Flags", "").split(),
            created=created,
            fs_path=lines[0].strip().strip("/") if lines else "",
        )
    except (KeyError, ValueError) as exc:
        raise JobError(f"cannot understand `btrfs subvolume show {path}` output ({exc})") from None


_LIST_KEYS = {"ID", "gen", "top_level", "received_uuid", "uuid", "parent_uuid", "cgen"}


def parse_list(text: str) -> list[ListEntry]:
    """Parse ``btrfs subvolume list`` output, with or without ``-u``/``-R``."""
    entries = []
    for line in text.splitlines():
        head, sep, path = line.partition(" path ")
        if not sep or not head.startswith("ID "):
            continue
        tokens = head.replace("top level", "top_level").split()
        values = dict(zip(tokens[::2], tokens[1::2], strict=False))
        if not _LIST_KEYS.issuperset(values):
            raise JobError(f"cannot understand `btrfs subvolume list` line: {line!r}")
        entries.append(
            ListEntry(
                subvol_id=int(values["ID"]),
                generation=int(values["gen"]),
                top_level=int(values["top_level"]),
                path=path,
                uuid=_uuid(values.get("uuid", "-")),
                received_uuid=_uuid(values.get("received_uuid", "-")),
            )
        )
    return entries


def parse_du(text: str) -> dict[str, tuple[int, int]]:
    """Parse ``btrfs filesystem du -s --raw``: path -> (total, exclusive) bytes."""
    sizes = {}
    for line in text.splitlines()[1:]:
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].isdigit():
            sizes[parts[3]] = (int(parts[0]), int(parts[1]))
    return sizes


def looks_like_subvolume(path: Path) -> bool:
    """Cheap test without running btrfs: a directory whose inode is a subvolume root."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_ino == SUBVOL_ROOT_INODE and path.is_dir() and not path.is_symlink()


# struct btrfs_ioctl_get_subvol_info_args (linux/btrfs.h, Linux 4.18+): what
# `btrfs subvolume show` prints, from one ioctl instead of one process per subvolume.
_INFO = struct.Struct("=Q256sQQQQ16s16s16sQQQQ" + "QI4x" * 4 + "64x")
_IOC_GET_SUBVOL_INFO = (2 << 30) | (_INFO.size << 16) | (0x94 << 8) | 60
_ROOT_SUBVOL_RDONLY = 1 << 0  # the root item flag (not the ioctl flag 1 << 1)


def _uuid_bytes(raw: bytes) -> str | None:
    return None if raw == bytes(16) else str(uuidlib.UUID(bytes=raw))


def info(path: Path) -> Subvolume:
    """The same facts as :func:`show` (but ``fs_path``), read with one ioctl (no process).

    The ioctl describes the subvolume *containing* a path, so anything that is not
    a subvolume's root directory goes to :func:`show`, which refuses it clearly.
    """
    if not looks_like_subvolume(path):
        return show(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return _from_ioctl(path, fd)
        finally:
            os.close(fd)
    except OSError:
        return show(path)  # not Btrfs, or an old kernel: let btrfs-progs explain


def _from_ioctl(path: Path, fd: int) -> Subvolume:
    buf = bytearray(_INFO.size)
    fcntl.ioctl(fd, _IOC_GET_SUBVOL_INFO, buf)
    f = _INFO.unpack(bytes(buf))
    treeid, name, generation, flags = f[0], f[1], f[4], f[5]
    return Subvolume(
        path=path,
        name=name.rstrip(b"\0").decode("utf-8", "replace") or "<FS_TREE>",
        uuid=_uuid_bytes(f[6]) or "",
        parent_uuid=_uuid_bytes(f[7]),
        received_uuid=_uuid_bytes(f[8]),
        subvol_id=treeid,
        generation=generation,
        readonly=bool(flags & _ROOT_SUBVOL_RDONLY),
        created=datetime.fromtimestamp(f[15], UTC) if f[15] else None,
    )


def info_at(folder: SafeDir, name: str) -> Subvolume | None:
    """The subvolume ``name`` in ``folder`` (never through a symlink); None if it is none.

    Opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to the held folder: a symlink,
    file or plain folder there is not a subvolume, whatever it points at.
    """
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder.fd
        )
    except (NotADirectoryError, FileNotFoundError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    try:
        if os.fstat(fd).st_ino != SUBVOL_ROOT_INODE:
            return None
        try:
            return _from_ioctl(folder.child(name), fd)
        except OSError:
            # Not Btrfs or an old kernel: btrfs-progs reads it through the held descriptor.
            return replace(show(Path(f"/proc/{os.getpid()}/fd/{fd}")), path=folder.child(name))
    finally:
        os.close(fd)


# struct btrfs_ioctl_vol_args: __s64 fd; char name[BTRFS_PATH_NAME_MAX + 1] (4088).
_VOL_ARGS = struct.Struct("=q4088s")
_IOC_SNAP_DESTROY = (1 << 30) | (_VOL_ARGS.size << 16) | (0x94 << 8) | 15
_IOC_START_SYNC = (2 << 30) | (8 << 16) | (0x94 << 8) | 24
_IOC_WAIT_SYNC = (1 << 30) | (8 << 16) | (0x94 << 8) | 22


def destroy(folder: SafeDir, name: str) -> None:
    """Delete the subvolume ``name`` in ``folder`` (what ``btrfs subvolume delete`` does).

    The kernel looks ``name`` up in the held folder itself and refuses anything that is
    not a subvolume root (a symlink there is never followed). btrfs-progs would first
    resolve the path with realpath(), following a symlink planted on the disk.
    """
    raw = name.encode()
    if not raw or b"/" in raw or len(raw) >= 4088 or name in (".", ".."):
        raise ValueError(f"not a subvolume name: {name!r}")
    try:
        # A mutable buffer: fcntl copies immutable arguments only up to 1024 bytes.
        fcntl.ioctl(folder.fd, _IOC_SNAP_DESTROY, bytearray(_VOL_ARGS.pack(0, raw)))
    except OSError as exc:
        raise JobError(
            f"cannot delete subvolume {folder.child(name)}: {exc.strerror}",
            hint="is it a subvolume made by coldvault? check with `btrfs subvolume show`",
        ) from None


def commit(folder: SafeDir) -> None:
    """Wait for a transaction commit of ``folder``'s filesystem (``--commit-after``)."""
    buf = bytearray(8)
    fcntl.ioctl(folder.fd, _IOC_START_SYNC, buf)
    fcntl.ioctl(folder.fd, _IOC_WAIT_SYNC, bytes(buf))


def show(path: Path) -> Subvolume:
    """``btrfs subvolume show``; JobError naming the path when it is not a subvolume."""
    try:
        text = proc.run_text(["btrfs", "subvolume", "show", path])
    except CommandError as exc:
        raise JobError(
            f"{path} is not a Btrfs subvolume ({' | '.join(exc.stderr_tail) or exc.message})",
            hint="a btrfs job backs up subvolumes: create one with `btrfs subvolume create`, "
            "or name the mount point of a Btrfs filesystem",
        ) from None
    return parse_show(text, path)


def list_below(path: Path) -> list[ListEntry]:
    """Subvolumes directly nested in the subvolume at ``path`` (``list -o``)."""
    return parse_list(proc.run_text(["btrfs", "subvolume", "list", "-o", path]))


def list_all(path: Path) -> list[ListEntry]:
    """Every subvolume of the filesystem holding ``path``, with uuids (``list -u -R``)."""
    return parse_list(proc.run_text(["btrfs", "subvolume", "list", "-u", "-R", path]))


def snapshot_readonly(source: Path, dest: Path) -> None:
    """``btrfs subvolume snapshot -r SOURCE DEST``."""
    try:
        proc.run(["btrfs", "subvolume", "snapshot", "-r", source, dest])
    except CommandError as exc:
        tail = " | ".join(exc.stderr_tail)
        hint = None
        if "cross-device" in tail.lower():
            hint = "the snapshot directory must be on the same Btrfs filesystem as the source"
        elif "no space" in tail.lower():
            hint = "free space on the source filesystem (old snapshots count too)"
        raise JobError(f"cannot snapshot {source} to {dest}: {tail}", hint=hint) from None


def du(paths: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """(total, exclusive) bytes of each path, via ``btrfs filesystem du -s --raw``."""
    paths = list(paths)
    if not paths:
        return {}
    try:
        text = proc.run_text(["btrfs", "filesystem", "du", "-s", "--raw", *paths])
    except CommandError as exc:
        log.warning("cannot measure snapshot sizes: %s", exc.message)
        return {}
    by_text = parse_du(text)
    return {p: by_text[str(p)] for p in paths if str(p) in by_text}


def containing_mount(path: Path) -> MountInfo:
    """The mount that holds ``path`` (the nearest existing ancestor if it does not exist)."""
    target = path.absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    target = target.resolve()
    best: MountInfo | None = None
    for m in mounts():
        holds = target == m.mount_point or m.mount_point in target.parents
        # Deeper mount points win; among equals, later lines are mounted on top.
        if holds and (best is None or len(m.mount_point.parts) >= len(best.mount_point.parts)):
            best = m
    if best is None:
        raise JobError(f"cannot find the mount that holds {path}")
    return best


def require_btrfs(path: Path, role: str) -> MountInfo:
    """The Btrfs mount holding ``path``; JobError in plain words when it is something else."""
    m = containing_mount(path)
    if m.fstype != "btrfs":
        hint = (
            "is the backup disk mounted? the job folder must be on its Btrfs filesystem"
            if role == "target"
            else "btrfs jobs back up Btrfs subvolumes; use an image job for other filesystems"
        )
        raise JobError(
            f"{role} {path} is not on a Btrfs filesystem: it is on {m.fstype} "
            f"({m.source} mounted at {m.mount_point})",
            hint=hint,
        )
    return m


def same_filesystem(a: MountInfo, b: MountInfo) -> bool:
    """Whether two mounts show the same filesystem (mountinfo's device number)."""
    return (a.major, a.minor) == (b.major, b.minor)


_NOSPACE = re.compile(r"no space left|ENOSPC", re.IGNORECASE)


def is_no_space(exc: CommandError) -> bool:
    """Whether a failed btrfs command ran out of space."""
    return any(_NOSPACE.search(line) for line in exc.stderr_tail)
