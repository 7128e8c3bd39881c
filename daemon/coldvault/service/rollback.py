"""A disk that went back in time is noticed, and its retention paused until the user accepts it.

The host remembers, per disk and job, the newest backup it wrote there
(:mod:`coldvault.jobs.marks`: a snapshot name with its manifest hash or
``received_uuid``). When the disk is opened again and that backup is missing or
different, the disk was restored from an old clone, swapped with a copy or
rolled back: a ``disk_rolled_back`` event is logged, ``status`` shows it, and the
backups still run (new data is worth writing) but retention deletes nothing on
that disk until ``coldvault disk accept NAME``. Accepting forgets what the host
remembered of the disk; the next backup there is remembered afresh.

Also here: what a btrfs job must keep on its source for the *other* disks (the
newest snapshot each of them holds), read from the same memory.
"""

from __future__ import annotations

import logging

from coldvault.config.model import Config, Job
from coldvault.errors import ColdvaultError
from coldvault.events import Event, emit
from coldvault.jobs import marks
from coldvault.jobs.base import RunContext
from coldvault.service import state as st

log = logging.getLogger("coldvault.rollback")


def check(config: Config, state: st.StateFile) -> bool:
    """Compare the opened disk with what the host remembers; True: retention may run.

    New findings are logged once (DISK_ROLLED_BACK) and kept in the state file
    until accepted. A state file that cannot be written is logged; retention
    is then paused for this session anyway.
    """
    disk = config.disk_name
    try:
        known = state.disk_state()
    except ColdvaultError as exc:
        log.error("disk %s: cannot check it against what it held: %s", disk, exc)
        return False
    found = find(config, known)
    new = [line for line in found if line not in known.rolled_back]
    if new:
        emit(
            log,
            Event.DISK_ROLLED_BACK,
            f"backup disk {disk} went back in time: {'; '.join(new)}. Backups still run, "
            f"but retention deletes nothing on it until `coldvault disk accept {disk}`",
            level=logging.ERROR,
            disk=disk,
        )
        try:
            state.change_disk(rolled_back=(*known.rolled_back, *new))
        except ColdvaultError as exc:
            log.error("disk %s: finding not recorded: %s", disk, exc)
            return False
    return not (known.rolled_back or new)


def find(config: Config, known: st.DiskState) -> list[str]:
    """What the disk no longer holds as it was written: one line per job and snapshot."""
    lines = []
    for job in config.jobs_on(config.disk_name):
        for key, expected in sorted(known.marks.get(job.name, {}).items()):
            now = marks.fingerprint(job, config.job_dir(job), key)
            if now is None:
                lines.append(f"{job.name}: {key} is missing")
            elif now != expected:
                lines.append(f"{job.name}: {key} is not the copy written ({_short(now)})")
    return lines


def _short(fingerprint: str) -> str:
    return fingerprint[:12]


def remember(config: Config, job: Job, state: st.StateFile) -> None:
    """After a job's attempt: remember its newest backup on this disk (failures logged).

    Also after a failed or stopped attempt: it may have rewritten what it wrote
    before (``snapshots: 0``), and the host remembers what it last left there.
    Nothing readable (the disk went away mid-job): what was remembered stays.
    """
    try:
        newest = marks.newest(job, config.job_dir(job))
        if newest:
            state.set_marks(job.name, newest)
    except ColdvaultError as exc:
        log.error("%s: newest backup on disk %s not remembered: %s", job.name, state.disk, exc)


def context_for(config: Config, job: Job, state: st.StateFile, disk_retention: bool) -> RunContext:
    """The job's RunContext: paused retention, and what other disks need on the source."""
    try:
        disks = state.load_disks()
    except ColdvaultError:
        disks = {}
    held = {
        name: frozenset(disks[name].marks.get(job.name, {}))
        for name in config.disks_of(job)
        if name != config.disk_name and name in disks
    }
    return RunContext(disk_retention=disk_retention, disk=config.disk_name, held_elsewhere=held)


def disk_notes(config: Config, job: Job, disks: dict[str, st.DiskState]) -> list[str]:
    """For ``coldvault list``: the newest backup of ``job`` each of its disks holds.

    As the host remembers it (the disks that are away cannot be read); for btrfs
    jobs these snapshots are why source retention keeps more than it says.
    """
    from coldvault.config.model import BtrfsJob

    lines = []
    for name in config.disks_of(job):
        known = disks.get(name, st.DiskState())
        seen = f"last seen {known.last_seen:%Y-%m-%d %H:%M}" if known.last_seen else "never seen"
        held = sorted(known.marks.get(job.name, {}))
        if not held:
            lines.append(f"disk {name} ({seen}): no backup of {job.name} remembered")
        for key in held:
            why = ""
            if isinstance(job, BtrfsJob) and name != config.disk_name:
                why = "; kept on the source as that disk's next parent"
            lines.append(f"disk {name} ({seen}): newest {key}{why}")
        if known.rolled_back:
            lines.append(f"disk {name}: went back in time, retention paused (disk accept {name})")
    return lines


def accept(state: st.StateFile) -> tuple[str, ...]:
    """The user accepts the disk as it is: forget the findings and the remembered backups."""
    known = state.disk_state()
    state.change_disk(rolled_back=(), marks={})
    emit(
        log,
        Event.DISK_ACCEPTED,
        f"backup disk {state.disk} accepted as it is"
        + (f" ({len(known.rolled_back)} finding(s) cleared)" if known.rolled_back else ""),
        disk=state.disk,
    )
    return known.rolled_back
