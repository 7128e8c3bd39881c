"""Real block devices in use for the "is this device in use" tests: loop devices,
mounts in this namespace, and a mount held alive only inside another mount namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import require_programs, require_root


def sh(*argv: str | Path) -> str:
    """Run a test-setup command and return its stdout."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, check=True, timeout=120)
    return done.stdout.decode()


def in_mountinfo(point: Path) -> bool:
    """Whether ``point`` is a mount point in this process's namespace."""
    return f" {point} " in Path("/proc/self/mountinfo").read_text()


@contextlib.contextmanager
def loop_with(folder: Path, fstype: str, size: str = "128M") -> Iterator[Path]:
    """A loop device over a fresh image holding ``fstype``; unmounted and detached after."""
    require_root()
    require_programs("losetup", f"mkfs.{fstype}", "mount", "umount", "unshare")
    image = folder / f"{fstype}.img"
    sh("truncate", "-s", size, image)
    sh(f"mkfs.{fstype}", "-q", image)
    dev = Path(sh("losetup", "--find", "--show", image).strip())
    try:
        yield dev
    finally:
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            right = line.partition(" - ")[2].split()
            if len(right) > 1 and right[1] == str(dev):
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        subprocess.run(["losetup", "-d", str(dev)], check=False)


@contextlib.contextmanager
def mounted(dev: Path, point: Path, *options: str) -> Iterator[Path]:
    """``dev`` mounted at ``point`` in this namespace for the block's duration."""
    point.mkdir(exist_ok=True)
    sh("mount", *(["-o", ",".join(options)] if options else []), dev, point)
    try:
        yield point
    finally:
        while in_mountinfo(point):
            subprocess.run(["umount", "-l", str(point)], check=False)


@contextlib.contextmanager
def mounted_elsewhere(dev: Path, point: Path) -> Iterator[int]:
    """``dev`` mounted at ``point`` only inside a private mount namespace of a live process.

    The process (``unshare -m`` then ``sleep``, one PID through the execs) holds the
    namespace and so the mount; this process's mountinfo never shows it. Yields its PID.
    """
    point.mkdir(exist_ok=True)
    script = 'mount "$1" "$2" && echo ready && exec sleep 600'
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", dev, point],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line == b"ready\n", holder.stderr.read() if holder.stderr else line
        assert not in_mountinfo(point)
        yield holder.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
