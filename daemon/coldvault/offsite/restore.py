"""Restore a job from an offsite repository: images streamed to their device, btrfs into folders.

An image is read with ``restic dump`` as a tar stream and written part by part
straight to the device or file, each part checked against the manifest that came
with it (:mod:`coldvault.offsite.restore_stream`): nothing is staged on disk. A
btrfs job's snapshot is restored with ``restic restore`` into ``DEST/<source>``.
"""

from __future__ import annotations

from pathlib import Path

from coldvault.config.model import Config, ImageJob, Job, OffsiteTarget
from coldvault.errors import JobError, UsageError
from coldvault.offsite.restic import Restic, Snapshot, tags
from coldvault.offsite.restore_stream import restore_tar_stream
from coldvault.offsite.run import restic_for
from coldvault.progress import human_bytes
from coldvault.system.cancel import CancelToken


def chosen(restic: Restic, job: Job, wanted: str) -> list[Snapshot]:
    """``latest`` (the newest of each source) or the snapshot named by id or folder name."""
    found = restic.snapshots(*tags(job=job.name))
    if not found:
        raise JobError(
            f"offsite {restic.target.name} holds no copy of job {job.name}",
            hint=f"`coldvault offsite run {restic.target.name}` makes one",
        )
    if wanted == "latest":
        newest: dict[str | None, Snapshot] = {}
        for snap in found:  # oldest first: the last one of each source stays
            newest[snap.tag("source")] = snap
        return list(newest.values())
    match = [s for s in found if s.id.startswith(wanted) or s.tag("snapshot") == wanted]
    if len(match) != 1:
        what = "no" if not match else f"{len(match)}"
        raise UsageError(
            f"{what} offsite snapshot of job {job.name} matches {wanted!r}",
            hint=f"see `coldvault offsite list {restic.target.name} {job.name}`",
        )
    return match


def restore_from(
    config: Config, target: OffsiteTarget, job: Job, dest: Path, wanted: str, cancel: CancelToken
) -> str:
    """Restore ``job`` from ``target`` to ``dest``; returns the line to print."""
    restic = restic_for(config, target, cancel)
    snaps = chosen(restic, job, wanted)
    if isinstance(job, ImageJob):
        snap = snaps[-1]
        origin = f"offsite {target.name} snapshot {snap.short_id}"
        with restic.dump(snap.id) as stream:
            manifest = restore_tar_stream(stream, origin, dest, cancel)
        return (
            f"restored {job.name} from {origin} ({snap.tag('snapshot')}) to {dest}: "
            f"{manifest.count} parts, {human_bytes(manifest.source_size)}, every part checked"
        )
    lines = []
    for snap in snaps:
        folder = dest / (snap.tag("source") or snap.short_id)
        if folder.exists():
            raise JobError(
                f"{folder} exists: restore into a new folder", hint="choose another DEST"
            )
        restic.restore(snap.id, folder)
        lines.append(f"{snap.tag('snapshot')} (offsite snapshot {snap.short_id}) -> {folder}")
    return f"restored {job.name} from offsite {target.name}: " + "; ".join(lines)
