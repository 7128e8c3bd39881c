"""Read ``config.yaml`` into the frozen dataclasses of :mod:`coldvault.config.model`.

This is the only place that validates. Every problem becomes one line
``FILE:LINE:COL: key.path: found ..., expected ...``; all of them (up to
:data:`MAX_ERRORS`) are reported together in one :class:`ConfigError`.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import time, timedelta
from pathlib import Path
from typing import Any, TypeVar

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coldvault.config.durations import parse_duration, parse_time_of_day
from coldvault.config.model import (
    JOB_CLASSES,
    JOB_TYPES,
    Argv,
    BtrfsJob,
    Config,
    DiskConfig,
    ImageJob,
    Job,
    Key,
    Settings,
    SourceRef,
    TokenConfig,
    default_of,
    key_of,
    yaml_keys,
)
from coldvault.config.sizes import SIZE_FORMS, format_size, parse_size
from coldvault.config.suggest import did_you_mean
from coldvault.config.yamlnodes import (
    SyntaxProblem,
    Where,
    compose,
    describe,
    is_merge_key,
    is_null,
    plain_type,
    position_of,
    where,
)
from coldvault.errors import ConfigError

T = TypeVar("T")
MAX_ERRORS = 20
MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few KiB; refuse to parse a disk image
# Keys and list items read, each use of an alias counted again: bounds the work a
# file of merges and aliases (a "billion laughs") can ask for. As many as the file
# may hold values (yamlnodes.MAX_NODES): only aliases can ask for more.
MAX_WORK = 50_000
MAX_SUGGESTIONS = 200  # "did you mean" for the first problems only: shown are 20
MAX_COUNT = 100_000  # snapshots and retention counts
MAX_POLL_SECONDS = 86400.0
MAX_SIZE = 1 << 60  # 1 EiB: no key takes more
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TYPED = ("int", "float", "bool")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.<-]{1,40}")

JOB_NAME = re.compile(r"[A-Za-z0-9._-]+")
SOURCE_KINDS = ("uuid", "partuuid", "label")
_MD_UUID = re.compile(r"[0-9a-fA-F]{32}")
_TRUE = ("true", "True", "TRUE")
_FALSE = ("false", "False", "FALSE")
_YAML11_BOOLS = ("yes", "no", "on", "off", "y", "n")
_INT = re.compile(r"[-+]?\d+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")

DEFAULT_HINT = "`coldvault config example` prints a commented configuration with every key"


class Invalid(Exception):
    """One bad value; ``node`` narrows the position when it is not the value itself."""

    def __init__(self, message: str, node: Node | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.hint = hint


@dataclass
class Problems:
    """The errors found so far, each already formatted as one line."""

    source: str
    found: list[tuple[int, int, int, str, str | None]] = field(default_factory=list)
    lines: set[str] = field(default_factory=set)

    def add(
        self, at: Where, path: str, message: str, hint: str | None = None, first: bool = False
    ) -> None:
        """Record one error at ``at`` about the key ``path`` (once, however often found).

        ``first``: shown before the others (the cause that stopped reading).
        """
        prefix = f"{path}: " if path else ""
        line = f"{self.source}:{at.line}:{at.column}: {prefix}{message}"
        if line not in self.lines:
            self.lines.add(line)
            self.found.append((0 if first else 1, at.line, at.column, line, hint))

    def __bool__(self) -> bool:
        return bool(self.found)

    def error(self) -> ConfigError:
        """One ConfigError listing every recorded problem in file order."""
        ordered = sorted(self.found, key=lambda f: f[:3])
        shown = [f[3] for f in ordered[:MAX_ERRORS]]
        if len(ordered) > MAX_ERRORS:
            shown.append(f"{self.source}: ... and {len(ordered) - MAX_ERRORS} more errors")
        hints = [f[4] for f in ordered if f[4]]
        return ConfigError("\n".join(shown), hint=hints[0] if hints else DEFAULT_HINT)


class Section:
    """A YAML mapping being read: its keys, checked for duplicates and typos."""

    def __init__(self, reader: Reader, node: MappingNode, path: str) -> None:
        self.reader, self.node, self.path = reader, node, path
        self.items: dict[str, tuple[Node, Node]] = {}
        merged: set[str] = set()  # keys from `<<:` merges, which explicit keys override
        for key_node, value_node, from_merge in self.pairs(node):
            if not isinstance(key_node, ScalarNode):
                reader.problem(
                    key_node, path, f"found {describe(key_node)} as a key, expected a name"
                )
                continue
            key = str(key_node.value)
            if key in self.items:
                if from_merge:
                    continue
                if key in merged:
                    merged.discard(key)
                    self.items[key] = (key_node, value_node)
                    continue
                first = where(self.items[key][0])
                reader.problem(
                    key_node,
                    self.sub(key),
                    f"duplicate key (first given on line {first.line}), expected each key once",
                )
                continue
            if from_merge:
                merged.add(key)
            self.items[key] = (key_node, value_node)

    def pairs(self, node: MappingNode) -> Iterator[tuple[Node, Node, bool]]:
        """Key/value pairs of a mapping, ``<<: *anchor`` merges expanded (flagged True).

        Depth first without recursion (merge chains can be long); a mapping merged
        twice is read once (its keys would all lose to the first time), and a
        mapping merged into itself is an error.
        """
        seen = {id(node)}
        reading = [id(node)]  # the mapping of each level of `stack`
        open_ = {id(node)}
        stack: list[Iterator[MappingNode | tuple[Node, Node]]] = [iter(node.value)]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                open_.discard(reading.pop())
            elif isinstance(item, MappingNode):  # a merge source, read before the next pair
                if id(item) in open_:
                    self.reader.problem(
                        item,
                        self.sub("<<"),
                        "found a merge of a mapping into itself, expected another mapping",
                    )
                elif id(item) not in seen:
                    seen.add(id(item))
                    reading.append(id(item))
                    open_.add(id(item))
                    stack.append(iter(item.value))
            else:
                key_node, value_node = item
                self.reader.spend(key_node)
                if is_merge_key(key_node):
                    stack[-1] = itertools.chain(self.merge_sources(value_node), stack[-1])
                else:
                    yield key_node, value_node, len(stack) > 1

    def merge_sources(self, node: Node) -> list[MappingNode]:
        """The mappings a ``<<:`` value names; anything else is reported."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        found: list[MappingNode] = []
        for item in items:
            self.reader.spend(item)
            if isinstance(item, MappingNode):
                found.append(item)
            else:
                self.reader.problem(
                    item,
                    self.sub("<<"),
                    f"found {describe(item)}, expected a mapping to merge "
                    "(an alias such as *defaults, or a list of them)",
                )
        return found

    def sub(self, key: str) -> str:
        """The key path of ``key`` inside this section (an odd key quoted, on one line)."""
        if not _PLAIN_KEY.fullmatch(key):
            key = repr(key if len(key) <= 40 else key[:37] + "...")
        return f"{self.path}.{key}" if self.path else key

    def check_unknown(
        self, allowed: Sequence[str], explain: Callable[[str], str] | None = None
    ) -> None:
        """Report every key not in ``allowed``, with a suggestion (or ``explain(key)``)."""
        known = set(allowed)
        listed = ", ".join(allowed)
        for key, (key_node, _) in self.items.items():
            if key not in known:
                extra = explain(key) if explain is not None else ""
                self.reader.problem(
                    key_node,
                    self.sub(key),
                    f"unknown key{self.reader.suggest(key, allowed) or extra}, "
                    f"expected one of: {listed}",
                )

    def value(self, key: str) -> Node | None:
        """The value node of ``key``, None when absent or null."""
        item = self.items.get(key)
        if item is None or is_null(item[1]):
            return None
        return item[1]

    def get(self, key: str, convert: Callable[[Node, str], T], default: T) -> T:
        """``key`` converted, or ``default`` when absent, null or invalid (recorded)."""
        node = self.value(key)
        if node is None:
            return default
        return self.reader.convert(node, self.sub(key), convert, default)

    def require(self, key: str, convert: Callable[[Node, str], T]) -> T | None:
        """``key`` converted; a missing key is an error (returns None)."""
        node = self.value(key)
        if node is None:
            if key in self.items:
                message = "found nothing (null), expected a value (this key is required)"
                self.reader.problem(self.items[key][1], self.sub(key), message)
            else:
                self.reader.problem(self.node, self.sub(key), "missing, this key is required")
            return None
        return self.reader.convert(node, self.sub(key), convert, None)


