"""restic, driven through the process gateway: the only place that knows its command line.

The repository string and the password never appear on a command line (argv is
logged and shown in errors): restic finds them in ``RESTIC_REPOSITORY`` and
``RESTIC_PASSWORD_FILE``, the latter a ``/proc/PID/fd/N`` path to the very file
that was checked. Failures are sorted by restic's error text into "unreachable"
(skipped, retried later) and the rest; every message has the repository masked.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from coldvault.config.model import OffsiteTarget, Retention
from coldvault.errors import CommandError, OffsiteError, OffsiteUnreachable
from coldvault.offsite import credentials
from coldvault.system import proc
from coldvault.system.cancel import CancelToken

RESTIC = "restic"
TAG_PREFIX = "coldvault-"  # tags coldvault sets: coldvault-job=..., coldvault-source=...

_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|no route to host"
    r"|connection reset|ssh: connect to host|unable to start the sftp session"
    r"|server misbehaving|TLS handshake timeout|EOF while|context deadline exceeded",
    re.IGNORECASE,
)
_NO_REPOSITORY = re.compile(
    r"Is there a repository at the following location|unable to open config file"
    r"|repository does not exist|The specified bucket does not exist",
    re.IGNORECASE,
)
_WRONG_PASSWORD = re.compile(r"wrong password or no key found", re.IGNORECASE)
_LOCKED = re.compile(r"repository is already locked", re.IGNORECASE)
_FULL = re.compile(r"no space left on device|quota ?exceeded|insufficient storage", re.IGNORECASE)


@dataclass(frozen=True)
class Snapshot:
    """One restic snapshot, as ``restic snapshots --json`` describes it."""

    id: str
    time: datetime
    tags: tuple[str, ...]
    paths: tuple[str, ...]

    @property
    def short_id(self) -> str:
        """The first 8 hex digits, as restic prints them."""
        return self.id[:8]

    def tag(self, name: str) -> str | None:
        """The value of coldvault's tag ``name`` (``coldvault-NAME=value``), or None."""
        prefix = f"{TAG_PREFIX}{name}="
        return next((t[len(prefix) :] for t in self.tags if t.startswith(prefix)), None)


@dataclass(frozen=True)
class BackupSummary:
    """restic's summary of one ``backup``, and what the process read."""

    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int
    bytes_processed: int
    read_bytes: int | None


@dataclass(frozen=True)
class ResticStatus:
    """One ``status`` line of ``restic backup --json``."""

    bytes_done: int
    total_bytes: int
    seconds_remaining: int | None


def tags(**values: str) -> tuple[str, ...]:
    """coldvault's tags for ``values`` (commas are restic's tag separator: replaced)."""
    return tuple(f"{TAG_PREFIX}{k}={v.replace(',', '_')}" for k, v in values.items())


