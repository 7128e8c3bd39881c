"""YAML as a node graph with positions, so every error can name its line and column.

We compose (never construct) with the safe loader and type the scalars
ourselves: YAML 1.1 would turn ``3:00`` into 180 and ``on`` into True.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    """The root node of ``text`` (None when it holds no document).

    The parser is libyaml's when PyYAML has it (ten times faster: a 1 MB file
    parses in well under a second); the node graph is built here, without
    recursion, so nesting depth, tags and anchors are checked as they come.
    """
    loader: Any = _Loader(text)
    try:
        return _Composer(loader).document()
    except yaml.reader.ReaderError as exc:
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise SyntaxProblem(
            position_of(text, _char_offset(text, exc.position)),
            f"found the control character {char}, expected text (is this a binary file?)",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = Where(mark.line + 1, mark.column + 1) if mark else Where(1, 1)
        problem = exc.problem or "invalid YAML"
        if "'\\t'" in problem or _char_at(text, at) == "\t":
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
    finally:
        loader.dispose()


def _char_offset(text: str, offset: int) -> int:
    """libyaml reports byte offsets into the UTF-8 text; PyYAML character offsets."""
    if _Loader is yaml.SafeLoader:
        return offset
    return len(text.encode("utf-8")[:offset].decode("utf-8", "ignore"))


def _char_at(text: str, at: Where) -> str:
    lines = text.split("\n", at.line)
    if at.line > len(lines):
        return ""
    line = lines[at.line - 1]
    return line[at.column - 1] if 0 < at.column <= len(line) else ""


_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = (
    yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
)


class _Composer:
    """Builds the node graph from parser events with an explicit stack (no recursion)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.anchors: dict[str, Node] = {}
        self.stack: list[_Open] = []
        self.root: Node | None = None
        self.nodes = 0

    def document(self) -> Node | None:
        self.loader.get_event()  # stream start
        if self.loader.check_event(yaml.StreamEndEvent):
            return None
        self.loader.get_event()  # document start
        while self.root is None:
            self.step(self.loader.get_event())
        self.loader.get_event()  # document end
        if not self.loader.check_event(yaml.StreamEndEvent):
            event: Any = self.loader.get_event()
            raise SyntaxProblem(
                _mark(event.start_mark),
                "found a second document, expected a single document in the file",
                hint="remove the `---` line and what follows, or merge the documents",
            )
        return self.root

    def step(self, event: Any) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SyntaxProblem(
                _mark(event.start_mark),
                f"found more than {MAX_NODES} values, expected a configuration of a few hundred",
            )
        start: Any = event.start_mark
        end: Any = event.end_mark
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise SyntaxProblem(
                    _mark(event.start_mark),
                    f"found the alias *{event.anchor}, expected an anchor &{event.anchor} "
                    "defined before it",
                )
            self.attach(self.anchors[event.anchor])
        elif isinstance(event, yaml.ScalarEvent):
            tag = _tag(event, _STR)
            if tag is None:
                # Plain scalars are typed by the reader, by key; only `<<` matters here.
                plain = event.implicit[0] and event.value == "<<"
                tag = _MERGE_TAG if plain else (_PLAIN if event.implicit[0] else _STR)
            # libyaml says '' for plain scalars, PyYAML None: the reader relies on None.
            style = event.style or None
            node: Node = ScalarNode(tag, event.value, start, end, style)
            self.anchor(event, node)
            self.attach(node)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self.open(event)
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            done = self.stack.pop()
            done.node.end_mark = end
            self.attach(done.node)

    def open(self, event: Any) -> None:
        start: Any = event.start_mark
        if len(self.stack) >= MAX_DEPTH:
            raise SyntaxProblem(
                _mark(event.start_mark),
                f"found lists or mappings nested more than {MAX_DEPTH} levels deep, "
                "expected a configuration a few levels deep",
            )
        node: Node
        if isinstance(event, yaml.SequenceStartEvent):
            tag = _tag(event, _SEQ) or _SEQ
            node = SequenceNode(tag, [], start, None, flow_style=event.flow_style)
        else:
            tag = _tag(event, _MAP) or _MAP
            node = MappingNode(tag, [], start, None, flow_style=event.flow_style)
        # Registered before the children, as PyYAML does: `&a [*a]` refers to itself.
        self.anchor(event, node)
        self.stack.append(_Open(node))

    def anchor(self, event: Any, node: Node) -> None:
        name = event.anchor
        if name is None:
            return
        if name in self.anchors:
            first = where(self.anchors[name])
            raise SyntaxProblem(
                _mark(event.start_mark),
                f"found the anchor &{name} again (first on line {first.line}), "
                "expected each anchor once",
            )
        self.anchors[name] = node

    def attach(self, node: Node) -> None:
        """Add a finished node to the collection being built (or make it the root)."""
        if not self.stack:
            self.root = node
            return
        parent = self.stack[-1]
        if isinstance(parent.node, SequenceNode):
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None


@dataclass
class _Open:
    """A list or mapping whose end has not been read yet."""

    node: Node
    key: Node | None = None


_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_PLAIN = "?"  # YAML's non-specific tag of a plain scalar: see plain_type()
MAX_DEPTH = 50
MAX_NODES = 50_000


def _mark(mark: Any) -> Where:
    return Where(mark.line + 1, mark.column + 1)


def _tag(event: Any, plain: str) -> str | None:
    """The explicit tag of ``event`` (None: resolve it); refuses tags we do not read."""
    tag: str | None = event.tag
    if tag is None or tag == "!":
        return None if tag is None else plain
    if tag == plain:
        return tag
    shown = "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:") else tag
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise SyntaxProblem(
        _mark(event.start_mark),
        f"found the tag {shown}, expected no tag (coldvault reads plain YAML: "
        "values are typed by the key they belong to)",
        hint="remove the tag; write the value as plain text",
    )


def plain_type(node: ScalarNode) -> str:
    """What YAML 1.1 would make of a scalar: ``str``, ``int``, ``float``, ``bool``, ``null``."""
    if node.tag != _PLAIN:
        return str(node.tag).rpartition(":")[2]
    tag = _RESOLVER.resolve(ScalarNode, node.value, (True, False))
    return str(tag).rpartition(":")[2]


_RESOLVER: Any = yaml.resolver.Resolver()


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
