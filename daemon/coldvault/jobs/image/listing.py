"""``coldvault list`` for image jobs: snapshots, parts, changed parts and space used."""

from __future__ import annotations

from pathlib import Path

from coldvault.config.model import ImageJob
from coldvault.errors import JobError
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.manifest import ManifestDamaged
from coldvault.jobs.image.parts import part_indexes, part_name
from coldvault.jobs.image.snapshots import INPROGRESS, abandoned, completed, strays
from coldvault.jobs.jobdir import open_job_folder
from coldvault.progress import human_bytes
from coldvault.system.beneath import SafeDir


def listing(job: ImageJob, job_dir: Path) -> str:
    """``coldvault list``: a table of the job's snapshots."""
    try:
        top = open_job_folder(job_dir, job.target, create=False)
    except JobError:
        return f"no backups yet in {job_dir}"
    with top:
        return table(top, job.snapshots)


def folders(job: SafeDir, snapshots: int) -> list[str]:
    """The job's backup folders, oldest first (``"."``, the job folder, with ``snapshots: 0``)."""
    if snapshots == 0:
        return ["."]
    return completed(job)


def table(job: SafeDir, snapshots: int) -> str:
    """One line per snapshot: name, parts, changed, source size, new space on disk."""
    rows = [("SNAPSHOT", "PARTS", "CHANGED", "SOURCE SIZE", "NEW ON DISK", "TOTAL ON DISK")]
    seen: set[tuple[int, int]] = set()
    shown = folders(job, snapshots)
    if snapshots and job.kind(INPROGRESS) == "folder":
        shown.append(INPROGRESS)
    for name in shown:
        with job.sub(name) as folder:
            rows.append(_row(folder, name, seen))
    notes = strays(job) if snapshots else []
    if len(rows) == 1:
        return "\n".join([f"no backups yet in {job.path}", *notes])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines + [f"note: {n}" for n in notes])


def _row(
    folder: SafeDir, name: str, seen: set[tuple[int, int]]
) -> tuple[str, str, str, str, str, str]:
    indexes = part_indexes(folder)
    new = total = 0
    for index in indexes:
        st = folder.lstat(part_name(index))
        if st is None:
            continue
        total += st.st_size
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            new += st.st_size
    try:
        m = manifest_mod.load(folder)
    except ManifestDamaged:
        m, changed, size = None, "manifest damaged", "?"
    else:
        changed, size = "?", "?"
    if m is not None:
        changed = str(m.changed) + (" (adopted)" if m.adopted else "")
        size = human_bytes(m.source_size)
    if name != "." and abandoned(folder):
        changed = "abandoned (a manifest, no parts)"
    shown = name if name != "." else "(parts in job folder)"
    if name == INPROGRESS:
        shown += " (unfinished: the next run resumes it)"
    return (shown, str(len(indexes)), changed, size, human_bytes(new), human_bytes(total))