class TooMuchWork(Exception):
    """The file asks for more than :data:`MAX_WORK` keys and items: reading stops."""

    def __init__(self, node: Node) -> None:
        super().__init__("too much work")
        self.node = node


class Reader:
    """Turns the node graph into model objects, collecting every problem."""

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

    def converter(self, spec: Key) -> Callable[[Node, str], Any]:
        """The converter a schema :class:`Key` names."""
        if spec.convert == "section" and spec.section is not None:
            cls = spec.section
            return lambda node, path: _section(self, cls, node, path)
        if spec.convert == "choice":
            return self.choice(spec.choices)
        if spec.convert == "size" and spec.limit is not None:
            return self.size_up_to(spec.limit)
        simple: dict[str, Callable[[Node, str], Any]] = {
            "absolute_path": self.absolute_path,
            "absolute_paths": self.list_of(self.absolute_path),
            "boolean": self.boolean,
            "count": self.integer,
            "duration": self.duration,
            "duration_or_never": self.duration_or_never,
            "file_not_folder": self.file_not_folder,
            "file_path": self.file_path,
            "hooks": self.hooks,
            "key_file": self.key_file,
            "md_uuid": self.md_uuid,
            "mount_options": self.mount_options,
            "name": self.name,
            "plain_text": self.plain_text,
            "relative_folder": self.relative_folder,
            "seconds": self.seconds,
            "size": self.size,
            "source": self.source,
            "times": self.list_of(self.time_of_day),
        }
        return simple[spec.convert]

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


