"""Snapshot folders: ``snapshot-inprogress`` → ``snapshot-YYYY-MM-DD-HHMMSS``, and retention.

With ``snapshots: N > 0`` each run works in ``snapshot-inprogress``, which
starts as hard links to the newest snapshot's parts. With ``snapshots: 0`` the
parts live directly in the job folder (which is never renamed).

Only real folders count: a symlink, file or FIFO named like a snapshot was not made
by coldvault; it is reported, never resumed into, counted, followed or deleted.
Retention first renames a snapshot to a hidden ``.deleting-…`` name (one atomic
step), then deletes it, so a killed run never leaves a half-deleted snapshot that
``list`` or ``verify`` would show; the next run finishes such deletions.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import replace
from datetime import datetime, timedelta

from coldvault.config.model import ImageJob, Retention
from coldvault.errors import JobError
from coldvault.jobs import retention
from coldvault.jobs.image.manifest import MANIFEST_NAME, ManifestDamaged
from coldvault.jobs.image.manifest import load as load_manifest
from coldvault.jobs.image.parts import PART_RE, scan
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir, UnexpectedEntry

log = logging.getLogger("coldvault.image")

INPROGRESS = "snapshot-inprogress"
DELETING = ".deleting-"
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


def completed(job: SafeDir) -> list[str]:
    """Names of the completed snapshot folders in ``job``, oldest first (folders only)."""
    dated = [
        (t, n)
        for n, kind in job.entries()
        if kind == "folder" and (t := snapshot_time(n)) is not None
    ]
    return [n for _, n in sorted(dated)]


def strays(job: SafeDir) -> list[str]:
    """One line per name that looks like coldvault's but is not a folder (left alone)."""
    lines = []
    for name, kind in job.entries():
        ours = snapshot_time(name) is not None or name == INPROGRESS or name.startswith(DELETING)
        if ours and kind != "folder":
            lines.append(
                f"{job.child(name)} is a {kind}, not a snapshot folder: not counted, "
                "not deleted, left alone"
            )
    return lines


def report_strays(job: SafeDir, job_name: str) -> list[str]:
    """Log each stray once (see :func:`strays`); return the lines."""
    lines = strays(job)
    for line in lines:
        log.warning("%s: %s", job_name, line)
    return lines


ABANDONED = (
    "abandoned: a manifest but no parts (the original script's pruning removed them); "
    "nothing to check, not damage; retention deletes it"
)


def abandoned(folder: SafeDir) -> bool:
    """Whether ``folder`` holds a manifest but no part at all.

    The original script's pruning removed the parts of old snapshots and left the
    folder with whatever else was in it (our manifest): nothing there can be restored,
    verified or used as a base, and it is not damage.
    """
    if folder.lstat(MANIFEST_NAME) is None:
        return False
    if any(PART_RE.match(name) for name in folder.names()):
        return False
    try:
        manifest = load_manifest(folder)
    except ManifestDamaged:
        return True  # no parts and nothing trustworthy: nothing to restore either
    return manifest is None or manifest.count > 0  # an empty source needs no parts


def is_abandoned(job: SafeDir, name: str) -> bool:
    """:func:`abandoned` for the snapshot folder ``name`` of ``job``."""
    with job.sub(name) as folder:
        return abandoned(folder)


def usable(job: SafeDir) -> list[str]:
    """The completed snapshot folders that are not abandoned, oldest first."""
    return [n for n in completed(job) if not is_abandoned(job, n)]


def newest(job: SafeDir) -> str | None:
    """The name of the newest completed snapshot folder that is not abandoned, or None."""
    for name in reversed(completed(job)):
        if not is_abandoned(job, name):
            return name
    return None


def chosen(top: SafeDir, job: ImageJob, snapshot: str | None) -> str:
    """The folder ``restore``/``verify`` mean: ``"."`` (``snapshots: 0``), newest, or named.

    A name must be a real snapshot folder (never a symlink, file or FIFO).
    """
    if job.snapshots == 0 and snapshot in (None, "latest"):
        return "."
    if snapshot in (None, "latest"):
        name = newest(top)
        if name is None:
            raise JobError(
                f"no completed snapshot in {top.path}",
                hint="run a backup first (`coldvault run JOB`)",
            )
        return name
    name = str(snapshot)
    kind = top.kind(name) if snapshot_time(name) is not None else None
    if kind != "folder":
        raise JobError(
            f"no snapshot {name} in {top.path}"
            + (f" (a {kind} there is not a snapshot folder)" if kind else ""),
            hint="see `coldvault list JOB`",
        )
    return name


