"""The one exception hierarchy of coldvault, and the exit codes it maps to.

Every expected failure is a :class:`ColdvaultError`. The CLI prints its message
(and hint) and exits with its ``exit_code``; no traceback reaches the user.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

# Exit codes (documented in README.md, "Exit codes").
EXIT_OK = 0
EXIT_FAILURE = 1  # a job or an operation failed
EXIT_USAGE = 2  # bad command line (argparse), or it names an unknown job
EXIT_DISK_ABSENT = 3  # the backup disk did not appear in time, or a repository is unreachable
EXIT_TOKEN = 4  # the disk's token was missing or wrong: nothing was written
EXIT_BUSY = 5  # another coldvault run holds the lock
EXIT_CORRUPT = 6  # verify found corrupt or missing data
EXIT_OVERDUE = 7  # status: a job is overdue
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is invalid
EXIT_CANCELLED = 130  # stopped by SIGINT/SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout was closed by its reader (`| head`), as for `cat`


class ColdvaultError(Exception):
    """Base of every expected failure: a message for the user, and a hint."""

    exit_code = EXIT_FAILURE
    # True once the error was logged as an event (with its hint): the CLI does not repeat it.
    reported = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(ColdvaultError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = EXIT_CONFIG


class UsageError(ColdvaultError):
    """The command line names something that does not exist (a job, for example)."""

    exit_code = EXIT_USAGE


class CommandError(ColdvaultError):
    """An external command failed: carries its argv, exit code and last stderr lines."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stderr_tail: Sequence[str] = (),
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = tuple(stderr_tail)
        if message is None:
            shown = " ".join(self.argv)
            status = "was killed" if returncode is None else f"exited with {returncode}"
            message = f"command `{shown}` {status}"
            if self.stderr_tail:
                message += ": " + " | ".join(self.stderr_tail)
        super().__init__(message, hint=hint)


class CommandNotFound(CommandError):
    """The program to run is not installed."""


class CommandTimeout(CommandError):
    """An external command ran longer than its timeout and was killed."""


class Cancelled(ColdvaultError):
    """Work was stopped at a safe point because a stop was requested."""

    exit_code = EXIT_CANCELLED


class DiskAbsent(ColdvaultError):
    """The backup disk is not attached (or did not appear within the wait)."""

    exit_code = EXIT_DISK_ABSENT


class DiskError(ColdvaultError):
    """A layer of the disk stack could not be opened or closed."""


class TokenRejected(ColdvaultError):
    """The disk's token is missing or does not match: it is not our backup disk."""

    exit_code = EXIT_TOKEN


class Busy(ColdvaultError):
    """Another coldvault process holds the lock."""

    exit_code = EXIT_BUSY


class JobError(ColdvaultError):
    """A backup, restore or verify job failed."""


class IntegrityError(JobError):
    """Stored data does not match its manifest (corrupt or missing parts)."""

    exit_code = EXIT_CORRUPT


class OffsiteError(ColdvaultError):
    """An offsite copy through restic failed (wrong password, locked, full, damaged)."""


class OffsiteUnreachable(OffsiteError):
    """The offsite repository cannot be reached now (network down, server off): retried later."""

    exit_code = EXIT_DISK_ABSENT


_OS_ERROR_HINTS = {
    errno.EIO: "the device reported an I/O error: check `dmesg` and the disk's health; "
    "earlier backups are never modified in place",
    errno.ENOSPC: "the filesystem is full: free space or lower the number of snapshots kept",
    errno.EROFS: "the filesystem is read-only (often after I/O errors): check `dmesg`",
}


def describe_os_error(exc: OSError) -> ColdvaultError:
    """An operating-system error (I/O error, disk full, ...) as a user-facing error."""
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        what = f"{what}: {exc.filename}"
        if exc.filename2 is not None:
            what += f" -> {exc.filename2}"
    return ColdvaultError(what, hint=_OS_ERROR_HINTS.get(exc.errno or 0))