class Restic:
    """One offsite target's repository."""

    def __init__(self, target: OffsiteTarget, cache_dir: Path, cancel: CancelToken) -> None:
        self.target = target
        self.cache_dir = cache_dir
        self.cancel = cancel

    @property
    def where(self) -> str:
        """How messages name the repository (its string may hold a secret)."""
        return f"offsite repository {self.target.name!r}"

    def exists(self) -> bool:
        """True when the repository exists and the password opens it."""
        try:
            self._run("cat", "config")
        except OffsiteMissing:
            return False
        return True

    def init(self) -> None:
        """Create the repository (``restic init``)."""
        self._run("init")

    def snapshots(self, *tag_filter: str) -> list[Snapshot]:
        """The snapshots carrying every tag in ``tag_filter``, oldest first."""
        argv = ["snapshots", "--json"]
        if tag_filter:
            argv += ["--tag", ",".join(tag_filter)]
        data = _json(self._run(*argv).stdout, "restic snapshots")
        if not isinstance(data, list):
            raise OffsiteError(f"{self.where}: restic snapshots printed no list")
        found = [_snapshot(item) for item in data]
        return sorted((s for s in found if s is not None), key=lambda s: s.time)

    def backup(
        self,
        folder: Path,
        labels: tuple[str, ...],
        parent: str | None,
        on_progress: Callable[[ResticStatus], None],
    ) -> BackupSummary:
        """Back up the contents of ``folder`` (as the snapshot's root) with ``labels``.

        The folder is restic's working directory and the target is ``.``: every
        snapshot of a job has the same tree whatever the folder's name, so with
        ``--parent`` restic skips each file whose size, mtime and inode match.
        ``--ignore-ctime``: hard-linking a part into a new snapshot folder changes
        its ctime, not its contents.
        """
        argv = ["backup", "--json", "--ignore-ctime", "--host", _host()]
        for label in labels:
            argv += ["--tag", label]
        if parent is not None:
            argv += ["--parent", parent]
        summary: dict[str, Any] = {}

        def on_line(line: bytes) -> None:
            message = _json_line(line)
            if message.get("message_type") == "status":
                on_progress(_progress(message))
            elif message.get("message_type") == "summary":
                summary.update(message)

        result = self._run(*argv, ".", on_line=on_line, cwd=folder)
        return _summary(summary, result.read_bytes, self.where)

    def forget(self, labels: tuple[str, ...], rule: Retention) -> int:
        """Apply ``rule`` to the snapshots carrying ``labels`` (one group); prune if any went.

        Returns how many snapshots were removed. ``prune`` (which rewrites packs
        and takes the exclusive lock) runs only when something was forgotten.
        """
        if rule.keeps_everything:
            return 0
        argv = ["forget", "--json", "--group-by", "host", "--tag", ",".join(labels)]
        data = _json(self._run(*argv, *_keep_options(rule)).stdout, "restic forget")
        groups = data if isinstance(data, list) else []
        removed = sum(len(g.get("remove") or ()) for g in groups if isinstance(g, dict))
        if removed:
            self._run("prune")
        return removed

    def check(self, subset: str | None) -> None:
        """``restic check``, reading ``subset`` of the pack data (None: metadata only)."""
        argv = ["check"] + (["--read-data-subset", subset] if subset else [])
        self._run(*argv)

    def unlock(self) -> None:
        """Remove stale locks (restic's rule: of a dead process on this host, or old)."""
        self._run("unlock")

    def locks(self) -> list[dict[str, Any]]:
        """Every lock in the repository: restic's JSON (hostname, pid, time, exclusive)."""
        ids = self._run("list", "locks", "--no-lock").text.split()
        found = []
        for lock_id in ids:
            data = _json(self._run("cat", "lock", lock_id, "--no-lock").stdout, "restic cat lock")
            if isinstance(data, dict):
                found.append(data)
        return found

    def restore(self, snapshot: str, dest: Path) -> None:
        """Restore a whole snapshot into the folder ``dest``."""
        self._run("restore", snapshot, "--target", str(dest))

    @contextlib.contextmanager
    def dump(self, snapshot: str) -> Iterator[IO[bytes]]:
        """A snapshot's root folder as a tar stream (``restic dump SNAPSHOT /``)."""
        with self._env() as env:
            try:
                with proc.stdout_stream(
                    [RESTIC, *self._common(), "dump", snapshot, "/"], env=env
                ) as out:
                    yield out
            except CommandError as exc:
                raise self._classify(exc) from None

    # -- running ---------------------------------------------------------------------

    def _common(self) -> list[str]:
        return ["--cache-dir", str(self.cache_dir)]

    @contextlib.contextmanager
    def _env(self) -> Iterator[dict[str, str]]:
        with credentials.environment(self.target) as env:
            yield env

    def _run(
        self,
        *args: str,
        on_line: Callable[[bytes], None] | None = None,
        cwd: Path | None = None,
    ) -> proc.Result:
        argv = [RESTIC, *self._common(), *args]
        with self._env() as env:
            try:
                if on_line is not None:
                    return proc.run_lines(argv, on_line, cancel=self.cancel, env=env, cwd=cwd)
                return proc.run(argv, cancel=self.cancel, env=env, cwd=cwd)
            except CommandError as exc:
                if exc.returncode is None and not exc.stderr_tail:
                    raise  # not restic's failure (missing program, timeout)
                raise self._classify(exc) from None

    def _classify(self, exc: CommandError) -> OffsiteError:
        text = credentials.mask(self.target, " | ".join(exc.stderr_tail)) or str(exc)
        what = f"{self.where}: {text}"
        name = self.target.name
        if _WRONG_PASSWORD.search(text):
            return OffsiteError(
                f"{self.where}: the password does not open it",
                hint=f"check {self.target.password_file}: it must hold the password the "
                "repository was created with",
            )
        if _LOCKED.search(text):
            return OffsiteLocked(
                what, hint=f"`coldvault offsite unlock {name}` removes stale locks"
            )
        # Before "no repository": restic adds "Is there a repository..." to a refused connection.
        if _UNREACHABLE.search(text):
            return OffsiteUnreachable(what, hint="coldvault tries again at the next run")
        if _NO_REPOSITORY.search(text):
            return OffsiteMissing(
                f"{self.where} does not exist (or holds no restic repository)",
                hint=f"create it with `coldvault offsite init {name}`",
            )
        if _FULL.search(text):
            return OffsiteError(
                what, hint="the remote storage is full: free space or lower retention"
            )
        return OffsiteError(what)


