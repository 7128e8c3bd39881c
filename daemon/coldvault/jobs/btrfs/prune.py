"""Retention for btrfs snapshots, on either side, via :func:`coldvault.jobs.retention.plan`."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path

from coldvault.config.model import Retention
from coldvault.jobs import retention
from coldvault.jobs.btrfs import subvol
from coldvault.jobs.btrfs.snapshots import names_in

log = logging.getLogger("coldvault.jobs.btrfs")


def prune(folder: Path, source: str, rule: Retention, *, protect: Collection[str]) -> list[str]:
    """Delete the snapshots of ``source`` in ``folder`` that ``rule`` does not keep.

    ``protect`` holds the newest snapshot both sides share (the next parent):
    it is kept whatever the rule says. Returns the deleted names, newest first.
    """
    # Same-second snapshots (``_N`` suffix) must still order newest first.
    named = [(n.name, n.when + timedelta(microseconds=n.seq)) for n in names_in(folder, source)]
    decision = retention.plan(named, rule, protect=protect)
    if decision.delete:
        log.info("retention: deleting %s from %s", ", ".join(decision.delete), folder)
        # No --commit-after: the next commit (at the latest the unmount) makes it durable.
        subvol.delete([folder / name for name in decision.delete], commit=False)
    return list(decision.delete)
