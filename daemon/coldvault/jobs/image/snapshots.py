"""Snapshot folders: ``snapshot-inprogress`` → ``snapshot-YYYY-MM-DD-HHMMSS``, and retention.

With ``snapshots: N > 0`` each run works in ``snapshot-inprogress``, which
starts as hard links to the newest snapshot's parts. With ``snapshots: 0`` the
parts live directly in the job folder (which is never renamed).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from coldvault.config.model import ImageJob, Retention
from coldvault.jobs import retention
from coldvault.jobs.image.parts import part_indexes, part_name
from coldvault.system.files import fsync_dir

log = logging.getLogger("coldvault.image")

INPROGRESS = "snapshot-inprogress"
SNAPSHOT_RE = re.compile(r"^snapshot-(\d{4}-\d{2}-\d{2}-\d{6})$")
TIME_FORMAT = "%Y-%m-%d-%H%M%S"


def snapshot_time(name: str) -> datetime | None:
    """The time in a snapshot folder's name, or None if it is not one."""
    m = SNAPSHOT_RE.match(name)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1), TIME_FORMAT)
    except ValueError:
        return None


def completed(job_dir: Path) -> list[str]:
    """Names of the completed snapshots in ``job_dir``, oldest first."""
    if not job_dir.is_dir():
        return []
    dated = [(t, n) for n in os.listdir(job_dir) if (t := snapshot_time(n)) is not None]
    return [n for _, n in sorted(dated)]


def newest(job_dir: Path) -> Path | None:
    """The newest completed snapshot folder, or None."""
    names = completed(job_dir)
    return job_dir / names[-1] if names else None


def link_missing_parts(base: Path, work: Path) -> int:
    """Hard-link into ``work`` each part of ``base`` it lacks; return how many.

    Idempotent, so an interrupted start is completed by the next run.
    """
    count = 0
    for index in part_indexes(base):
        name = part_name(index)
        if not (work / name).exists():
            os.link(base / name, work / name)
            count += 1
    return count


def start(job_dir: Path) -> tuple[Path, Path | None, bool]:
    """Prepare ``snapshot-inprogress``; return (work folder, base snapshot, resumed)."""
    work = job_dir / INPROGRESS
    resumed = work.is_dir()
    if not resumed:
        work.mkdir()
        fsync_dir(job_dir)
    base = newest(job_dir)
    if base is not None:
        linked = link_missing_parts(base, work)
        log.debug("linked %d parts of %s into %s", linked, base.name, work)
    return work, base, resumed


def finish(job_dir: Path, work: Path, now: datetime) -> Path:
    """Rename ``work`` to a new snapshot name (one second later if that name is taken)."""
    when = now.replace(microsecond=0)
    while True:
        final = job_dir / f"snapshot-{when.strftime(TIME_FORMAT)}"
        if not final.exists():
            break
        when += timedelta(seconds=1)
    os.rename(work, final)
    fsync_dir(job_dir)
    return final


def rule_for(job: ImageJob) -> Retention:
    """``Retention(keep_last=job.snapshots)`` plus the job's calendar buckets."""
    if job.retention is None:
        return Retention(keep_last=job.snapshots)
    return replace(job.retention, keep_last=job.snapshots)


def prune(job_dir: Path, job: ImageJob) -> list[str]:
    """Delete snapshots beyond what the job keeps; return their names."""
    names = completed(job_dir)
    dated = [(n, t) for n in names if (t := snapshot_time(n)) is not None]
    plan = retention.plan(dated, rule_for(job))
    for name in plan.delete:
        # Removing names of hard links never changes the data other snapshots see.
        shutil.rmtree(job_dir / name)
        log.info("%s: removed old snapshot %s", job.name, name)
    if plan.delete:
        fsync_dir(job_dir)
    return list(plan.delete)
