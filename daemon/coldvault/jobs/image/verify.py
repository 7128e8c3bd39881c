"""Verify: re-hash stored parts against the manifest and name every corrupt or missing part."""

from __future__ import annotations

import os
from pathlib import Path

from coldvault.jobs.image.backup import Layout
from coldvault.jobs.image.legacy import hash_part_file
from coldvault.jobs.image.manifest import Manifest, PartRecord
from coldvault.jobs.image.parts import part_name
from coldvault.progress import ProgressMeter
from coldvault.system.cancel import CancelToken

# (device, inode) → problem text or "" : a part shared by hard links is read once.
Checked = dict[tuple[int, int], str]


def verify_folder(
    folder: Path,
    manifest: Manifest,
    *,
    checked: Checked,
    meter: ProgressMeter,
    cancel: CancelToken,
) -> tuple[int, list[str]]:
    """Check every part of one snapshot; return (parts checked, problems)."""
    layout = Layout(manifest.source_size, manifest.part_size, manifest.block_size)
    problems: list[str] = []
    if len(manifest.parts) < layout.count:
        problems.append(
            f"{folder}: the manifest lists {len(manifest.parts)} of {layout.count} parts"
        )
    for index in range(layout.count):
        cancel.check()
        record = manifest.parts[index] if index < len(manifest.parts) else None
        path = folder / part_name(index)
        if record is None:
            problems.append(f"{path}: not recorded in the manifest (interrupted write?)")
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            problems.append(f"{path}: missing")
            continue
        key = (st.st_dev, st.st_ino)
        if key not in checked:
            checked[key] = _check(path, st.st_size, record.size, record.zero, record.hash, manifest)
            meter.update(meter.done + st.st_size, detail=f"{folder.name}: part {index + 1}")
        if checked[key]:
            problems.append(f"{path}: {checked[key]}")
    return layout.count, problems


def _check(
    path: Path,
    stored: int,
    size: int,
    zero: bool,
    digest: str | None,
    manifest: Manifest,
    cancel: CancelToken | None = None,
) -> str:
    """ "" when the part matches, else what is wrong."""
    if stored == 0:
        return "" if zero else f"empty, expected {size} bytes of data"
    if stored != size:
        return f"has {stored} bytes, expected {size}"
    try:
        got, length, all_zero = hash_part_file(
            path, manifest.algorithm, manifest.block_size, cancel
        )
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if length != size:
        return f"read {length} bytes, expected {size}"
    if zero:
        return "" if all_zero else "corrupt: expected all zeros"
    if got != digest:
        return f"corrupt: {manifest.algorithm} hash differs from the manifest"
    return ""


def check_part_file(
    path: Path, stored: int, record: PartRecord, manifest: Manifest, cancel: CancelToken
) -> str:
    """One stored part (``stored`` bytes on disk) against its record: "" or what is wrong.

    For the budgeted verification (:mod:`coldvault.jobs.image.verify_steps`); a stop
    request ends the read within one block (Cancelled).
    """
    return _check(path, stored, record.size, record.zero, record.hash, manifest, cancel)
