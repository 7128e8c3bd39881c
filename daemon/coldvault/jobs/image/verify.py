"""Verify: re-hash stored parts against the manifest and name every corrupt or missing part."""

from __future__ import annotations

import os
import stat

from coldvault.jobs.image.backup import Layout
from coldvault.jobs.image.legacy import hash_part_file
from coldvault.jobs.image.manifest import Manifest, PartRecord
from coldvault.jobs.image.parts import part_name, scan
from coldvault.jobs.image.repair_flags import MISSING, reason_for
from coldvault.progress import ProgressMeter
from coldvault.system.beneath import SafeDir, UnexpectedEntry
from coldvault.system.cancel import CancelToken

# (device, inode) → problem text or "" : a part shared by hard links is read once.
Checked = dict[tuple[int, int], str]


def verify_folder(
    folder: SafeDir,
    manifest: Manifest,
    *,
    checked: Checked,
    meter: ProgressMeter,
    cancel: CancelToken,
    damaged: list[tuple[int, str]] | None = None,
) -> tuple[int, list[str]]:
    """Check every part of one snapshot; return (parts checked, problems).

    ``damaged`` receives (index, reason) of each part a run can repair (see
    :mod:`coldvault.jobs.image.repair_flags`).
    """
    found = damaged if damaged is not None else []
    layout = Layout(manifest.source_size, manifest.part_size, manifest.block_size)
    problems: list[str] = []
    if len(manifest.parts) < layout.count:
        problems.append(
            f"{folder.path}: the manifest lists {len(manifest.parts)} of {layout.count} parts"
        )
    indexes, odd = scan(folder)
    problems += [f"{folder.child(name)}: a {kind}, not a part file" for name, kind in odd]
    problems += [
        f"{folder.child(part_name(i))}: past the end of the source ({layout.count} parts)"
        for i in indexes
        if i >= layout.count
    ]
    for index in range(layout.count):
        cancel.check()
        record = manifest.parts[index] if index < len(manifest.parts) else None
        path = folder.child(part_name(index))
        if record is None:
            problems.append(f"{path}: not recorded in the manifest (interrupted write?)")
            continue
        st = folder.lstat(part_name(index))
        if st is None:
            problems.append(f"{path}: missing")
            found.append((index, MISSING))
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # reported above
        key = (st.st_dev, st.st_ino)
        if key not in checked:
            checked[key] = _check(
                folder,
                part_name(index),
                st.st_size,
                record.size,
                record.zero,
                record.hash,
                manifest,
                cancel,
            )
            meter.update(meter.done + st.st_size, detail=f"{folder.path.name}: part {index + 1}")
        if checked[key]:
            problems.append(f"{path}: {checked[key]}")
            reason = reason_for(checked[key])
            if reason:
                found.append((index, reason))
    return layout.count, problems


def _check(
    folder: SafeDir,
    name: str,
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
        fd = folder.open_file(name)
    except UnexpectedEntry as exc:  # swapped since it was listed
        return f"a {exc.found}, not a part file"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    try:
        got, length, all_zero = hash_part_file(fd, manifest.algorithm, manifest.block_size, cancel)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    finally:
        os.close(fd)
    if length != size:
        return f"read {length} bytes, expected {size}"
    if zero:
        return "" if all_zero else "corrupt: expected all zeros"
    if got != digest:
        return f"corrupt: {manifest.algorithm} hash differs from the manifest"
    return ""


def check_part_file(
    folder: SafeDir,
    index: int,
    stored: int,
    record: PartRecord,
    manifest: Manifest,
    cancel: CancelToken,
) -> str:
    """One stored part (``stored`` bytes on disk) against its record: "" or what is wrong.

    For a verification walked part by part; a stop request ends the read within one
    block (Cancelled).
    """
    return _check(
        folder, part_name(index), stored, record.size, record.zero, record.hash, manifest, cancel
    )
