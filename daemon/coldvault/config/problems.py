"""The problems found in a configuration file, each one line ``FILE:LINE:COL: ...``."""

from __future__ import annotations

from dataclasses import dataclass, field

from yaml.nodes import Node

from coldvault.config.yamlnodes import Where
from coldvault.errors import ConfigError

MAX_ERRORS = 20
DEFAULT_HINT = "`coldvault config example` prints a commented configuration with every key"


class Invalid(Exception):
    """One bad value; ``node`` narrows the position when it is not the value itself."""

    def __init__(self, message: str, node: Node | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.hint = hint


class Reported(Exception):
    """A value whose problems are already recorded: the key takes its default."""


class TooMuchWork(Exception):
    """The file asks for more keys and items than the reader allows: reading stops."""

    def __init__(self, node: Node) -> None:
        super().__init__("too much work")
        self.node = node


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
