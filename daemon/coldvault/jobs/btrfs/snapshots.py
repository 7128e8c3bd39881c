"""Snapshot names, the ``latest``/``previous`` symlinks, and cleanup of partial receives.

Layout (both sides, one folder per source)::

    <snapshot dir>/<source-name>/<source-name>.20261123T055550Z   read-only snapshot
    <snapshot dir>/<source-name>/latest -> <source-name>.2026...   newest
    <snapshot dir>/<source-name>/previous -> ...                   the one before
    <job dir>/<source-name>/<source-name>.20261123T055550Z        received copy

Names carry the UTC time so they sort by time; a second snapshot within the
same second gets a ``_N`` suffix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.subvol import Subvolume

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


def new_name(folders: Sequence[Path], source: str, now: datetime) -> str:
    """A fresh name for ``source`` that sorts after every existing one in ``folders``."""
    stamp = now.astimezone(UTC).strftime(STAMP_FORMAT)
    base = f"{source}.{stamp}"
    taken = [
        parsed.seq
        for folder in folders
        if folder.is_dir()
        for entry in folder.iterdir()
        if (parsed := parse_name(entry.name))
        and parsed.source == source
        and parsed.when.strftime(STAMP_FORMAT) == stamp
    ]
    # Same second as an existing snapshot (pruned ones may have freed lower numbers).
    return base if not taken else f"{base}_{max(taken) + 1}"


def names_in(folder: Path, source: str) -> list[SnapshotName]:
    """Snapshot names of ``source`` in ``folder``, oldest first (only real subvolumes)."""
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        parsed = parse_name(entry.name)
        if parsed and parsed.source == source and subvol.looks_like_subvolume(entry):
            found.append(parsed)
    return sorted(found)


def scan(folder: Path, source: str) -> list[Subvolume]:
    """What Btrfs knows about every snapshot of ``source`` in ``folder``, oldest first."""
    return [subvol.info(folder / n.name) for n in names_in(folder, source)]


def update_links(folder: Path, newest_first: Sequence[str]) -> None:
    """Point ``latest`` and ``previous`` at the two newest names (remove when missing)."""
    for link, target in zip(LINKS, [*newest_first[:2], None, None], strict=False):
        _set_link(folder / link, target)


def _set_link(link: Path, target: str | None) -> None:
    if target is None:
        if link.is_symlink():
            link.unlink()
        return
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.exists() and not link.is_symlink():
        log.warning("not replacing %s: it is not a symlink", link)
        return
    tmp = link.with_name(f".{link.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)  # relative, so it stays right when the disk is mounted elsewhere
    tmp.replace(link)


def remove_partial(folder: Path, source: str) -> list[Subvolume]:
    """Delete subvolumes of ``source`` in ``folder`` that are not complete received copies.

    A receive that failed or was killed leaves a writable subvolume without
    ``received_uuid``; it is never a valid backup or parent. Returns the complete
    copies that remain, oldest first.
    """
    found = scan(folder, source)
    partial = [s for s in found if not s.complete]
    for s in partial:
        log.warning(
            "deleting %s: an earlier receive did not finish (%s)",
            s.path,
            "no received_uuid" if s.received_uuid is None else "not read-only",
        )
    subvol.delete([s.path for s in partial])  # committed: frees space before the send
    return [s for s in found if s.complete]
