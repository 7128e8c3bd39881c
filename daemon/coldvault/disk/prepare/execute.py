"""Run a :class:`~coldvault.disk.prepare.plan.Plan` step by step.

Each command goes through the process gateway; a step that fails closes what
earlier steps opened (reverse order, best effort) and raises DiskError naming
the step. Python actions (key file, token, mount check) are methods here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from coldvault.config.model import TokenConfig
from coldvault.disk import mount, token
from coldvault.disk.prepare.plan import InitOptions, Plan, Step
from coldvault.errors import Cancelled, ColdvaultError, DiskError
from coldvault.system import proc
from coldvault.system.cancel import CancelToken
from coldvault.system.files import atomic_write

log = logging.getLogger("coldvault.disk.prepare")

KEY_FILE_BYTES = 1024
PARTITION_WAIT_SECONDS = 20.0


def write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600, fsynced, atomically.

    Without ``overwrite`` an existing file is never replaced (FileExistsError).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data, 0o600, overwrite=overwrite)


def settle_udev() -> None:
    """Let udev create /dev links for new devices, where udev runs."""
    if Path("/run/udev/control").exists() and proc.which("udevadm"):
        proc.run(["udevadm", "settle", "--timeout=20"], check=False)


def wait_for_block_device(path: Path, seconds: float = PARTITION_WAIT_SECONDS) -> None:
    """Return once ``path`` exists; DiskError after ``seconds``."""
    settle_udev()
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise DiskError(
                f"{path} did not appear after partitioning",
                hint="for a loop device, attach it with `losetup --partscan`",
            )
        time.sleep(0.1)


class Executor:
    """Runs a plan's steps; remembers what it opened so it can close it."""

    def __init__(
        self,
        plan: Plan,
        *,
        out: TextIO,
        secrets_: dict[str, bytes] | None = None,
        actions: dict[str, Callable[[], None]] | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        self.plan = plan
        self.out = out
        self.secrets = secrets_ or {}
        self.actions = actions or {}
        self.cancel = cancel
        self.opened: list[Step] = []

    def run(self) -> None:
        """Every step; on failure close what was opened. Closing at the end is the caller's."""
        total = len(self.plan.steps)
        for n, step in enumerate(self.plan.steps, 1):
            print(f"[{n}/{total}] {step.why}", file=self.out, flush=True)
            try:
                self._one(step)
            except (Cancelled, KeyboardInterrupt):
                self.close_opened()  # a stop request: close, then stop with the usual status
                raise
            except (ColdvaultError, OSError) as exc:
                self.close_opened()
                raise DiskError(
                    f"step {n} of {total} ({step.why}) failed: {exc}",
                    hint="the disk is only partly prepared; fix the cause and run the "
                    "same command again with --yes-destroy",
                ) from exc
            if step.undo:
                self.opened.append(step)

    def _one(self, step: Step) -> None:
        if step.action is not None:
            self.actions[step.action]()
            return
        stdin = self.secrets[step.stdin] if step.stdin else None
        proc.run(step.argv, input=stdin, cancel=self.cancel)

    def close_opened(self, *, strict: bool = False) -> None:
        """Close, in reverse, everything opened so far; each close is tried."""
        failures = []
        while self.opened:
            step = self.opened.pop()
            try:
                proc.run(step.undo)
            except ColdvaultError as exc:
                log.warning("could not close: %s", exc)
                failures.append(str(exc))
        if strict and failures:
            raise DiskError("the new disk could not be closed: " + "; ".join(failures))


def init_actions(
    opts: InitOptions, partition: Path, *, force: bool
) -> dict[str, Callable[[], None]]:
    """The Python actions of the ``disk init`` plan."""

    def write_key() -> None:
        try:
            write_private_file(opts.key_file, os.urandom(KEY_FILE_BYTES), overwrite=force)
        except FileExistsError:
            raise DiskError(
                f"key file {opts.key_file} already exists", hint="pass --force to replace it"
            ) from None

    def verify_mount() -> None:
        info = mount.verify_mount(opts.mount_point, opts.lv_path)
        if info.fstype != "btrfs":
            raise DiskError(f"{opts.mount_point} is {info.fstype}, not the new Btrfs")

    def write_token() -> None:
        # The disk stack's own token writer, so `coldvault open` accepts what we wrote.
        token.init(opts.mount_point, TokenConfig(opts.hash_file, opts.token_file), force=force)

    return {
        "wait-partition": lambda: wait_for_block_device(partition),
        "write-key": write_key,
        "mkdir": lambda: opts.mount_point.mkdir(parents=True, exist_ok=True),
        "verify-mount": verify_mount,
        "write-token": write_token,
    }
