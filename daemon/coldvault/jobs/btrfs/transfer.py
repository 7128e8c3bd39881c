"""``btrfs send | btrfs receive`` through the process gateway's relay.

A receive counts only when the received subvolume is read-only with the
expected ``received_uuid``; anything else (failure, cancel, kill) deletes the
partial subvolume before the error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from coldvault.errors import CommandError, ConfigError, JobError
from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.subvol import Subvolume
from coldvault.progress import ProgressMeter
from coldvault.system import crashpoint, proc
from coldvault.system.beneath import SafeDir
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.jobs.btrfs")

SEND_STREAM_VERSION = Path("/sys/fs/btrfs/features/send_stream_version")


def compressed_data_support(sysfs: Path = SEND_STREAM_VERSION) -> str | None:
    """None when ``btrfs send --compressed-data`` works here, else what is missing."""
    try:
        help_text = proc.run(["btrfs", "send", "--help"], check=False)
    except CommandError as exc:
        return exc.message
    if "--compressed-data" not in (help_text.text + help_text.stderr.decode(errors="replace")):
        return "this btrfs-progs has no `btrfs send --compressed-data` (needs btrfs-progs 5.18+)"
    try:
        version = int(sysfs.read_text().strip())
    except (OSError, ValueError):
        version = 1
    if version < 2:
        return (
            f"the kernel supports send stream version {version} only "
            "(--compressed-data needs version 2, Linux 6.0+)"
        )
    return None


def require_compressed_data() -> None:
    """ConfigError when ``compressed_data: true`` cannot work on this machine."""
    missing = compressed_data_support()
    if missing is not None:
        raise ConfigError(
            f"compressed_data: true cannot be used: {missing}",
            hint="set compressed_data: false, or upgrade btrfs-progs/the kernel",
        )


def send_argv(
    snapshot: Path, send_args: Sequence[str | Path], compressed: bool
) -> list[str | Path]:
    """The ``btrfs send`` command line."""
    argv: list[str | Path] = ["btrfs", "send"]
    if compressed:
        argv += ["--proto", "2", "--compressed-data"]
    return [*argv, *send_args, snapshot]


def send_receive(
    snapshot: Subvolume,
    send_path: Path,
    target: SafeDir,
    send_args: Sequence[str | Path],
    *,
    compressed: bool,
    meter: ProgressMeter,
    cancel: CancelToken,
    expect_received_uuid: str | None = None,
) -> tuple[Subvolume, int]:
    """Send ``snapshot`` (reached at ``send_path``) into the held folder ``target``.

    Returns the checked copy and the bytes relayed. ``btrfs receive`` gets the folder
    through its descriptor (``/proc/PID/fd/N``), so a folder swapped for a symlink
    since it was opened is not followed. ``expect_received_uuid`` defaults to the
    snapshot's uuid (a first-hand send); a re-send of a received copy (restore)
    carries its received_uuid.
    """
    name = snapshot.path.name
    if target.lstat(name) is not None:
        raise JobError(
            f"{target.child(name)} already exists; not overwriting it",
            hint="delete or rename it first (btrfs subvolume delete), then run again",
        )
    expected = expect_received_uuid or snapshot.received_uuid or snapshot.uuid

    def relayed(total: int) -> None:
        meter.update(total)
        crashpoint.reached("btrfs.streamed")

    try:
        result = proc.pipeline(
            send_argv(send_path, send_args, compressed),
            ["btrfs", "receive", target.proc_path()],
            on_bytes=relayed,
            cancel=cancel,
        )
        crashpoint.reached("btrfs.received")
        received = subvol.info_at(target, name)
        if received is None or not received.complete or received.received_uuid != expected:
            raise JobError(
                f"received copy {target.child(name)} is not a finished backup "
                f"(read-only: {received and received.readonly}, received_uuid: "
                f"{received and received.received_uuid}, expected {expected})"
            )
    except BaseException as exc:
        _discard(target, name)
        if isinstance(exc, CommandError) and subvol.is_no_space(exc):
            raise JobError(
                f"no space left on the filesystem of {target.path} while receiving "
                f"{name}; the partial copy was deleted, earlier backups are intact",
                hint="free space (fewer kept snapshots: target_retention) or use a bigger disk",
            ) from None
        raise
    meter.update(result.bytes_relayed)
    meter.emit()
    return received, result.bytes_relayed


def _discard(target: SafeDir, name: str) -> None:
    """Delete a partial receive; never let cleanup hide the original error."""
    try:
        if subvol.info_at(target, name) is None:
            return
        log.warning("deleting partial receive %s", target.child(name))
        subvol.destroy(target, name)
        subvol.commit(target)
    except (JobError, OSError) as exc:
        log.error("could not delete partial receive %s: %s", target.child(name), exc)
