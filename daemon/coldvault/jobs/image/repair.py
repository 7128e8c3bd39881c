"""Repair what verification flagged: a run rewrites flagged parts and heals older snapshots.

The run writes every flagged part as a new file (see :func:`forced`), whatever the
manifest says: bit rot keeps a part's inode, size and mtime, so the record alone
would trust it. Afterwards each older snapshot whose part is flagged, or shares a
flagged part's damaged inode, gets the new good copy when the source bytes are the
ones that snapshot's manifest expects: a hard link to the new part under a
temporary name, renamed over the damaged name (the damaged inode is never written),
then that snapshot's manifest record (inode, mtime) is saved atomically so it stays
trusted. What cannot be repaired (the source no longer holds those bytes) stays
flagged as unrecoverable and is logged.
"""

from __future__ import annotations

import contextlib
import logging
import stat
from dataclasses import dataclass, replace

from coldvault.errors import ColdvaultError
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image import snapshots
from coldvault.jobs.image.manifest import Manifest, PartRecord
from coldvault.jobs.image.parts import TMP_PREFIX, TMP_SUFFIX, part_name
from coldvault.jobs.image.repair_flags import Flag
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.image")


@dataclass(frozen=True)
class RepairOutcome:
    """What the repair after a run did."""

    flagged: int  # flags at the start of the run
    rewritten: int  # flagged part indexes written anew into this run's folder
    links: int  # damaged links in older snapshots replaced by the good copy
    snapshots: int  # older snapshots that got at least one
    unrecoverable: tuple[str, ...]  # "folder/part_N" still damaged
    remaining: tuple[Flag, ...]  # flags to keep

    def summary(self) -> str:
        """One line for the log and the run's summary."""
        text = (
            f"repair: {self.flagged} flagged, {self.rewritten} parts rewritten, "
            f"{self.links} damaged links replaced in {self.snapshots} older snapshot(s)"
        )
        if self.unrecoverable:
            text += f", {len(self.unrecoverable)} unrecoverable"
        return text


def forced(flags: list[Flag]) -> set[int]:
    """Part indexes the run must write anew (not those already known unrecoverable)."""
    return {f.part for f in flags if not f.unrecoverable}


def repair_older(
    top: SafeDir, work: SafeDir, work_key: str, new: Manifest, flags: list[Flag]
) -> RepairOutcome:
    """Heal older snapshots from the parts this run just stored in ``work``."""
    names = [n for n in snapshots.usable(top) if n != work_key] if work_key != "." else []
    existing = set(names) | {work_key}
    live = [f for f in flags if f.snapshot in existing]
    indexes = sorted({f.part for f in live})
    damaged = _damaged_inodes(top, live)
    links = healed_snapshots = 0
    fixed: set[tuple[str, int]] = {
        (work_key, i) for i in forced(live) if i < len(new.parts) and new.parts[i] is not None
    }
    failed: dict[tuple[str, int], str] = {}
    flagged = {f.key for f in live}
    for name in names:
        with top.sub(name) as folder:
            done, bad = _heal(folder, name, work, new, indexes, flagged, damaged)
        links += len(done)
        healed_snapshots += bool(done)
        fixed |= {(name, i) for i in done}
        failed.update(bad)
    remaining = tuple(replace(f, unrecoverable=True) for f in live if f.key not in fixed)
    lost = tuple(
        f"{top.child(f.snapshot)}/{part_name(f.part)}"
        + (f" ({failed.get(f.key, 'the source no longer holds those bytes')})")
        for f in remaining
    )
    rewritten = len({i for i in forced(live) if i < len(new.parts)})
    return RepairOutcome(len(flags), rewritten, links, healed_snapshots, lost, remaining)


def _damaged_inodes(top: SafeDir, flags: list[Flag]) -> dict[int, set[tuple[int, int]]]:
    """Per part index, the (device, inode) of every flagged part file still there."""
    found: dict[int, set[tuple[int, int]]] = {}
    for flag in flags:
        with contextlib.suppress(OSError, ColdvaultError), top.sub(flag.snapshot) as folder:
            st = folder.lstat(part_name(flag.part))
            if st is not None and stat.S_ISREG(st.st_mode):
                found.setdefault(flag.part, set()).add((st.st_dev, st.st_ino))
    return found


def _heal(
    folder: SafeDir,
    name: str,
    work: SafeDir,
    new: Manifest,
    indexes: list[int],
    flagged: set[tuple[str, int]],
    damaged: dict[int, set[tuple[int, int]]],
) -> tuple[list[int], dict[tuple[str, int], str]]:
    """(indexes healed, {(name, index): why not}) for one older snapshot folder."""
    targets = []
    for index in indexes:
        st = folder.lstat(part_name(index))
        shares = st is not None and (st.st_dev, st.st_ino) in damaged.get(index, set())
        if (name, index) in flagged or shares:
            targets.append(index)
    if not targets:
        return [], {}
    try:
        old = manifest_mod.load(folder)
    except manifest_mod.ManifestDamaged as exc:
        old, why = None, f"its manifest is damaged: {exc.why}"
    else:
        why = "no manifest to check the source bytes against"
    if old is None:
        return [], {(name, i): why for i in targets}
    parts = list(old.parts)
    healed, failed = [], {}
    for index in targets:
        problem = _good_copy(work, new, old, index, damaged)
        if problem:
            failed[(name, index)] = problem
            continue
        parts[index] = _relink(folder, work, index, parts[index])
        healed.append(index)
    if healed:
        manifest_mod.save(folder, old.with_parts(parts))
    return healed, failed


def _good_copy(
    work: SafeDir,
    new: Manifest,
    old: Manifest,
    index: int,
    damaged: dict[int, set[tuple[int, int]]],
) -> str:
    """ "" when this run's part ``index`` holds the bytes ``old`` expects there, else why not."""
    want = old.parts[index] if index < len(old.parts) else None
    have = new.parts[index] if index < len(new.parts) else None
    if want is None:
        return "not recorded in that snapshot's manifest"
    if have is None or old.algorithm != new.algorithm or not have.same_data(want):
        return "the source no longer holds those bytes"
    st = work.lstat(part_name(index))
    if st is None or (st.st_ino, st.st_size, st.st_mtime_ns) != (
        have.ino,
        have.stored,
        have.mtime_ns,
    ):
        return "this run's copy changed since it was written"
    if (st.st_dev, st.st_ino) in damaged.get(index, set()):
        return "this run's copy is the damaged file itself"
    return ""


def _relink(folder: SafeDir, work: SafeDir, index: int, record: PartRecord | None) -> PartRecord:
    """Put a hard link to ``work``'s part over ``folder``'s; return the updated record."""
    name = part_name(index)
    tmp = f"{TMP_PREFIX}{name[5:]}.repair{TMP_SUFFIX}"
    with contextlib.suppress(FileNotFoundError):
        folder.unlink(tmp)
    folder.link(name, tmp, src_dir=work)
    crashpoint.reached("image.repair-linked")
    folder.rename(tmp, name)  # replaces the damaged name; its inode is never written
    folder.fsync()
    crashpoint.reached("image.repair-renamed")
    st = folder.lstat(name)
    assert st is not None and record is not None
    return replace(record, stored=st.st_size, ino=st.st_ino, mtime_ns=st.st_mtime_ns)
