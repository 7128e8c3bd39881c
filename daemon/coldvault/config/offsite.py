"""The ``offsite:`` list: restic repositories that receive each job's newest backup.

Each entry is read by the generic builder; this module adds what one entry
cannot check alone: names are unique, and ``jobs:`` names configured jobs.
"""

from __future__ import annotations

from collections.abc import Callable

from yaml.nodes import MappingNode, Node, SequenceNode

from coldvault.config.converters import Reader
from coldvault.config.model import Job, OffsiteTarget
from coldvault.config.problems import Invalid, Reported
from coldvault.config.sections import Section
from coldvault.config.yamlnodes import describe

BuildTarget = Callable[[Node, str], OffsiteTarget]


def read_offsite(
    reader: Reader, top: Section, jobs: tuple[Job, ...], build: BuildTarget
) -> tuple[OffsiteTarget, ...]:
    """The configured offsite targets; problems are recorded on ``reader``."""
    node = top.value("offsite")
    if node is None:
        return ()
    if not isinstance(node, SequenceNode):
        reader.problem(node, "offsite", f"found {describe(node)}, expected a list of targets")
        return ()
    targets: list[OffsiteTarget] = []
    for item, path in reader.items(node, "offsite"):
        try:
            target = build(item, path)
        except Invalid as exc:
            reader.problem(exc.node or item, path, exc.message, exc.hint)
            continue
        except Reported:
            continue
        if _fits(reader, item, path, target, targets, jobs):
            targets.append(target)
    return tuple(targets)


def _fits(
    reader: Reader,
    item: Node,
    path: str,
    target: OffsiteTarget,
    earlier: list[OffsiteTarget],
    jobs: tuple[Job, ...],
) -> bool:
    if any(t.name == target.name for t in earlier):
        reader.problem(
            _value(item, "name"),
            f"{path}.name",
            f"found {target.name!r} again, expected unique offsite names",
        )
        return False
    names = [j.name for j in jobs]
    unknown = [n for n in target.jobs if n not in names]
    if unknown:
        reader.problem(
            _value(item, "jobs"),
            f"{path}.jobs",
            f"found {unknown[0]!r}, expected the name of a configured job: {', '.join(names)}",
        )
        return False
    return True


def _value(item: Node, key: str) -> Node:
    if isinstance(item, MappingNode):
        for k, v in item.value:
            if getattr(k, "value", None) == key:
                return v  # type: ignore[no-any-return]
    return item
