"""Which snapshots to keep: the newest N plus calendar buckets (shared by every job type).

Within a calendar bucket (an hour, day, ISO week, month or year) the oldest
snapshot is kept, so the kept one does not change as newer ones arrive. The
newest snapshot and every protected name (the next incremental parent) are
always kept.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from coldvault.config.model import Retention

_BUCKETS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass(frozen=True)
class RetentionPlan:
    """Names to keep and to delete, each newest first."""

    keep: tuple[str, ...]
    delete: tuple[str, ...]


def plan(
    snapshots: Sequence[tuple[str, datetime]],
    rule: Retention,
    *,
    protect: Collection[str] = (),
) -> RetentionPlan:
    """Split ``snapshots`` (name, time) into kept and deleted according to ``rule``."""
    why = reasons(snapshots, rule, protect={name: "protected" for name in protect})
    return RetentionPlan(
        tuple(n for n, r in why.items() if r),
        tuple(n for n, r in why.items() if not r),
    )


def reasons(
    snapshots: Sequence[tuple[str, datetime]],
    rule: Retention,
    *,
    protect: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Why each snapshot is kept (``[]``: deleted by the next pass), newest first (:func:`plan`
    keeps that order; ``list`` shows the reasons).

    ``protect`` maps a name to the reason it is kept whatever the rule says.
    """
    ordered = sorted(snapshots, key=lambda s: s[1], reverse=True)
    if rule.keeps_everything:
        return {n: ["no retention rule"] for n, _ in ordered}
    why: dict[str, list[str]] = {n: [] for n, _ in ordered}
    for name, reason in (protect or {}).items():
        if name in why:
            why[name].append(reason)
    if ordered:
        why[ordered[0][0]].append("newest")
    if rule.keep_last is not None:
        for name, _ in ordered[: rule.keep_last]:
            why[name].append(f"last {rule.keep_last}")
    for kind, key in _BUCKETS.items():
        for name in _bucket_keepers(ordered, key, getattr(rule, kind)):
            why[name].append(kind)
    return why


def _bucket_keepers(
    ordered: Sequence[tuple[str, datetime]],
    key: Callable[[datetime], tuple[int, ...]],
    count: int,
) -> set[str]:
    """The oldest snapshot of each of the ``count`` newest buckets."""
    oldest_in: dict[tuple[int, ...], str] = {}
    for name, when in ordered:  # newest first: later writes are older snapshots
        bucket = key(when)
        if bucket not in oldest_in and len(oldest_in) >= count:
            break
        oldest_in[bucket] = name
    return set(oldest_in.values())
