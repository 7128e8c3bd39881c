"""``coldvault list`` for image jobs: snapshots, parts, changed parts and space used."""

from __future__ import annotations

import os
from pathlib import Path

from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.parts import part_indexes, part_name
from coldvault.jobs.image.snapshots import INPROGRESS, completed
from coldvault.progress import human_bytes


def folders(job_dir: Path, snapshots: int) -> list[Path]:
    """The job's backup folders, oldest first (the job folder itself with ``snapshots: 0``)."""
    if snapshots == 0:
        return [job_dir] if job_dir.is_dir() else []
    return [job_dir / n for n in completed(job_dir)]


def table(job_dir: Path, snapshots: int) -> str:
    """One line per snapshot: name, parts, changed, source size, new space on disk."""
    rows = [("SNAPSHOT", "PARTS", "CHANGED", "SOURCE SIZE", "NEW ON DISK", "TOTAL ON DISK")]
    seen: set[tuple[int, int]] = set()
    shown = folders(job_dir, snapshots)
    if (job_dir / INPROGRESS).is_dir() and snapshots:
        shown.append(job_dir / INPROGRESS)
    for folder in shown:
        indexes = part_indexes(folder)
        new = total = 0
        for index in indexes:
            st = os.stat(folder / part_name(index))
            total += st.st_size
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                new += st.st_size
        m = manifest_mod.load(folder)
        if m is None:
            changed, size = "?", "?"
        else:
            changed = str(m.changed) + (" (adopted)" if m.adopted else "")
            size = human_bytes(m.source_size)
        name = folder.name if folder != job_dir else "(parts in job folder)"
        if folder.name == INPROGRESS:
            name += " (unfinished: the next run resumes it)"
        rows.append((name, str(len(indexes)), changed, size, human_bytes(new), human_bytes(total)))
    if len(rows) == 1:
        return f"no backups yet in {job_dir}"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
