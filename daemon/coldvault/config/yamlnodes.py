"""YAML as a node graph with positions, so every error can name its line and column.

We compose (never construct) with the safe loader and type the scalars
ourselves: YAML 1.1 would turn ``3:00`` into 180 and ``on`` into True.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_NULLS = ("", "~", "null", "Null", "NULL")
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Where:
    """A 1-based position in the source text."""

    line: int
    column: int


class SyntaxProblem(Exception):
    """The text is not well-formed YAML; carries the position and a user message."""

    def __init__(self, where: Where, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.where = where
        self.message = message
        self.hint = hint


def where(node: Node) -> Where:
    """Where ``node`` starts."""
    return Where(node.start_mark.line + 1, node.start_mark.column + 1)


def position_of(text: str, offset: int) -> Where:
    """Line and column of character ``offset`` in ``text``."""
    before = text[:offset]
    line = before.count("\n") + 1
    return Where(line, offset - (before.rfind("\n") + 1) + 1)


def compose(text: str) -> Node | None:
    """The root node of ``text`` (None when it holds no document)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise SyntaxProblem(
            position_of(text, exc.position),
            f"found the control character {char}, expected text (is this a binary file?)",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = Where(mark.line + 1, mark.column + 1) if mark else Where(1, 1)
        problem = exc.problem or "invalid YAML"
        if "'\\t'" in problem:
            raise SyntaxProblem(
                at,
                "found a tab character, expected spaces",
                hint="YAML indentation must use spaces; replace the tabs with spaces",
            ) from None
        context = f"{exc.context}, " if exc.context else ""
        raise SyntaxProblem(
            at,
            f"invalid YAML: {context}{problem}",
            hint="check the indentation and the quoting around this line",
        ) from None


def is_null(node: Node) -> bool:
    """An unquoted ``null``, ``~`` or nothing at all."""
    return isinstance(node, ScalarNode) and node.style is None and node.value in _NULLS


def is_merge_key(node: Node) -> bool:
    """The ``<<`` merge key."""
    return isinstance(node, ScalarNode) and node.tag == _MERGE_TAG


def describe(node: Node) -> str:
    """What the user wrote, for "found ..." in messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if is_null(node):
        return "nothing (null)"
    value = str(node.value)
    if len(value) > 60:
        value = value[:57] + "..."
    return repr(value)