# -- the generic builder --------------------------------------------------------


class Reported(Exception):
    """A value whose problems are already recorded: the key takes its default."""


def _build(
    reader: Reader,
    cls: type[T],
    sec: Section,
    given: dict[str, Any] | None = None,
    only: tuple[str, ...] | None = None,
) -> T | None:
    """``cls`` from the keys of ``sec``, each read as its field's :class:`Key` says.

    ``given``: fields already known; ``only``: the fields to read (a flat
    sub-section). None when a required key is missing or invalid (recorded).
    """
    values: dict[str, Any] = dict(given or {})
    complete = True
    for f in fields(cls):  # type: ignore[arg-type]
        spec = key_of(f)
        if spec is None or f.name in values or (only is not None and f.name not in only):
            continue
        if spec.flat is not None and spec.section is not None:
            values[f.name] = _build(reader, spec.section, sec, only=spec.flat)
            continue
        convert = reader.converter(spec)
        if spec.required:
            value = sec.require(f.name, convert)
            complete = complete and value is not None
        else:
            default = values.get(spec.default_from) if spec.default_from else default_of(f)
            value = sec.get(f.name, convert, default)
        values[f.name] = value
    return cls(**values) if complete else None


def _section(reader: Reader, cls: type[T], node: Node, path: str) -> T:
    """A mapping read into ``cls``; its unknown keys are reported."""
    if not isinstance(node, MappingNode):
        raise Invalid(f"found {describe(node)}, expected a mapping of {path} keys")
    sec = Section(reader, node, path)
    sec.check_unknown(yaml_keys(cls))
    built = _build(reader, cls, sec)
    if built is None:
        raise Reported()
    return built


def _job(reader: Reader, node: Node, path: str) -> Job | None:
    if not isinstance(node, MappingNode):
        reader.problem(
            node, path, f"found {describe(node)}, expected a job (a mapping with name and type)"
        )
        return None
    sec = Section(reader, node, path)
    kind = sec.require("type", reader.choice(JOB_TYPES))
    if kind is None:
        sec.require("name", reader.name)
        sec.check_unknown(
            tuple(dict.fromkeys(k for c in JOB_CLASSES.values() for k in yaml_keys(c)))
        )
        return None
    cls = JOB_CLASSES[kind]
    own = yaml_keys(cls)
    others = {k: t for t, c in JOB_CLASSES.items() for k in yaml_keys(c) if k not in own}

    def explain(key: str) -> str:
        return f" (`{key}` belongs to {others[key]} jobs)" if key in others else ""

    sec.check_unknown(own, explain)
    job = _build(reader, cls, sec, given={"type": kind})
    if isinstance(job, ImageJob):
        return job if _image_sizes_fit(reader, sec, job) else None
    if isinstance(job, BtrfsJob):
        return job if _btrfs_sources_fit(reader, sec, job) else None
    return None


