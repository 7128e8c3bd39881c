"""The process gateway: the only module that runs external commands.

Every command is an argv list (never a shell string). Commands are logged at
debug level, stderr is captured for error messages, timeouts and cancellation
are enforced, and any failure raises :class:`~coldvault.errors.CommandError`
carrying the argv, the exit code and the last lines of stderr.

:func:`pipeline` runs ``producer | consumer`` with the bytes relayed through
this process (``splice(2)`` on Linux, read/write elsewhere) so they can be
counted for progress; both exit codes are checked.

Children run in the C locale (``LANG=C.UTF-8``, no ``LC_*``, no ``LANGUAGE``)
because coldvault parses their output and error text ("No space left on
device", "Invalid cross-device link"), which a translated locale would change;
systemd hands the system locale to services. Commands the user wrote (hooks)
pass ``keep_locale=True`` and see the user's locale unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from coldvault.errors import Cancelled, CommandError, CommandNotFound, CommandTimeout
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.proc")

Arg = str | os.PathLike[str]
STDERR_TAIL_LINES = 8
_POLL_SECONDS = 0.2
_RELAY_CHUNK = 1 << 20
_KILL_GRACE_SECONDS = 5.0
_STREAM_TAIL_LIMIT = 1 << 20


@dataclass(frozen=True)
class Result:
    """A finished command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    read_bytes: int | None = None  # bytes the child read (rchar), where measured

    @property
    def text(self) -> str:
        """Standard output decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


@dataclass(frozen=True)
class PipelineResult:
    """A finished two-process pipeline."""

    producer: Result
    consumer: Result
    bytes_relayed: int


C_LOCALE = "C.UTF-8"


def child_env(env: Mapping[str, str] | None = None, *, keep_locale: bool = False) -> dict[str, str]:
    """The environment for a child: ours plus ``env``, in the C locale unless ``keep_locale``."""
    base = dict(os.environ)
    if not keep_locale:
        for name in list(base):
            if name.startswith("LC_") or name in ("LANG", "LANGUAGE"):
                del base[name]
        base["LANG"] = C_LOCALE
    if env is not None:
        base.update(env)
    return base


def which(program: str) -> str | None:
    """Full path of ``program`` on PATH (also /sbin and /usr/sbin), or None."""
    path = os.environ.get("PATH", os.defpath)
    extra = [p for p in ("/usr/local/sbin", "/usr/sbin", "/sbin") if p not in path.split(":")]
    return shutil.which(program, path=":".join([path, *extra]))


def _argv(argv: Sequence[Arg]) -> list[str]:
    if isinstance(argv, str | bytes):
        raise TypeError("the process gateway takes an argv list, never a shell string")
    out = [os.fspath(a) for a in argv]
    if not out:
        raise ValueError("empty argv")
    return out


def _resolve(argv: list[str]) -> list[str]:
    if os.sep in argv[0]:
        return argv
    found = which(argv[0])
    if found is None:
        raise CommandNotFound(
            argv,
            None,
            message=f"program `{argv[0]}` is not installed (needed for `{' '.join(argv)}`)",
            hint=f"install the package that provides `{argv[0]}`",
        )
    return [found, *argv[1:]]


def _popen(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start ``args``; a program that cannot be executed is a CommandError, not an OSError."""
    try:
        # The one place a child is started (argv list, no shell): S603 is kept on for the
        # rest of the tree so any other subprocess call is flagged.
        return subprocess.Popen(args, **kwargs)  # type: ignore[call-overload,no-any-return]  # noqa: S603
    except FileNotFoundError as exc:
        if exc.filename is not None and os.fspath(exc.filename) != args[0]:
            raise CommandError(
                args, None, message=f"cannot run `{' '.join(args)}`: {exc.strerror}: {exc.filename}"
            ) from None
        raise CommandNotFound(
            args,
            None,
            message=f"program `{args[0]}` does not exist (needed for `{' '.join(args)}`)",
            hint="check the path, or install the package that provides it",
        ) from None
    except OSError as exc:
        raise CommandError(
            args, None, message=f"cannot run `{' '.join(args)}`: {exc.strerror or exc}"
        ) from None


