"""Scalars and lists as the configuration writes them, converted and checked.

:class:`Reader` turns one YAML node into one value (a size, a duration, a path...),
raising :class:`~coldvault.config.problems.Invalid` with a message for the user,
and collects every problem of the file.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from datetime import time, timedelta
from pathlib import Path
from typing import TypeVar

from yaml.nodes import Node, ScalarNode, SequenceNode

from coldvault.config.durations import parse_duration, parse_time_of_day
from coldvault.config.model import NOTIFY_EVENTS, Argv, SourceRef
from coldvault.config.problems import Invalid, Problems, Reported, TooMuchWork
from coldvault.config.sizes import SIZE_FORMS, format_size, parse_size
from coldvault.config.suggest import did_you_mean
from coldvault.config.yamlnodes import describe, is_null, plain_type, where

T = TypeVar("T")
# Keys and list items read, each use of an alias counted again: bounds the work a
# file of merges and aliases (a "billion laughs") can ask for. As many as the file
# may hold values (yamlnodes.MAX_NODES): only aliases can ask for more.
MAX_WORK = 50_000
MAX_SUGGESTIONS = 200  # "did you mean" for the first problems only: shown are 20
MAX_COUNT = 100_000  # snapshots and retention counts
MAX_POLL_SECONDS = 86400.0
MAX_SIZE = 1 << 60  # 1 EiB: no key takes more
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# restic's repository prefixes (a repository without one is a local folder).
RESTIC_BACKENDS = ("azure", "b2", "gs", "rclone", "rest", "s3", "sftp", "swift")
_SUBSET_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
_SUBSET_FRACTION = re.compile(r"(\d+)/(\d+)")
_TYPED = ("int", "float", "bool")

JOB_NAME = re.compile(r"[A-Za-z0-9._-]+")
SOURCE_KINDS = ("uuid", "partuuid", "label")
_MD_UUID = re.compile(r"[0-9a-fA-F]{32}")
_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE")
_YAML11_BOOLS = ("yes", "no", "on", "off", "y", "n")
_INT = re.compile(r"[-+]?\d+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")


class Reader:
    """Converts single nodes into values, records every problem and counts the work done."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.problems = Problems(source)
        self.base_dir = base_dir
        self.work = 0

    def suggest(self, word: str, choices: Sequence[str]) -> str:
        """``did_you_mean``, while few problems are known (it is the slow part of many)."""
        if len(self.problems.found) > MAX_SUGGESTIONS:
            return ""
        return did_you_mean(word[:100], choices)

    def spend(self, node: Node) -> None:
        """Count one key or list item read; stop reading past :data:`MAX_WORK`."""
        self.work += 1
        if self.work > MAX_WORK:
            raise TooMuchWork(node)

    def problem(self, node: Node, path: str, message: str, hint: str | None = None) -> None:
        """Record an error at ``node``."""
        self.problems.add(where(node), path, message, hint)

    def convert(self, node: Node, path: str, convert: Callable[[Node, str], T], default: T) -> T:
        """``convert(node)``, recording Invalid and returning ``default`` instead."""
        try:
            return convert(node, path)
        except Invalid as exc:
            self.problem(exc.node or node, path, exc.message, exc.hint)
            return default
        except Reported:
            return default

    # -- scalar types -------------------------------------------------------

    def text(self, node: Node, path: str) -> str:
        """Any scalar, as written."""
        if not isinstance(node, ScalarNode):
            raise Invalid(f"found {describe(node)}, expected a single value")
        value = str(node.value)
        if not value.strip():
            raise Invalid("found an empty string, expected a value")
        return value

    def plain_text(self, node: Node, path: str) -> str:
        """A scalar without control characters (names, paths, options)."""
        value = self.text(node, path)
        bad = _CONTROL.search(value)
        if bad is not None:
            raise Invalid(
                f"found {describe(node)} with the control character "
                f"U+{ord(bad.group()):04X}, expected text without control characters"
            )
        return value

    def string(self, node: Node, path: str, expected: str) -> str:
        """A scalar YAML reads as a string: a plain number or boolean is refused."""
        if isinstance(node, ScalarNode) and node.style is None and plain_type(node) in _TYPED:
            raise Invalid(f"found {describe(node)}, expected {expected}")
        return self.text(node, path)

    def name(self, node: Node, path: str) -> str:
        """A name safe as a folder name."""
        value = self.text(node, path)
        if not JOB_NAME.fullmatch(value) or value in (".", ".."):
            raise Invalid(
                f"found {describe(node)}, expected a name of letters, digits, '.', '_' and '-' only"
            )
        return value

    def boolean(self, node: Node, path: str) -> bool:
        """``true`` or ``false`` (YAML 1.1's yes/no/on/off are refused as ambiguous)."""
        if isinstance(node, ScalarNode) and node.style is None:
            if node.value in _TRUE:
                return True
            if node.value in _FALSE:
                return False
        hint = None
        if isinstance(node, ScalarNode) and str(node.value).lower() in _YAML11_BOOLS:
            hint = "coldvault reads YAML 1.2 booleans: write true or false, not yes/no/on/off"
        raise Invalid(f"found {describe(node)}, expected true or false", hint=hint)

    def integer(self, node: Node, path: str) -> int:
        """A whole number that is not negative, at most :data:`MAX_COUNT`."""
        if isinstance(node, ScalarNode) and node.style is None and _INT.fullmatch(node.value):
            if node.value.startswith("-"):
                raise Invalid(f"found {describe(node)}, expected a number that is not negative")
            digits = node.value.lstrip("+").lstrip("0")
            if len(digits) > len(str(MAX_COUNT)) or int(digits or "0") > MAX_COUNT:
                raise Invalid(f"found {describe(node)}, expected a number up to {MAX_COUNT}")
            return int(digits or "0")
        raise Invalid(f"found {describe(node)}, expected a whole number such as 0, 4 or 30")

    def seconds(self, node: Node, path: str) -> float:
        """A positive number of seconds (``5``, ``0.5``) or a duration (``10s``)."""
        if isinstance(node, ScalarNode) and _NUMBER.fullmatch(node.value.strip()):
            value = float(node.value)
            if value <= 0:
                raise Invalid(f"found {describe(node)}, expected a number of seconds above zero")
        else:
            value = self.duration(node, path).total_seconds()
        if value > MAX_POLL_SECONDS:
            raise Invalid(
                f"found {describe(node)}, expected at most {MAX_POLL_SECONDS:.0f} seconds (1d)"
            )
        return value

    def size(self, node: Node, path: str) -> int:
        """A byte size above zero (see :mod:`coldvault.config.sizes`)."""
        value = self.text(node, path)
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise Invalid(str(exc), hint=f"sizes are {SIZE_FORMS}") from None
        if size <= 0:
            raise Invalid(f"found {describe(node)}, expected a size above zero")
        if size > MAX_SIZE:
            raise Invalid(f"found {describe(node)}, expected at most 1 EiB")
        return size

    def size_up_to(self, limit: int) -> Callable[[Node, str], int]:
        """A converter for a byte size above zero and at most ``limit``."""

        def convert(node: Node, path: str) -> int:
            size = self.size(node, path)
            if size > limit:
                raise Invalid(
                    f"found {describe(node)} ({size} bytes), expected at most "
                    f"{format_size(limit)} ({limit} bytes)"
                )
            return size

        return convert

    def duration(self, node: Node, path: str) -> timedelta:
        """``30s``, ``15m``, ``6h``, ``1d``, ``1w``, ``1h30m``."""
        value = self.text(node, path)
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    def duration_or_never(self, node: Node, path: str) -> timedelta | None:
        """A duration, or ``never`` (None)."""
        if isinstance(node, ScalarNode) and node.value == "never":
            return None
        return self.duration(node, path)

    def time_of_day(self, node: Node, path: str) -> time:
        """``HH:MM``."""
        try:
            return parse_time_of_day(self.text(node, path))
        except ValueError as exc:
            raise Invalid(str(exc), hint='quote times in YAML: at: ["03:00"]') from None

    def choice(self, options: Sequence[str]) -> Callable[[Node, str], str]:
        """A converter accepting one of ``options``."""

        def convert(node: Node, path: str) -> str:
            value = self.text(node, path)
            if value not in options:
                raise Invalid(
                    f"found {describe(node)}{self.suggest(value, options)}, expected one of: "
                    + ", ".join(options)
                )
            return value

        return convert

    def file_path(self, node: Node, path: str) -> Path:
        """A path; relative ones are taken from the configuration file's folder."""
        written = self.plain_text(node, path)
        try:
            value = Path(written).expanduser()
        except RuntimeError:  # ~user of an unknown user
            raise Invalid(f"found {describe(node)}, expected a path (no such user)") from None
        return value if value.is_absolute() else self.base_dir / value

    def file_not_folder(self, node: Node, path: str) -> Path:
        """A path coldvault writes a file at: it must not name an existing folder."""
        value = self.file_path(node, path)
        if _is_dir(value):
            raise Invalid(f"found {str(value)!r}, a folder, expected the path of a file in it")
        return value

    def absolute_path(self, node: Node, path: str) -> Path:
        """A path that must be written absolute (devices, mount points, sources)."""
        value = self.plain_text(node, path)
        if not value.startswith("/"):
            raise Invalid(f"found {describe(node)}, expected an absolute path starting with /")
        return Path(os.path.normpath(value))

    def relative_folder(self, node: Node, path: str) -> str:
        """A folder below the backup root: relative, no ``..``, not the root itself."""
        value = self.plain_text(node, path)
        parts = Path(value).parts
        if value.startswith("/") or ".." in parts:
            raise Invalid(
                f"found {describe(node)}, expected a folder relative to the backup root, "
                "without '..'"
            )
        if not parts:
            raise Invalid(
                f"found {describe(node)}, the backup root itself, expected a folder below it"
            )
        return str(Path(*parts))

    def key_file(self, node: Node, path: str) -> Path:
        """An existing regular file (the LUKS key)."""
        value = self.file_path(node, path)
        if not _exists(value):
            raise Invalid(
                f"found {str(value)!r}, expected an existing key file (it does not exist)",
                hint="create the key file or fix the path (relative paths start at the "
                "configuration file's folder)",
            )
        if not _is_file(value):
            raise Invalid(f"found {str(value)!r}, expected a regular file (it is not one)")
        return value

    def md_uuid(self, node: Node, path: str) -> str:
        """An md array UUID, normalized to mdadm's ``xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx``."""
        value = self.text(node, path)
        digits = re.sub(r"[:\-.]", "", value)
        if not _MD_UUID.fullmatch(digits):
            raise Invalid(
                f"found {describe(node)}, expected an array UUID of 32 hex digits as mdadm "
                "prints it "
                "(xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx)"
            )
        digits = digits.lower()
        return ":".join(digits[i : i + 8] for i in range(0, 32, 8))

    def source(self, node: Node, path: str) -> SourceRef:
        """An image source: ``/dev/sda2``, ``uuid:...``, ``partuuid:...`` or ``label:...``."""
        value = self.plain_text(node, path)
        kind, sep, rest = value.partition(":")
        if sep and kind in SOURCE_KINDS:
            if not rest.strip():
                raise Invalid(f"found {describe(node)}, expected a value after '{kind}:'")
            return SourceRef(kind, rest.strip())
        if sep and not value.startswith(("/", ".")) and re.fullmatch(r"[a-z]+", kind):
            raise Invalid(
                f"found {describe(node)}, expected a path or one of uuid:, partuuid:, label:"
                + self.suggest(kind, SOURCE_KINDS)
            )
        return SourceRef("path", str(self.file_path(node, path)))

    def secret_url(self, node: Node, path: str) -> str:
        """A URL that may carry a secret: no message ever repeats it."""
        if not isinstance(node, ScalarNode) or is_null(node):
            raise Invalid(f"found {describe(node)}, expected a URL")
        value = str(node.value).strip()
        if not _URL.fullmatch(value):
            raise Invalid(
                "found a value that is not a URL (not shown: it may hold a secret), "
                "expected scheme://host/..."
            )
        return value

    def ping_url(self, node: Node, path: str) -> str:
        """An http:// or https:// URL (a secret)."""
        value = self.secret_url(node, path)
        if not value.lower().startswith(("http://", "https://")):
            raise Invalid(
                "found a URL that is not http:// or https:// (not shown: it may hold a secret), "
                "expected a healthchecks.io or Uptime Kuma push URL"
            )
        return value

    def apprise_url(self, node: Node, path: str) -> str:
        """An Apprise URL (a secret); the scheme is checked when sending."""
        return self.secret_url(node, path)

    def restic_repository(self, node: Node, path: str) -> str:
        """A restic repository string (a secret): a backend prefix, or an absolute folder."""
        if not isinstance(node, ScalarNode) or is_null(node) or not str(node.value).strip():
            raise Invalid(f"found {describe(node)}, expected a restic repository string")
        value = str(node.value).strip()
        if _CONTROL.search(value):
            raise Invalid(
                "found a repository with a control character (not shown: it may hold a secret)"
            )
        prefix, sep, _rest = value.partition(":")
        if value.startswith("/") or (sep and prefix in RESTIC_BACKENDS):
            return value
        raise Invalid(
            "found a repository that is neither an absolute folder nor "
            f"{', '.join(p + ':' for p in RESTIC_BACKENDS)} (not shown: it may hold a secret)",
            hint="for example sftp:user@host:/srv/restic or rest:https://host:8000/repo",
        )

    def data_subset(self, node: Node, path: str) -> str | None:
        """``restic check --read-data-subset``: ``N%`` (0 < N <= 100) or ``n/t`` (1 <= n <= t)."""
        if is_null(node):
            return None
        value = self.plain_text(node, path).strip()
        percent = _SUBSET_PERCENT.fullmatch(value)
        fraction = _SUBSET_FRACTION.fullmatch(value)
        if percent and 0 < float(percent[1]) <= 100:
            return value
        if fraction and 1 <= int(fraction[1]) <= int(fraction[2]):
            return value
        raise Invalid(
            f"found {describe(node)}, expected a share of the data such as 5% or 1/10, or null"
        )

    def notify_events(self, node: Node, path: str) -> tuple[str, ...]:
        """A list of notification event names."""
        return self.list_of(self.choice(NOTIFY_EVENTS))(node, path)

    # -- lists --------------------------------------------------------------

    def items(self, node: Node, path: str) -> Iterator[tuple[Node, str]]:
        """A list (or one scalar standing for a list of one), with element paths."""
        if not isinstance(node, SequenceNode):
            yield node, path
            return
        for i, item in enumerate(node.value):
            self.spend(item)
            yield item, f"{path}[{i}]"

    def list_of(self, convert: Callable[[Node, str], T]) -> Callable[[Node, str], tuple[T, ...]]:
        """A converter for a list of ``convert`` values (one value is accepted too)."""

        def convert_all(node: Node, path: str) -> tuple[T, ...]:
            out: list[T] = []
            for item, item_path in self.items(node, path):
                try:
                    out.append(convert(item, item_path))
                except Invalid as exc:
                    self.problem(exc.node or item, item_path, exc.message, exc.hint)
            return tuple(out)

        return convert_all

    def mount_options(self, node: Node, path: str) -> tuple[str, ...]:
        """``[noatime, compress=zstd]`` or ``"noatime,compress=zstd"``."""
        if isinstance(node, ScalarNode):
            self.string(node, path, "mount options such as noatime or [noatime, compress=zstd]")
            return tuple(o.strip() for o in self.plain_text(node, path).split(",") if o.strip())
        return self.list_of(self.plain_text)(node, path)

    def hooks(self, node: Node, path: str) -> tuple[Argv, ...]:
        """One command (a string or an argv list) or a list of commands."""
        if isinstance(node, SequenceNode) and any(
            not isinstance(item, ScalarNode) for item in node.value
        ):
            return tuple(self.command(item, p) for item, p in self.items(node, path))
        return (self.command(node, path),)

    def command(self, node: Node, path: str) -> Argv:
        """A string split like a shell would (never run by one), or an argv list."""
        if isinstance(node, ScalarNode):
            text = self.string(node, path, "a command (a string or a list)")
            try:
                argv = tuple(shlex.split(text))
            except ValueError as exc:
                raise Invalid(f"found {describe(node)}: {exc}, expected a command line") from None
        elif isinstance(node, SequenceNode):
            argv = tuple(self.text(item, p) for item, p in self.items(node, path))
        else:
            raise Invalid(f"found {describe(node)}, expected a command (a string or a list)")
        if not argv:
            raise Invalid(f"found {describe(node)}, expected a command with a program to run")
        if any("\x00" in arg for arg in argv):
            raise Invalid(f"found {describe(node)} with a NUL byte, expected a command line")
        return argv


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except (OSError, ValueError):
        return False
    return True


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
