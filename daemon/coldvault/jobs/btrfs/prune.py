"""Retention for btrfs snapshots, on either side, via :func:`coldvault.jobs.retention.plan`."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from coldvault.config.model import Retention
from coldvault.jobs import retention
from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.snapshots import Scan, parse_name
from coldvault.system import crashpoint
from coldvault.system.beneath import SafeDir

log = logging.getLogger("coldvault.jobs.btrfs")


def prune(
    folder: SafeDir,
    found: Scan,
    source: str,
    rule: Retention,
    *,
    protect: Collection[str],
    side: str,
) -> list[str]:
    """Delete the snapshots of ``source`` in ``folder`` that ``rule`` does not keep.

    Only names of the pattern ``<source>.<time>`` count; a snapshot renamed by hand
    is never deleted. ``protect`` holds the newest snapshot both sides share (the
    next parent): it is kept whatever the rule says. Each deletion removes the
    subvolume from the folder in one step (no half-deleted snapshot is ever
    visible), and one transaction commit follows the batch, as
    ``btrfs subvolume delete --commit-after`` does. Returns the deleted names.
    """
    named = dated((snap.path.name for snap in found.named(source)), source)
    decision = retention.plan(named, rule, protect=protect)
    if not decision.delete:
        return []
    log.info("retention: deleting %s from %s", ", ".join(decision.delete), folder.path)
    for name in decision.delete:
        subvol.destroy(folder, name)
        crashpoint.reached(f"btrfs.prune-{side}")
    subvol.commit(folder)
    return list(decision.delete)


def dated(names: Iterable[str], source: str) -> list[tuple[str, datetime]]:
    """The names of the ``<source>.<time>`` pattern with their time: what retention sees."""
    out = []
    for name in names:
        parsed = parse_name(name)
        if parsed is not None and parsed.source == source:
            # Same-second snapshots (``_N`` suffix) must still order newest first.
            out.append((name, parsed.when + timedelta(microseconds=parsed.seq)))
    return out