def link_missing_parts(base: SafeDir, work: SafeDir) -> int:
    """Hard-link into ``work`` each regular part of ``base`` it lacks; return how many.

    Idempotent, so an interrupted start is completed by the next run. A part name in
    ``base`` that is not a regular file is not linked (the run writes that part anew).
    """
    count = 0
    indexes, odd = scan(base)
    for name, kind in odd:
        log.warning("%s is a %s, not a part: not used", base.child(name), kind)
    for index in indexes:
        name = f"part_{index:08d}"
        if work.lstat(name) is None:
            work.link(name, name, src_dir=base)
            count += 1
            crashpoint.reached("image.link")
    return count


def open_work(job: SafeDir) -> tuple[SafeDir, bool]:
    """``snapshot-inprogress`` held open (made if absent); (folder, resumed).

    Anything but a folder there (a symlink to a host folder, a file, a FIFO) ends the
    run with :class:`UnexpectedEntry` naming it: nothing is written into or through it.
    """
    kind = job.kind(INPROGRESS)
    if kind is None:
        job.mkdir(INPROGRESS)
        job.fsync()
    elif kind != "folder":
        raise UnexpectedEntry(job.child(INPROGRESS), kind, "folder (an interrupted backup)")
    return job.sub(INPROGRESS), kind == "folder"


def finish(job: SafeDir, now: datetime) -> str:
    """Rename ``snapshot-inprogress`` to a new snapshot name (a second later if taken)."""
    when = now.replace(microsecond=0)
    while True:
        final = f"snapshot-{when.strftime(TIME_FORMAT)}"
        try:
            job.rename_noreplace(INPROGRESS, final)
            break
        except FileExistsError:
            when += timedelta(seconds=1)
    crashpoint.reached("image.snapshot-renamed")
    job.fsync()
    return final


def rule_for(job: ImageJob) -> Retention:
    """``Retention(keep_last=job.snapshots)`` plus the job's calendar buckets."""
    if job.retention is None:
        return Retention(keep_last=job.snapshots)
    return replace(job.retention, keep_last=job.snapshots)


def prune(job_dir: SafeDir, job: ImageJob) -> list[str]:
    """Delete snapshots beyond what the job keeps, and abandoned folders; return their names.

    An abandoned folder (see :func:`abandoned`) holds nothing to restore: it is not
    counted among the snapshots kept and is deleted.
    """
    names = completed(job_dir)
    gone = [n for n in names if is_abandoned(job_dir, n)]
    dated = [(n, t) for n in names if n not in gone and (t := snapshot_time(n)) is not None]
    plan = retention.plan(dated, rule_for(job))
    for name in [*gone, *plan.delete]:
        try:
            hidden = hide(job_dir, name)
        except FileExistsError:
            log.warning("%s: cannot remove %s: %s exists", job.name, name, DELETING + name)
            continue
        crashpoint.reached("image.prune-hidden")
        delete_hidden(job_dir, hidden)
        what = "abandoned folder (a manifest, no parts)" if name in gone else "old snapshot"
        log.info("%s: removed %s %s", job.name, what, name)
    return [*gone, *plan.delete]


def hide(job: SafeDir, name: str) -> str:
    """Rename snapshot ``name`` to ``.deleting-name`` (durable); return the hidden name."""
    hidden = DELETING + name
    job.rename_noreplace(name, hidden)
    job.fsync()
    return hidden


def delete_hidden(job: SafeDir, hidden: str) -> None:
    """Delete a hidden snapshot folder. Removing names of hard links never changes the
    data other snapshots see."""
    with job.sub(hidden) as folder:
        for name, kind in folder.entries():
            if kind != "folder":
                folder.unlink(name)
                crashpoint.reached("image.prune-unlinked")
    job.rmtree(hidden)  # what is left: sub-folders nobody should have put there
    job.fsync()


def finish_deletions(job: SafeDir, job_name: str) -> list[str]:
    """Delete what an interrupted retention left hidden; return the names deleted."""
    done = []
    for name, kind in job.entries():
        if not name.startswith(DELETING) or kind != "folder":
            continue
        with contextlib.suppress(FileNotFoundError):
            delete_hidden(job, name)
        log.info("%s: finished deleting %s (an interrupted retention)", job_name, name)
        done.append(name)
    return done
