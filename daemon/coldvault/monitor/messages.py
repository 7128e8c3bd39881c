"""The text of notifications: one readable paragraph naming the host, the job, the disk and
what happened. Built from plain values so every sender (Apprise, a future one) shares it."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

from coldvault.offsite.record import CHECK
from coldvault.progress import human_bytes

FAILURE, SUCCESS, INFO = "failure", "success", "info"  # how a message is shown (Apprise type)


@dataclass(frozen=True)
class Message:
    """One notification: ``event`` selects the targets (their ``on:`` lists)."""

    event: str
    title: str
    body: str
    kind: str = INFO


@dataclass(frozen=True)
class JobLine:
    """What one job of a session did, for ``disk_done``."""

    job: str
    result: str
    bytes_written: int
    duration: float
    error: str | None = None


def host_name() -> str:
    """This machine's short host name."""
    return socket.gethostname().split(".")[0] or "localhost"


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def job_failed(disk: str, job: str, error: str, hint: str | None, took: float) -> Message:
    """A backup failed."""
    body = (
        f"On {host_name()}, the backup job {job} on disk {disk} failed after "
        f"{duration_text(took)}: {error}."
    )
    if hint:
        body += f" What to do: {hint}."
    return Message("failure", f"coldvault on {host_name()}: {job} failed", body, FAILURE)


def job_succeeded(disk: str, job: str, written: int, took: float) -> Message:
    """A backup succeeded."""
    body = (
        f"On {host_name()}, the backup job {job} on disk {disk} finished in "
        f"{duration_text(took)}, writing {human_bytes(written)}."
    )
    return Message("success", f"coldvault on {host_name()}: {job} done", body, SUCCESS)


def disk_done(disk: str, jobs: Sequence[JobLine], notes: Sequence[str], took: float) -> Message:
    """The session closed the disk: it may be unplugged."""
    parts = []
    for j in jobs:
        if j.result == "success":
            parts.append(
                f"{j.job} succeeded ({human_bytes(j.bytes_written)} in {duration_text(j.duration)})"
            )
        elif j.result == "failed":
            parts.append(f"{j.job} FAILED ({j.error})")
        else:
            parts.append(f"{j.job} was stopped")
    ran = "; ".join([*parts, *notes]) or "nothing was due"
    total = sum(j.bytes_written for j in jobs)
    failed = any(j.result != "success" for j in jobs)
    body = (
        f"On {host_name()}, coldvault finished with disk {disk} and closed it: the disk may "
        f"be unplugged. What ran: {ran}. In all {human_bytes(total)} written in "
        f"{duration_text(took)}."
    )
    title = f"coldvault on {host_name()}: disk {disk} may be unplugged"
    return Message("disk_done", title, body, FAILURE if failed else SUCCESS)


def disk_not_closed(disk: str, error: str) -> Message:
    """The jobs ran but the disk could not be closed completely."""
    body = (
        f"On {host_name()}, the backups on disk {disk} ended but the disk could not be closed: "
        f"{error}. Do not unplug it yet; `coldvault disk status` shows what is still open."
    )
    return Message("failure", f"coldvault on {host_name()}: disk {disk} not closed", body, FAILURE)


def overdue(disk: str, job: str, age: str | None) -> Message:
    """A job is overdue by more than its interval."""
    since = f"its last success was {age} ago" if age else "it never succeeded"
    body = (
        f"On {host_name()}, the backup job {job} (disk {disk}) is overdue: {since}. "
        "Plug in the backup disk, or check `coldvault status`."
    )
    return Message("overdue", f"coldvault on {host_name()}: {job} overdue", body, FAILURE)


def offsite_failed(target: str, job: str | None, error: str, hint: str | None) -> Message:
    """An offsite copy (or its target's ``restic check``) failed; unreachable is no failure."""
    if job == CHECK:
        what = f"the restic check of offsite target {target}"
    elif job:
        what = f"the offsite copy of job {job} to {target}"
    else:
        what = f"the offsite copies to {target}"
    body = f"On {host_name()}, {what} failed: {error.rstrip('.')}."
    if hint:
        body += f" What to do: {hint.rstrip('.')}."
    subject = f"{target}, {job}" if job and job != CHECK else target
    title = f"coldvault on {host_name()}: offsite copy failed ({subject})"
    return Message("offsite_failed", title, body, FAILURE)


def from_event(disk: str, event: str, job: str | None, text: str) -> Message:
    """A logged event worth a message (``verify_failed``, ``disk_rolled_back``, ...)."""
    what = event.replace("_", " ")
    if job and text.startswith(f"{job}: "):  # the log line names the job already
        text = text[len(job) + 2 :]
    subject = f"job {job}" if job else f"disk {disk}"
    body = f"On {host_name()}, {what} for {subject} (disk {disk}): {text}"
    title = f"coldvault on {host_name()}: {what}" + (f" ({job})" if job else "")
    return Message(event, title, body, FAILURE)
