"""A FUSE file system whose one file never answers a read: a hung device, made to order.

It speaks the kernel's FUSE protocol on ``/dev/fuse`` directly (no library): enough
of INIT, LOOKUP, GETATTR, OPEN and RELEASE for one regular file ``src`` of a given
size. READ requests are not answered, so a reader blocks in the kernel as on a
dead disk or server; like a real server it answers an INTERRUPT (the kernel sends
one when the reading thread gets a fatal signal) with EINTR, so SIGKILL still
ends the reader. ``close`` fails what is pending (EIO) and unmounts.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import stat
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

_IN = struct.Struct("=IIQQIIII")  # fuse_in_header
_OUT = struct.Struct("=IiQ")  # fuse_out_header
_ATTR = struct.Struct("=QQQQQQIIIIIIIIII")  # fuse_attr (88 bytes)
LOOKUP, GETATTR, OPEN, READ, RELEASE, FLUSH, INIT, DESTROY, INTERRUPT = (
    1,
    3,
    14,
    15,
    18,
    25,
    26,
    38,
    36,
)
ROOT_ID, FILE_ID = 1, 2


def _attr(node: int, size: int) -> bytes:
    mode = (stat.S_IFDIR | 0o755) if node == ROOT_ID else (stat.S_IFREG | 0o644)
    return _ATTR.pack(node, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0, mode, 1, 0, 0, 0, 4096, 0)


class HungFile:
    """Serve ``point/src`` (``size`` bytes) whose reads never return."""

    def __init__(self, point: Path, size: int) -> None:
        self.point, self.size = point, size
        self.reads = threading.Event()  # set once a read is pending
        self.pending: list[int] = []  # unique ids of the unanswered reads
        self.closing = False  # from then on reads fail (EIO) at once
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        opts = f"fd={self.fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
        if libc.mount(b"hungfuse", str(point).encode(), b"fuse.hungfuse", 0, opts) != 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, os.strerror(err), str(point))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, unique: int, body: bytes = b"", error: int = 0) -> None:
        os.write(self.fd, _OUT.pack(_OUT.size + len(body), -error, unique) + body)

    def _serve(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 20 | 4096)
            except OSError:
                return  # unmounted: the connection is gone
            _len, opcode, unique, node, *_ = _IN.unpack_from(data)
            arg = data[_IN.size :]
            if opcode == INIT:
                self._reply(unique, struct.pack("=IIIIHHI", 7, 12, 0, 0, 0, 0, 1 << 16))
            elif opcode == LOOKUP and arg.rstrip(b"\0") == b"src":
                valid = struct.pack("=QQQQII", FILE_ID, 0, 0, 0, 0, 0)
                self._reply(unique, valid + _attr(FILE_ID, self.size))
            elif opcode == GETATTR and node in (ROOT_ID, FILE_ID):
                self._reply(unique, struct.pack("=QII", 0, 0, 0) + _attr(node, self.size))
            elif opcode == OPEN:
                self._reply(unique, struct.pack("=QII", 0, 0, 0))
            elif opcode == READ and self.closing:
                self._reply(unique, error=errno.EIO)
            elif opcode == READ:
                self.pending.append(unique)  # not answered until close()
                self.reads.set()
            elif opcode in (RELEASE, FLUSH):
                self._reply(unique)
            elif opcode == INTERRUPT:  # no reply to it; the interrupted read fails
                (target,) = struct.unpack_from("=Q", arg)
                if target in self.pending:
                    self.pending.remove(target)
                    self._reply(target, error=errno.EINTR)
            elif opcode == DESTROY:
                continue
            else:
                self._reply(unique, error=errno.ENOENT if opcode == LOOKUP else errno.ENOSYS)

    def close(self) -> None:
        """Fail the pending reads (EIO), unmount, and end the connection."""
        self.closing = True
        for unique in self.pending:
            with contextlib.suppress(OSError):
                self._reply(unique, error=errno.EIO)
        subprocess.run(["umount", "-l", str(self.point)], check=False)
        self.thread.join(timeout=10)  # ends once the last user of the mount is gone
        if not self.thread.is_alive():  # else its read still uses the number: leave it
            os.close(self.fd)


@contextlib.contextmanager
def hung_file(point: Path, size: int) -> Iterator[HungFile]:
    """A :class:`HungFile` at ``point`` for the block's duration."""
    point.mkdir(exist_ok=True)
    served = HungFile(point, size)
    try:
        yield served
    finally:
        served.close()