class OffsiteMissing(OffsiteError):
    """There is no restic repository at the configured place (yet)."""


class OffsiteLocked(OffsiteError):
    """Another restic process (or a crashed one) holds a lock on the repository."""


def _host() -> str:
    return socket.gethostname().split(".")[0] or "coldvault"


def _keep_options(rule: Retention) -> list[str]:
    pairs = [
        ("--keep-last", rule.keep_last),
        ("--keep-hourly", rule.hourly),
        ("--keep-daily", rule.daily),
        ("--keep-weekly", rule.weekly),
        ("--keep-monthly", rule.monthly),
        ("--keep-yearly", rule.yearly),
    ]
    return [arg for option, n in pairs if n for arg in (option, str(n))]


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise OffsiteError(f"{what} printed something that is not JSON") from None


def _json_line(line: bytes) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and value >= 0 else 0


def _progress(message: dict[str, Any]) -> ResticStatus:
    remaining = message.get("seconds_remaining")
    return ResticStatus(
        _int(message, "bytes_done"),
        _int(message, "total_bytes"),
        remaining if isinstance(remaining, int) else None,
    )


def _summary(data: dict[str, Any], read_bytes: int | None, where: str) -> BackupSummary:
    snapshot_id = data.get("snapshot_id")
    if not isinstance(snapshot_id, str):
        raise OffsiteError(f"{where}: restic backup ended without a summary")
    return BackupSummary(
        snapshot_id,
        _int(data, "files_new"),
        _int(data, "files_changed"),
        _int(data, "files_unmodified"),
        _int(data, "data_added"),
        _int(data, "total_bytes_processed"),
        read_bytes,
    )


def _snapshot(item: Any) -> Snapshot | None:
    if not isinstance(item, dict):
        return None
    sid, when = item.get("id"), item.get("time")
    if not isinstance(sid, str) or not isinstance(when, str):
        return None
    try:
        time = datetime.fromisoformat(_iso(when))
    except ValueError:
        return None
    labels = tuple(t for t in item.get("tags") or () if isinstance(t, str))
    paths = tuple(p for p in item.get("paths") or () if isinstance(p, str))
    return Snapshot(sid, time, labels, paths)


def _iso(when: str) -> str:
    """restic's RFC 3339 time with nanoseconds, for Python 3.11's fromisoformat."""
    when = when.replace("Z", "+00:00")
    return re.sub(r"(\.\d{6})\d+", r"\1", when)
