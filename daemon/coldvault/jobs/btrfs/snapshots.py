"""Snapshot names, the ``latest``/``previous`` symlinks, and cleanup of partial receives.

Layout (both sides, one folder per source)::

    <snapshot dir>/<source-name>/<source-name>.20261123T055550Z   read-only snapshot
    <snapshot dir>/<source-name>/latest -> <source-name>.2026...   newest
    <snapshot dir>/<source-name>/previous -> ...                   the one before
    <job dir>/<source-name>/<source-name>.20261123T055550Z        received copy

Names carry the UTC time so they sort by time; a second snapshot within the
same second gets a ``_N`` suffix. Every subvolume in a per-source folder counts as
a snapshot of that source (a renamed one too: parents are matched by uuid); names
only order them, and retention deletes only names of the pattern. Every folder
is held open (:class:`~coldvault.system.beneath.SafeDir`); a symlink, file or plain
folder named like a snapshot is reported and left alone.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.jobs.btrfs")

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
LINKS = ("latest", "previous")
_NAME = re.compile(r"^(?P<source>.+)\.(?P<stamp>\d{8}T\d{6}Z)(?:_(?P<seq>\d+))?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, order=True)
class SnapshotName:
    """A parsed snapshot name; ordering is by time, then sequence."""

    when: datetime
    seq: int
    source: str
    name: str


def source_name(source: Path) -> str:
    """Folder-safe name of a source: its last path component (``root`` for ``/``)."""
    base = source.name or "root"
    return _UNSAFE.sub("_", base).lstrip(".") or "root"


def parse_name(name: str) -> SnapshotName | None:
    """Parse ``<source>.<YYYYmmddTHHMMSSZ>[_N]``; None for anything else."""
    m = _NAME.match(name)
    if m is None:
        return None
    try:
        when = datetime.strptime(m["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return SnapshotName(when, int(m["seq"] or 0), m["source"], name)


def new_name(folders: Sequence[SafeDir], source: str, now: datetime) -> str:
    """A fresh name for ``source`` that sorts after every existing one in ``folders``."""
    stamp = now.astimezone(UTC).strftime(STAMP_FORMAT)
    base = f"{source}.{stamp}"
    taken = [
        parsed.seq
        for folder in folders
        for name in folder.names()
        if (parsed := parse_name(name))
        and parsed.source == source
        and parsed.when.strftime(STAMP_FORMAT) == stamp
    ]
    # Same second as an existing snapshot (pruned ones may have freed lower numbers).
    return base if not taken else f"{base}_{max(taken) + 1}"


_EPOCH = datetime.fromtimestamp(0, UTC)


def order_key(snap: Subvolume) -> tuple[datetime, int, str]:
    """Sort key, oldest first: the time in a pattern name, else the creation time."""
    name = snap.path.name
    parsed = parse_name(name)
    if parsed is not None:
        return (parsed.when, parsed.seq, name)
    return (snap.created or _EPOCH, 0, name)


@dataclass(frozen=True)
class Scan:
    """The subvolumes in one per-source folder (oldest first) and what was left alone."""

    snapshots: tuple[Subvolume, ...]
    unexpected: tuple[str, ...]  # messages naming each entry that looks wrong

    def named(self, source: str) -> list[Subvolume]:
        """Snapshots whose names follow ``<source>.<time>`` (retention sees only these)."""
        return [s for s in self.snapshots if _is_named(s.path.name, source)]

    def complete(self) -> list[Subvolume]:
        """Read-only snapshots with ``received_uuid`` (finished received copies)."""
        return [s for s in self.snapshots if s.complete]


def _is_named(name: str, source: str) -> bool:
    parsed = parse_name(name)
    return parsed is not None and parsed.source == source


def scan(folder: SafeDir, source: str) -> Scan:
    """Every subvolume in ``folder``, oldest first; symlinks and others named like a
    snapshot of ``source`` are reported in ``unexpected`` and never followed."""
    found: list[Subvolume] = []
    unexpected: list[str] = []
    for name, kind in folder.entries():
        if name.startswith(".") or name in LINKS:
            continue  # coldvault's own files and links
        snap = subvol.info_at(folder, name) if kind == "folder" else None
        if snap is not None:
            found.append(snap)
        elif _is_named(name, source):
            what = "folder that is not a subvolume" if kind == "folder" else kind
            unexpected.append(
                f"{folder.child(name)} is a {what}, not a snapshot: left alone "
                "(not a parent, never deleted)"
            )
    return Scan(tuple(sorted(found, key=order_key)), tuple(unexpected))


def report(found: Scan) -> None:
    """Log each unexpected entry once."""
    for message in found.unexpected:
        log.warning("%s", message)


def update_links(folder: SafeDir, newest_first: Sequence[str]) -> None:
    """Point ``latest`` and ``previous`` at the two newest names (remove when missing).

    Each link is replaced atomically (a new link under a hidden name, then a rename);
    anything but a symlink at ``latest``/``previous`` is reported and left alone.
    """
    for link, target in zip(LINKS, [*newest_first[:2], None, None], strict=False):
        _set_link(folder, link, target)


def _set_link(folder: SafeDir, link: str, target: str | None) -> None:
    kind = folder.kind(link)
    if kind not in (None, "symlink"):
        log.warning("not replacing %s: it is a %s, not a symlink", folder.child(link), kind)
        return
    if target is None:
        if kind == "symlink":
            folder.unlink(link)
        return
    if kind == "symlink" and folder.readlink(link) == target:
        return
    tmp = f".{link}.new"
    # Relative, so it stays right when the disk is mounted elsewhere; never followed.
    folder.symlink_replace(tmp, target)
    crashpoint.reached("btrfs.link-swap")
    folder.rename(tmp, link)


def remove_partial(folder: SafeDir, source: str) -> Scan:
    """Delete received copies of ``source`` in ``folder`` that did not finish.

    A receive that failed or was killed leaves a writable subvolume without
    ``received_uuid`` under a pattern name; it is never a valid backup or parent.
    Subvolumes under other names are the user's and are left alone. Returns the
    scan of what remains.
    """
    found = scan(folder, source)
    partial = [s for s in found.named(source) if not s.complete]
    for s in partial:
        log.warning(
            "deleting %s: an earlier receive did not finish (%s)",
            s.path,
            "no received_uuid" if s.received_uuid is None else "not read-only",
        )
        subvol.destroy(folder, s.path.name)
        crashpoint.reached("btrfs.partial-deleted")
    if not partial:
        return found
    subvol.commit(folder)  # frees space before the send
    return scan(folder, source)


def leftover_links(folder: SafeDir) -> None:
    """Remove a hidden link a killed link swap left behind."""
    for link in LINKS:
        if folder.kind(f".{link}.new") == "symlink":
            with contextlib.suppress(FileNotFoundError):
                folder.unlink(f".{link}.new")


def as_path(folder: SafeDir, snap: Subvolume) -> Path:
    """A path external commands may use for ``snap``: through the held folder."""
    return folder.proc_path(snap.path.name)
