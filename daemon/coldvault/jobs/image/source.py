"""The image source: resolve it, refuse it when mounted read-write, run before/after hooks."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from coldvault import platform
from coldvault.config.model import Argv, ImageJob
from coldvault.errors import ColdvaultError, JobError
from coldvault.system import proc
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.image")


@dataclass(frozen=True)
class OpenSource:
    """An opened source."""

    path: Path
    fd: int
    size: int


def run_hooks(kind: str, commands: Sequence[Argv], job: str, cancel: CancelToken) -> None:
    """Run the job's ``before`` or ``after`` commands in order (a failure raises)."""
    for argv in commands:
        log.info("%s: running %s hook: %s", job, kind, " ".join(argv))
        env = {**os.environ, "COLDVAULT_JOB": job}
        proc.run(list(argv), cancel=cancel, env=env, capture_stdout=False, keep_locale=True)


@contextlib.contextmanager
def hooks(job: ImageJob, cancel: CancelToken) -> Iterator[None]:
    """``before`` on entry; ``after`` on exit, also when ``before`` or the job failed."""
    try:
        run_hooks("before", job.hooks.before, job.name, cancel)
        yield
    except BaseException:
        try:
            run_hooks("after", job.hooks.after, job.name, CancelToken())
        except ColdvaultError as exc:  # must not hide the job's own error
            log.error("%s: after hook failed: %s", job.name, exc)
        raise
    run_hooks("after", job.hooks.after, job.name, CancelToken())


@contextlib.contextmanager
def open_source(job: ImageJob) -> Iterator[OpenSource]:
    """Resolve and open the job's source read-only; refuse a read-write mounted device."""
    path = platform.resolve_source(job.source)
    if platform.is_block_device(path) and not job.allow_mounted:
        points = platform.mounted_read_write(path)
        if points:
            raise JobError(
                f"source {path} is mounted read-write at {', '.join(points)}: "
                "an image of a changing filesystem is not consistent",
                hint="unmount it, remount it read-only, back up an LVM snapshot via `before:`, "
                "or set `allow_mounted: true`",
            )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise JobError(f"cannot open source {path}: {exc.strerror}") from None
    try:
        platform.begin_streaming(fd)
        yield OpenSource(path, fd, platform.size_of(fd))
    finally:
        os.close(fd)
