"""The configuration file's bytes: read without blocking, bounded, decoded as UTF-8."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from coldvault.config.yamlnodes import position_of
from coldvault.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few KiB; refuse to parse a disk image


def decode(data: bytes, source_name: str) -> str:
    """``data`` as UTF-8 text; ConfigError naming the position of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode("utf-8", "replace")
        at = position_of(prefix, len(prefix))
        raise ConfigError(
            f"{source_name}:{at.line}:{at.column}: found the byte 0x{data[exc.start]:02x}, "
            "expected UTF-8 text (is this a binary file?)",
            hint="a configuration is a YAML text file",
        ) from None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _not_regular(where_: str, kind: str, path: Path) -> ConfigError:
    hint = "point --config at the YAML file"
    if kind.startswith("a FIFO"):
        hint = "to read a configuration from a pipe, give '-' (standard input)"
    elif kind == "a directory":
        hint = f"point --config at the file, for example {path / 'config.yaml'}"
    return ConfigError(f"{where_}: is {kind}, expected a YAML configuration file", hint=hint)


def read_file(path: Path) -> bytes:
    """The file's bytes; never blocks on a FIFO or device (refused before reading)."""
    where_ = str(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"{where_}: no such file, expected a YAML configuration file",
            hint=f"write one with `coldvault config example > {where_}` and edit it",
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{where_}: permission denied, expected a readable configuration file",
            hint="run as root, or make the file readable by this user",
        ) from None
    except OSError as exc:
        kind = _kind_by_name(path)
        if kind is not None:  # a socket cannot be opened at all (ENXIO)
            raise _not_regular(where_, kind, path) from None
        raise ConfigError(f"{where_}: cannot read: {exc.strerror or exc}") from None
    kind = _kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise _not_regular(where_, kind, path)
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{where_}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{where_}: larger than {MAX_CONFIG_BYTES >> 20} MiB, expected a small YAML file",
            hint="is --config pointing at the right file?",
        )
    return data


def _kind_by_name(path: Path) -> str | None:
    try:
        return _kind(path.stat().st_mode)
    except (OSError, ValueError):
        return None


def read_stdin() -> bytes:
    """Standard input, at most :data:`MAX_CONFIG_BYTES`."""
    data = sys.stdin.buffer.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"<stdin>: larger than {MAX_CONFIG_BYTES >> 20} MiB, expected a small YAML file"
        )
    return data
