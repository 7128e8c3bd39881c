"""Structured entries for journald over its native protocol (no libsystemd needed).

Each record becomes one datagram of ``FIELD=value`` lines sent to
``/run/systemd/journal/socket``. A value containing a newline uses the binary
form ``FIELD\\n<64-bit little-endian length><bytes>\\n``. An entry too large for
one datagram is written to a sealed memfd whose descriptor is passed with
SCM_RIGHTS, the way ``sd_journal_send`` does it.
"""

from __future__ import annotations

import array
import errno
import logging
import os
import re
import socket
import struct
import sys
import threading
from collections.abc import Iterable, Mapping

DEFAULT_SOCKET = "/run/systemd/journal/socket"
SOCKET_ENV = "COLDVAULT_JOURNAL_SOCKET"
IDENTIFIER = "coldvault"

_INVALID_FIELD_CHARS = re.compile(r"[^A-Z0-9_]")


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (3 err, 4 warning, 6 info, 7 debug)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def field_name(name: str) -> str | None:
    """``name`` as a valid journal field name (A-Z, 0-9, _; not starting with _), or None."""
    cleaned = _INVALID_FIELD_CHARS.sub("_", name.upper()).lstrip("_")
    if not cleaned or cleaned[0].isdigit():
        return None
    return cleaned[:64]


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "replace")


def encode(fields: Iterable[tuple[str, object]]) -> bytes:
    """The native-protocol payload for ``fields`` (name, value) pairs."""
    out = bytearray()
    for name, value in fields:
        data = _as_bytes(value)
        key = name.encode("ascii")
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


def socket_path() -> str:
    """Where journald listens (overridable for tests)."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class JournalHandler(logging.Handler):
    """Send each record to journald with coldvault's structured fields."""

    def __init__(self, path: str | None = None, identifier: str = IDENTIFIER) -> None:
        super().__init__()
        self.path = path or socket_path()
        self.identifier = identifier
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._warned = False

    def fields(self, record: logging.LogRecord) -> list[tuple[str, object]]:
        """The journal fields for ``record`` (MESSAGE first)."""
        message = record.getMessage()
        out: list[tuple[str, object]] = []
        if record.exc_info:
            formatter = self.formatter or logging.Formatter()
            exc_text = formatter.formatException(record.exc_info)
            message = f"{message}\n{exc_text}"
            out.append(("EXCEPTION_TEXT", exc_text))
        out[:0] = [
            ("MESSAGE", message),
            ("PRIORITY", syslog_priority(record.levelno)),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", record.lineno),
            ("CODE_FUNC", record.funcName),
            ("COLDVAULT_LOGGER", record.name),
        ]
        extra = getattr(record, "journal_fields", None)
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                name = field_name(str(key))
                if name is not None and value is not None:
                    out.append((name, value))
        return out

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record``; if journald is unreachable, fall back to stderr."""
        try:
            self.send(encode(self.fields(record)))
        except OSError as exc:
            self._fallback(record, exc)
        except Exception:
            self.handleError(record)

    def send(self, payload: bytes) -> None:
        """One datagram, or a sealed memfd when the payload is too large."""
        with self._sock_lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock = self._sock
            try:
                sock.sendto(payload, self.path)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                _send_memfd(sock, self.path, payload)

    def _fallback(self, record: logging.LogRecord, exc: OSError) -> None:
        # Losing an error message silently would be worse than printing it twice.
        if not self._warned:
            self._warned = True
            print(f"coldvault: journal at {self.path} unreachable ({exc})", file=sys.stderr)
        print(f"coldvault: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)

    def close(self) -> None:
        """Close the socket."""
        with self._sock_lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        super().close()


def _send_memfd(sock: socket.socket, path: str, payload: bytes) -> None:
    """Pass ``payload`` in a sealed memfd: journald reads entries of any size this way."""
    import fcntl

    fd = os.memfd_create("coldvault-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        fds = array.array("i", [fd])
        sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)], 0, path)
    finally:
        os.close(fd)


def stderr_is_journal() -> bool:
    """Whether stderr is connected to the journal (systemd sets ``JOURNAL_STREAM=dev:ino``)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = stream.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"
