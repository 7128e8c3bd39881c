"""The LUKS layer: ``cryptsetup open --key-file KEY DEVICE NAME``.

The key file must be owned by root and unreadable by group and others, as
anyone who can read it can decrypt the backups. A wrong key is a clear error
(cryptsetup never prompts: its stdin is /dev/null and a timeout applies).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from coldvault.config.model import LuksConfig
from coldvault.disk.layers import QUICK_TIMEOUT, SLOW_TIMEOUT, LayerStatus, settle
from coldvault.errors import CommandError, DiskError
from coldvault.system import proc
from coldvault.system.cancel import CancelToken
from coldvault.system.secretfile import opened_secret

log = logging.getLogger("coldvault.disk.luks")

MAPPER = Path("/dev/mapper")
# cryptsetup's exit code for "no key available with this passphrase".
_EXIT_WRONG_KEY = 2


@contextlib.contextmanager
def opened_key_file(key_file: Path) -> Iterator[Path]:
    """Open and check the key file; yield a path that reaches exactly the file checked.

    Only a regular file owned by root with mode 600 or stricter is accepted
    (:mod:`coldvault.system.secretfile`); cryptsetup reads it through the yielded path.
    """
    hint = "set disk.luks.key_file to the key that unlocks the backup disk"
    with opened_secret(key_file, "LUKS key file", DiskError, hint) as (_fd, reachable):
        yield reachable


def check_key_file(key_file: Path) -> None:
    """Raise DiskError unless ``key_file`` is a regular file owned by root, mode 600 or stricter."""
    with opened_key_file(key_file):
        pass


class LuksLayer:
    """Open (and later close) one LUKS mapping."""

    name = "luks"

    def __init__(
        self, config: LuksConfig, device: Path, *, cancel: CancelToken | None = None
    ) -> None:
        self.config = config
        self.source = device  # the encrypted block device
        self.cancel = cancel or CancelToken()
        self.opened_by_us = False

    @property
    def device(self) -> Path:
        """The decrypted mapping the next layer uses."""
        return MAPPER / self.config.name

    def is_open(self) -> bool:
        """Whether the mapping exists."""
        return os.path.exists(self.device)

    def open(self) -> None:
        """Check the key file, then open the mapping (no-op when it is open)."""
        if self.is_open():
            return
        with opened_key_file(self.config.key_file) as key:
            if not os.path.exists(self.source):
                raise DiskError(f"encrypted device {self.source} does not exist")
            self._open_with(key)
        settle(self.cancel)

    def _open_with(self, key: Path) -> None:
        argv: list[str | Path] = [
            "cryptsetup",
            "open",
            "--type",
            "luks",
            "--key-file",
            key,
            self.source,
            self.config.name,
        ]
        log.info("opening LUKS device %s as %s", self.source, self.config.name)
        # Ours from here on: if the command is cancelled half-way, teardown checks is_open().
        self.opened_by_us = True
        try:
            proc.run(argv, timeout=SLOW_TIMEOUT, cancel=self.cancel)
        except CommandError as exc:
            if exc.returncode == _EXIT_WRONG_KEY:
                raise DiskError(
                    f"the key file {self.config.key_file} does not unlock {self.source}",
                    hint="is this the right disk and the right key file?",
                ) from exc
            raise DiskError(
                f"could not open LUKS device {self.source}: {exc.message}",
                hint=f"check `cryptsetup luksDump {self.source}`",
            ) from exc

    def close(self) -> None:
        """Close the mapping."""
        if not self.is_open():
            return
        try:
            proc.run(
                ["cryptsetup", "close", self.config.name],
                timeout=QUICK_TIMEOUT,  # no cancel: teardown runs after a stop request too
            )
        except CommandError as exc:
            raise DiskError(
                f"could not close LUKS mapping {self.config.name}: {exc.message}",
                hint="something still uses it: `lsblk` shows what sits on top",
            ) from exc

    def status(self) -> LayerStatus:
        """Present/open."""
        return LayerStatus(
            self.name,
            str(self.device),
            present=os.path.exists(self.source),
            open=self.is_open(),
            detail={"source": str(self.source)},
        )
