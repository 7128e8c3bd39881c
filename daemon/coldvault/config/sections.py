"""A YAML mapping being read: its keys, with ``<<:`` merges expanded, duplicates and typos."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from coldvault.config.yamlnodes import describe, is_merge_key, is_null, where

if TYPE_CHECKING:
    from coldvault.config.converters import Reader

T = TypeVar("T")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.<-]{1,40}")


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