def _image_sizes_fit(reader: Reader, sec: Section, job: ImageJob) -> bool:
    if job.block_size % 512:
        reader.problem(
            sec.value("block_size") or sec.node,
            sec.sub("block_size"),
            f"found {job.block_size} bytes, expected a multiple of 512 (device sector size)",
        )
        return False
    if job.part_size % job.block_size:
        reader.problem(
            sec.value("part_size") or sec.node,
            sec.sub("part_size"),
            f"found {job.part_size} bytes, expected a multiple of block_size "
            f"({job.block_size} bytes)",
        )
        return False
    return True


def _btrfs_sources_fit(reader: Reader, sec: Section, job: BtrfsJob) -> bool:
    node = sec.value("sources") or sec.node
    if isinstance(node, SequenceNode) and not node.value:
        reader.problem(
            node, sec.sub("sources"), "found an empty list, expected at least one subvolume path"
        )
        return False
    if not job.sources:  # every one invalid, each reported
        return False
    return _distinct_source_names(reader, job.sources, node, sec.sub("sources"))


def _distinct_source_names(
    reader: Reader, sources: tuple[Path, ...], node: Node, path: str
) -> bool:
    """Each source is stored in a folder named after its last component: no sharing."""
    from coldvault.jobs.btrfs.snapshots import source_name

    items = node.value if isinstance(node, SequenceNode) else [node]
    if len(items) != len(sources):  # some were invalid (reported): positions unknown
        return False
    seen: dict[str, Path] = {}
    fits = True
    for i, (source, item) in enumerate(zip(sources, items, strict=True)):
        folder = source_name(source)
        if folder in seen:
            reader.problem(
                item,
                f"{path}[{i}]",
                f"found {str(source)!r}, stored in the folder {folder!r} like "
                f"{str(seen[folder])!r}; expected sources whose last names differ",
                hint="split them into two jobs, or back up their common parent subvolume",
            )
            fits = False
        seen.setdefault(folder, source)
    return fits


def _raw_name(node: Node) -> str | None:
    """The ``name:`` written in a job mapping, valid or not (for duplicate checks)."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            named = isinstance(key, ScalarNode) and key.value == "name"
            if named and isinstance(value, ScalarNode) and not is_null(value):
                return str(value.value)
    return None


def _jobs(reader: Reader, sec: Section, disk: DiskConfig) -> tuple[Job, ...]:
    node = sec.value("jobs")
    if node is None:
        at = sec.items["jobs"][1] if "jobs" in sec.items else sec.node
        reader.problem(at, "jobs", "missing, expected a list with at least one job")
        return ()
    if not isinstance(node, SequenceNode) or not node.value:
        reader.problem(
            node, "jobs", f"found {describe(node)}, expected a list with at least one job"
        )
        return ()
    jobs: list[Job] = []
    names: dict[str, int] = {}
    folders = _Folders(reader, disk)
    for i, item in enumerate(node.value):
        reader.spend(item)
        path = f"jobs[{i}]"
        job = _job(reader, item, path)
        name = _raw_name(item)
        if name is not None and name in names:
            reader.problem(
                item,
                f"{path}.name",
                f"found {name!r} again (also jobs[{names[name]}]), expected unique job names",
            )
            continue
        if name is not None:
            names[name] = i
        if job is not None and folders.claim(job, item, f"{path}.target"):
            jobs.append(job)
    return tuple(jobs)


class _Folders:
    """The job folders claimed so far: none may equal, contain or lie inside another.

    A job's retention deletes ``snapshot-*`` folders in its own folder: a job
    inside another's folder would lose its backups to it.
    """

    def __init__(self, reader: Reader, disk: DiskConfig) -> None:
        self.reader = reader
        self.owner: dict[tuple[str, ...], str] = {}  # a job folder -> its job
        self.above: dict[tuple[str, ...], str] = {}  # every folder above one -> a job
        token = disk.token.file if disk.token is not None else TokenConfig.file
        self.reserved = {Path(name).parts for name in {token, TokenConfig.file}}

    def claim(self, job: Job, item: Node, path: str) -> bool:
        """Record ``job``'s folder; False (and a problem) when it overlaps another."""
        parts = Path(job.target).parts
        clash = self.clash(parts)
        if clash is not None:
            self.reader.problem(
                item,
                path,
                f"found {job.target!r}, {clash}; expected each job to have its own target folder",
            )
            return False
        self.owner[parts] = job.name
        for i in range(1, len(parts)):
            self.above.setdefault(parts[:i], job.name)
        return True

    def clash(self, parts: tuple[str, ...]) -> str | None:
        for name in self.reserved:
            if parts[: len(name)] == name or name[: len(parts)] == parts:
                return f"which is or holds the disk's token file {'/'.join(name)!r}"
        if parts in self.owner:
            return f"already the folder of job {self.owner[parts]!r}"
        for i in range(1, len(parts)):
            if parts[:i] in self.owner:
                other = self.owner[parts[:i]]
                return f"inside the folder {'/'.join(parts[:i])!r} of job {other!r}"
        if parts in self.above:
            return f"which holds the folder of job {self.above[parts]!r}"
        return None