def _tail(stderr: bytes) -> list[str]:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines()]
    return [ln for ln in lines if ln][-STDERR_TAIL_LINES:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child, then kill it if it does not exit in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(_KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def run(
    argv: Sequence[Arg],
    *,
    check: bool = True,
    timeout: float | None = None,
    input: bytes | None = None,
    cancel: CancelToken | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Arg | None = None,
    capture_stdout: bool = True,
    keep_locale: bool = False,
) -> Result:
    """Run one command to completion and return its output.

    Raises CommandError on a non-zero exit (when ``check``), CommandTimeout after
    ``timeout`` seconds, Cancelled when ``cancel`` fires (the child is stopped
    first), and CommandNotFound when the program is missing. ``env`` is added
    to the environment; ``keep_locale`` keeps the user's locale (module docstring).
    """
    args = _resolve(_argv(argv))
    log.debug("run: %s", " ".join(args))
    full_env = child_env(env, keep_locale=keep_locale)
    proc = _popen(
        args,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=cwd,
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    pending_input = input
    try:
        while True:
            try:
                out, err = proc.communicate(pending_input, timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pending_input = None  # communicate() keeps feeding what it started
                if cancel is not None and cancel.cancelled:
                    _stop(proc)
                    raise Cancelled(f"cancelled while running `{' '.join(args)}`") from None
                if deadline is not None and time.monotonic() > deadline:
                    _stop(proc)
                    raise CommandTimeout(
                        args, None, message=f"command `{' '.join(args)}` timed out after {timeout}s"
                    ) from None
    except BaseException:
        _stop(proc)
        raise
    result = Result(tuple(args), proc.returncode, out or b"", err or b"")
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, _tail(result.stderr))
    return result


def run_text(argv: Sequence[Arg], **kwargs: object) -> str:
    """Run a command (see :func:`run`) and return its stdout as text."""
    return run(argv, **kwargs).text  # type: ignore[arg-type]


class _Drain(threading.Thread):
    """Collect a pipe's bytes in the background so the child never blocks on it."""

    def __init__(self, fileobj: object) -> None:
        super().__init__(daemon=True)
        self._f = fileobj
        self.data = b""

    def run(self) -> None:
        with self._f:  # type: ignore[attr-defined]
            self.data = self._f.read()  # type: ignore[attr-defined]


def _relay_chunk(src: int, dst: int) -> int:
    """Move up to one chunk from ``src`` to ``dst`` without blocking; 0 at end of stream.

    Both descriptors are non-blocking, so BlockingIOError means "wait for dst".
    Splice never holds bytes in this process; the read/write fallback writes
    what it read completely (waiting for dst as needed) before returning.
    """
    if hasattr(os, "splice"):
        try:
            return os.splice(src, dst, _RELAY_CHUNK, flags=os.SPLICE_F_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
    data = os.read(src, _RELAY_CHUNK)
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(dst, view) :]
        except BlockingIOError:
            select.select([], [dst], [], _POLL_SECONDS)
    return len(data)


def _relay(
    src: int,
    dst: int,
    what: str,
    on_bytes: Callable[[int], None] | None,
    cancel: CancelToken | None,
    timeout: float | None,
) -> int:
    """Copy ``src`` to ``dst`` until end of stream; return the byte count.

    Waits with select() in short slices on whichever side is not ready, so a
    cancel or timeout is noticed even when the consumer stops reading.
    """
    total = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    os.set_blocking(src, False)
    os.set_blocking(dst, False)
    want_write = False
    while True:
        if cancel is not None and cancel.cancelled:
            raise Cancelled(f"cancelled while running `{what}`")
        if deadline is not None and time.monotonic() > deadline:
            raise CommandTimeout([what], None, message=f"`{what}` timed out after {timeout}s")
        if want_write:
            _, ready, _ = select.select([], [dst], [], _POLL_SECONDS)
        else:
            ready, _, _ = select.select([src], [], [], _POLL_SECONDS)
        if not ready:
            continue
        try:
            n = _relay_chunk(src, dst)
        except BlockingIOError:
            # splice could not move anything: either the producer has nothing yet
            # (select said readable, so rare) or the consumer's pipe is full.
            want_write = not want_write
            continue
        except BrokenPipeError:
            return total  # consumer exited early; its exit code tells why
        want_write = False
        if n == 0:
            return total
        total += n
        if on_bytes is not None:
            on_bytes(total)


def _wait(
    proc: subprocess.Popen[bytes],
    what: str,
    cancel: CancelToken | None,
    deadline: float | None,
    timeout: float | None,
) -> None:
    """Wait for ``proc`` to exit, raising Cancelled or CommandTimeout meanwhile."""
    with _exit_watch(proc) as pidfd:
        while True:
            if pidfd is not None:
                # A pidfd wakes us the moment the child exits; Popen.wait(timeout)
                # would poll with sleeps that add up to 50 ms per wait.
                select.select([pidfd], [], [], _POLL_SECONDS)
            if _exited(proc):
                return
            if cancel is not None and cancel.cancelled:
                raise Cancelled(f"cancelled while running `{what}`")
            if deadline is not None and time.monotonic() > deadline:
                raise CommandTimeout([what], None, message=f"`{what}` timed out after {timeout}s")


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(0 if hasattr(os, "pidfd_open") else _POLL_SECONDS)
    except subprocess.TimeoutExpired:
        return False
    return True


@contextlib.contextmanager
def _exit_watch(proc: subprocess.Popen[bytes]) -> Iterator[int | None]:
    """A pidfd for ``proc`` where the platform has one (Linux 5.3+), else None."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def pipeline(
    producer: Sequence[Arg],
    consumer: Sequence[Arg],
    *,
    on_bytes: Callable[[int], None] | None = None,
    cancel: CancelToken | None = None,
    timeout: float | None = None,
) -> PipelineResult:
    """Run ``producer | consumer``, relaying and counting the bytes between them.

    ``on_bytes`` is called with the running total after each chunk. Both exit
    codes are checked: the first failing side raises CommandError (the producer
    is named when both failed, since its failure usually causes the other).
    On cancel or timeout both children are stopped before raising.
    """
    pargs = _resolve(_argv(producer))
    cargs = _resolve(_argv(consumer))
    log.debug("pipeline: %s | %s", " ".join(pargs), " ".join(cargs))
    pipe = subprocess.PIPE
    env = child_env()
    p = _popen(pargs, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, env=env)
    try:
        c = _popen(cargs, stdin=pipe, stdout=pipe, stderr=pipe, env=env)
    except BaseException:
        _stop(p)
        raise
    assert p.stdout is not None and c.stdin is not None
    drains = [_Drain(p.stderr), _Drain(c.stdout), _Drain(c.stderr)]
    for d in drains:
        d.start()
    what = f"{' '.join(pargs)} | {' '.join(cargs)}"
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        try:
            total = _relay(p.stdout.fileno(), c.stdin.fileno(), what, on_bytes, cancel, timeout)
        finally:
            with contextlib.suppress(OSError):
                c.stdin.close()
            p.stdout.close()
        # The stream ended, but either side may still hang: keep honouring cancel/timeout.
        _wait(p, what, cancel, deadline, timeout)
        _wait(c, what, cancel, deadline, timeout)
    except BaseException:
        _stop(p)
        _stop(c)
        raise
    for d in drains:
        d.join()
    pres = Result(tuple(pargs), p.returncode, b"", drains[0].data)
    cres = Result(tuple(cargs), c.returncode, drains[1].data, drains[2].data)
    # A consumer that quit makes the producer die of SIGPIPE: report the consumer then.
    if pres.returncode == -signal.SIGPIPE and cres.returncode == 0:
        raise CommandError(
            cargs,
            0,
            _tail(cres.stderr),
            message=f"`{' '.join(cargs)}` exited before reading all the output of "
            f"`{' '.join(pargs)}`",
        )
    if pres.returncode not in (0, -signal.SIGPIPE):
        raise CommandError(pargs, pres.returncode, _tail(pres.stderr))
    if cres.returncode != 0:
        raise CommandError(cargs, cres.returncode, _tail(cres.stderr))
    return PipelineResult(pres, cres, total)


def run_lines(
    argv: Sequence[Arg],
    on_line: Callable[[bytes], None],
    *,
    check: bool = True,
    cancel: CancelToken | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Arg | None = None,
) -> Result:
    """Run a command, calling ``on_line`` with each line of its stdout as it comes.

    The result's ``stdout`` is the last line; ``read_bytes`` is what the child
    read through read(2) and kin (Linux, from /proc/PID/io before it is reaped).
    Errors as for :func:`run`.
    """
    args = _resolve(_argv(argv))
    log.debug("run: %s", " ".join(args))
    pipe = subprocess.PIPE
    proc = _popen(
        args, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, env=child_env(env), cwd=cwd
    )
    drain = _Drain(proc.stderr)
    drain.start()
    try:
        assert proc.stdout is not None
        with proc.stdout:
            last = _read_lines(proc.stdout.fileno(), on_line, " ".join(args), cancel)
        read_bytes = _read_bytes_at_exit(proc.pid)
        _wait(proc, " ".join(args), cancel, None, None)
    except BaseException:
        _stop(proc)
        raise
    drain.join()
    result = Result(tuple(args), proc.returncode, last, drain.data, read_bytes)
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, _tail(result.stderr))
    return result


def _read_lines(
    fd: int, on_line: Callable[[bytes], None], what: str, cancel: CancelToken | None
) -> bytes:
    """Feed ``on_line`` every line read from ``fd`` until EOF; return the last line."""
    pending, last = b"", b""
    while True:
        ready, _, _ = select.select([fd], [], [], _POLL_SECONDS)
        if cancel is not None and cancel.cancelled:
            raise Cancelled(f"cancelled while running `{what}`")
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            on_line(line)
            last = line
    if pending:
        on_line(pending)
        last = pending
    return last


def _read_bytes_at_exit(pid: int) -> int | None:
    """The ``rchar`` of a child that exited but is not yet reaped (None where unknown)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with open(f"/proc/{pid}/io", "rb") as io:
            for line in io:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1])
    except (AttributeError, OSError, ValueError):
        pass
    return None


@contextlib.contextmanager
def stdout_stream(
    argv: Sequence[Arg], *, env: Mapping[str, str] | None = None
) -> Iterator[IO[bytes]]:
    """Run a command and yield its stdout as a stream; its exit code is checked at the end.

    Leaving the block early (an exception in the reader) stops the child first.
    """
    args = _resolve(_argv(argv))
    log.debug("stream: %s", " ".join(args))
    pipe = subprocess.PIPE
    proc = _popen(args, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, env=child_env(env))
    drain = _Drain(proc.stderr)
    drain.start()
    assert proc.stdout is not None
    try:
        with proc.stdout:
            yield proc.stdout
            # A tar reader stops at the end-of-archive marker; the padding after it
            # must be read too, or the child dies of a broken pipe.
            _drain_tail(proc.stdout, args)
        proc.wait()
    except BaseException:
        _stop(proc)
        raise
    drain.join()
    if proc.returncode != 0:
        raise CommandError(args, proc.returncode, _tail(drain.data))


def _drain_tail(stream: IO[bytes], args: list[str]) -> None:
    left = _STREAM_TAIL_LIMIT
    while chunk := stream.read(min(left + 1, 1 << 16)):
        left -= len(chunk)
        if left < 0:
            raise CommandError(
                args, None, message=f"`{' '.join(args)}` wrote more than its reader expected"
            )


def spawn(
    argv: Sequence[Arg],
    *,
    env: Mapping[str, str] | None = None,
    keep_locale: bool = False,
    **popen_kwargs: object,
) -> subprocess.Popen[bytes]:
    """Start a long-lived child (for example the daemon in tests); the caller owns it."""
    args = _resolve(_argv(argv))
    log.debug("spawn: %s", " ".join(args))
    return _popen(args, env=child_env(env, keep_locale=keep_locale), **popen_kwargs)
