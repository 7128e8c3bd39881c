"""The journald handler against a real AF_UNIX datagram socket, parsed per the native protocol."""

from __future__ import annotations

import array
import logging
import os
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldvault.events import Event, emit
from coldvault.log import setup_logging
from coldvault.log.journal import JournalHandler, encode, field_name, stderr_is_journal


def parse(payload: bytes) -> dict[str, list[bytes]]:
    """Decode a native-protocol entry: NAME=value lines and NAME\\n<u64 le><data>\\n."""
    fields: dict[str, list[bytes]] = {}
    pos = 0
    while pos < len(payload):
        end = payload.index(b"\n", pos)
        line = payload[pos:end]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            pos = end + 1
        else:
            name = line
            (size,) = struct.unpack("<Q", payload[end + 1 : end + 9])
            value = payload[end + 9 : end + 9 + size]
            assert payload[end + 9 + size : end + 10 + size] == b"\n"
            pos = end + 10 + size
        fields.setdefault(name.decode(), []).append(value)
    return fields


class Journal:
    """A datagram socket standing in for journald."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(10)

    def receive(self) -> tuple[dict[str, list[bytes]], bool]:
        """One entry, and whether it came through a memfd."""
        data, ancdata, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
                assert data == b""
                return parse(_read_sealed(fds[0])), True
        return parse(data), False

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(10)
        return True


def _read_sealed(fd: int) -> bytes:
    import fcntl

    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        for seal in (fcntl.F_SEAL_WRITE, fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_GROW):
            assert seals & seal, "journald refuses a memfd that is not sealed"
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


pytestmark = pytest.mark.usefixtures("restore_coldvault_logger")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.socket")
    try:
        yield j
    finally:
        j.sock.close()


@pytest.fixture
def logger(journal: Journal) -> Iterator[logging.Logger]:
    log = logging.getLogger("coldvault.test-journal")
    handler = JournalHandler(str(journal.path))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log
    finally:
        log.removeHandler(handler)
        handler.close()


def one(fields: dict[str, list[bytes]], name: str) -> str:
    assert len(fields[name]) == 1, fields.get(name)
    return fields[name][0].decode()


def test_plain_entry_fields(journal: Journal, logger: logging.Logger) -> None:
    logger.warning("disk %s is slow", "sdb")
    fields, via_memfd = journal.receive()
    assert not via_memfd
    assert one(fields, "MESSAGE") == "disk sdb is slow"
    assert one(fields, "PRIORITY") == "4"
    assert one(fields, "SYSLOG_IDENTIFIER") == "coldvault"
    assert one(fields, "CODE_FILE") == __file__
    assert one(fields, "CODE_FUNC") == "test_plain_entry_fields"
    assert int(one(fields, "CODE_LINE")) > 0
    assert one(fields, "COLDVAULT_LOGGER") == "coldvault.test-journal"


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, "7"),
        (logging.INFO, "6"),
        (logging.WARNING, "4"),
        (logging.ERROR, "3"),
        (logging.CRITICAL, "2"),
    ],
)
def test_priorities(journal: Journal, logger: logging.Logger, level: int, priority: str) -> None:
    logger.log(level, "x")
    fields, _ = journal.receive()
    assert one(fields, "PRIORITY") == priority


def test_event_fields(journal: Journal, logger: logging.Logger) -> None:
    emit(logger, Event.JOB_FINISHED, "root finished", job="root", bytes=1234, duration=5.5)
    fields, _ = journal.receive()
    assert one(fields, "MESSAGE") == "root finished"
    assert one(fields, "MESSAGE_ID") == Event.JOB_FINISHED.message_id
    assert one(fields, "COLDVAULT_EVENT") == "job_finished"
    assert one(fields, "COLDVAULT_JOB") == "root"
    assert one(fields, "COLDVAULT_BYTES") == "1234"
    assert one(fields, "COLDVAULT_DURATION") == "5.5"


def test_multiline_values_use_the_binary_form(journal: Journal, logger: logging.Logger) -> None:
    message = "first line\nsecond line with = sign\n\nlast"
    logger.error(message, extra={"journal_fields": {"COLDVAULT_DETAIL": "a\nb"}})
    fields, _ = journal.receive()
    assert one(fields, "MESSAGE") == message
    assert one(fields, "COLDVAULT_DETAIL") == "a\nb"
    raw = encode([("MESSAGE", message)])
    assert raw.startswith(b"MESSAGE\n" + struct.pack("<Q", len(message)))


def test_exception_text(journal: Journal, logger: logging.Logger) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed")
    fields, _ = journal.receive()
    message = one(fields, "MESSAGE")
    assert message.startswith("it failed\nTraceback (most recent call last):")
    assert "RuntimeError: boom" in message
    assert "RuntimeError: boom" in one(fields, "EXCEPTION_TEXT")


def test_field_names_are_sanitized(journal: Journal, logger: logging.Logger) -> None:
    extra = {"coldvault_part-count": 3, "_PRIVATE": "x", "9LIVES": "y", "none": None}
    logger.info("m", extra={"journal_fields": extra})
    fields, _ = journal.receive()
    assert one(fields, "COLDVAULT_PART_COUNT") == "3"
    assert one(fields, "PRIVATE") == "x"  # journald reserves leading underscores for itself
    assert not any(name.startswith(("9", "_")) for name in fields)
    assert "NONE" not in fields
    assert field_name("9LIVES") is None
    assert field_name("") is None


def test_large_entry_goes_through_a_sealed_memfd(journal: Journal, logger: logging.Logger) -> None:
    # Bigger than any datagram the socket takes (wmem_max is far below 8 MiB here).
    big = "x" * (8 << 20)
    logger.info("large", extra={"journal_fields": {"COLDVAULT_BLOB": big}})
    fields, via_memfd = journal.receive()
    assert via_memfd
    assert one(fields, "MESSAGE") == "large"
    assert one(fields, "COLDVAULT_BLOB") == big
    assert not journal.pending()


def test_unreachable_journal_falls_back_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger("coldvault.test-journal-missing")
    handler = JournalHandler(str(tmp_path / "no-such-socket"))
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("still visible")
        log.error("again")
    finally:
        log.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err.count("coldvault: journal at") == 1
    assert "coldvault: error: still visible" in err and "coldvault: error: again" in err


def test_setup_logging_uses_the_env_socket(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDVAULT_JOURNAL_SOCKET", str(journal.path))
    setup_logging(1, journal=True)
    logging.getLogger("coldvault.sub").debug("debug reaches the journal at -v")
    fields, _ = journal.receive()
    assert one(fields, "MESSAGE") == "debug reaches the journal at -v"
    assert one(fields, "PRIORITY") == "7"
    setup_logging(-1, journal=True)
    logging.getLogger("coldvault.sub").info("quiet drops info")
    logging.getLogger("coldvault.sub").warning("but keeps warnings")
    fields, _ = journal.receive()
    assert one(fields, "MESSAGE") == "but keeps warnings"


def test_journal_stream_detection(tmp_path: Path, journal: Journal) -> None:
    """A child whose stderr matches JOURNAL_STREAM logs to the journal socket, else to stderr."""
    script = (
        "import logging; from coldvault.log import setup_logging; setup_logging(0); "
        "logging.getLogger('coldvault').warning('hello from child')"
    )
    err_file = tmp_path / "stderr"
    with err_file.open("wb") as err:
        st = os.fstat(err.fileno())
        assert stat.S_ISREG(st.st_mode)
        env = {
            **os.environ,
            "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
            "COLDVAULT_JOURNAL_SOCKET": str(journal.path),
        }
        subprocess.run([sys.executable, "-c", script], stderr=err, env=env, check=True)
        fields, _ = journal.receive()
        assert one(fields, "MESSAGE") == "hello from child"
        assert err_file.read_bytes() == b""
        env["JOURNAL_STREAM"] = "1:2"
        subprocess.run([sys.executable, "-c", script], stderr=err, env=env, check=True)
    assert err_file.read_text() == "coldvault: warning: hello from child\n"
    assert not journal.pending()


def test_no_journal_stream_means_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert not stderr_is_journal()
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert not stderr_is_journal()