# -- entry points ---------------------------------------------------------------


def load_text(text: str, source_name: str, base_dir: Path) -> Config:
    """Validate ``text`` (read from ``source_name``) into a :class:`Config`.

    Relative paths in it are resolved against ``base_dir``. Raises ConfigError
    listing every problem found.
    """
    reader = Reader(source_name, base_dir)
    try:
        root = compose(text)
    except SyntaxProblem as exc:
        reader.problems.add(exc.where, "", exc.message, exc.hint)
        raise reader.problems.error() from None
    if root is None:
        reader.problems.add(
            Where(1, 1), "", "the file is empty, expected a mapping with disk: and jobs: keys"
        )
        raise reader.problems.error()
    if not isinstance(root, MappingNode):
        reader.problem(
            root, "", f"found {describe(root)}, expected a mapping with disk: and jobs: keys"
        )
        raise reader.problems.error()
    try:
        top = Section(reader, root, "")
        top.check_unknown(yaml_keys(Config))
        disk = top.get("disk", lambda n, p: _section(reader, DiskConfig, n, p), DiskConfig())
        settings = top.get("settings", lambda n, p: _section(reader, Settings, n, p), Settings())
        jobs = _jobs(reader, top, disk)
    except TooMuchWork as exc:
        reader.problems.add(
            where(exc.node),
            "",
            f"found more than {MAX_WORK} keys and list items (each use of an alias counted), "
            "expected a configuration of a few hundred",
            hint="anchors, aliases and `<<:` merges are expanded where they are used",
            first=True,
        )
        raise reader.problems.error() from None
    if reader.problems:
        raise reader.problems.error()
    path = None if source_name == "<stdin>" else Path(source_name)
    return Config(path=path, disk=disk, jobs=jobs, settings=settings)


def _decode(data: bytes, source_name: str) -> str:
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


def _read(path: Path) -> bytes:
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


def load(path: Path | str) -> Config:
    """Load and validate a configuration file; ``-`` reads standard input.

    Raises ConfigError (exit status 78) for anything wrong with the file.
    """
    if str(path) == "-":
        data = sys.stdin.buffer.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"<stdin>: larger than {MAX_CONFIG_BYTES >> 20} MiB, expected a small YAML file"
            )
        return load_text(_decode(data, "<stdin>"), "<stdin>", Path.cwd())
    file = Path(path)
    data = _read(file)
    absolute = file if file.is_absolute() else Path.cwd() / file
    config = load_text(_decode(data, str(file)), str(file), absolute.parent)
    return replace(config, path=absolute)
