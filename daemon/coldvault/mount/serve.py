"""The FUSE server process: ``python -m coldvault.mount.serve`` (started by ``coldvault mount``).

It outlives the ``coldvault mount`` command. It reads its instructions as JSON on
standard input, inherits two descriptors (the snapshot folder, opened beneath the
backup root, and the coldvault lock file, already locked), writes its own pid into
the lock file, mounts the image file system and answers ``ready`` (or ``error: …``)
on standard output. It holds the lock for its whole life: while it runs, neither the
daemon nor another command uses or closes the backup disk. SIGTERM or SIGINT
unmounts and ends it; its log lines (parts that failed their check) go to
standard error, which ``coldvault mount`` points at a log file.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import pyfuse3
import trio

from coldvault.mount.fusefs import ImageFS
from coldvault.mount.image import VirtualImage
from coldvault.mount.spec import ServeSpec
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.mount")


def claim_lock(fd: int, purpose: str) -> None:
    """Name this process as the lock's holder (the parent's flock is shared with us)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} ({purpose})\n".encode() if purpose else b"%d\n" % os.getpid(), 0)


async def _serve() -> None:
    async with trio.open_nursery() as nursery:

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("%s received: unmounting", signal.Signals(signum).name)
                    pyfuse3.terminate()
                    return

        nursery.start_soon(stop_on_signal)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def _answer(text: str) -> None:
    """Tell the parent how the start went, then let go of the pipe."""
    with open(1, "w", closefd=False) as out:
        out.write(text + "\n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def serve(spec: ServeSpec) -> int:
    """Mount, answer ``ready``, serve until told to stop; return the exit status."""
    claim_lock(spec.lock_fd, spec.purpose)
    image = VirtualImage(SafeDir(spec.folder_fd, spec.folder_path), spec.table)
    options = set(pyfuse3.default_options) | {"ro", "fsname=coldvault", "subtype=coldvault"}
    fs = ImageFS(image, spec.name)
    try:
        pyfuse3.init(fs, str(spec.fuse_dir), options)
    except Exception as exc:
        _answer(f"error: cannot mount the image at {spec.fuse_dir}: {exc}")
        image.close()
        return 1
    _answer("ready")
    log.info("serving %s at %s/%s", spec.folder_path, spec.fuse_dir, spec.name)
    unmount = True
    try:
        trio.run(_serve)
    except BaseException:
        log.exception("the FUSE loop failed")
        raise
    finally:
        pyfuse3.close(unmount=unmount)
        image.close()
    log.info("unmounted %s after %d reads of %d bytes", spec.fuse_dir, fs.reads, fs.bytes_read)
    return 0


def main() -> int:
    """Entry point of the server process."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s coldvault-mount[%(process)d]: %(message)s"
    )
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal of `coldvault mount` may close
    try:
        spec = ServeSpec.from_json(sys.stdin.read())
    except (ValueError, KeyError, TypeError) as exc:
        _answer(f"error: bad instructions: {exc}")
        return 2
    return serve(spec)


if __name__ == "__main__":
    sys.exit(main())
