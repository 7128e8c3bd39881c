"""Shared test helpers: tier requirements that skip locally but fail in CI."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip the calling test when ``condition`` is false; in CI fail instead.

    A skipped tier is an untested feature, so CI (CI=true) never skips.
    """
    if condition:
        return
    if IN_CI:
        pytest.fail(f"cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    """The test needs root (loop devices, mounts)."""
    require(os.geteuid() == 0, "needs root")


def require_programs(*names: str) -> None:
    """The test needs these programs installed."""
    extra = "/usr/local/sbin:/usr/sbin:/sbin"
    missing = [n for n in names if shutil.which(n, path=os.environ["PATH"] + ":" + extra) is None]
    require(not missing, f"missing programs: {', '.join(missing)}")


@pytest.fixture
def coldvault_cmd() -> list[str]:
    """argv prefix that runs the coldvault CLI of this checkout."""
    return [sys.executable, "-m", "coldvault"]


@pytest.fixture
def restore_coldvault_logger() -> Iterator[None]:
    """main()/setup_logging() replace the coldvault logger's handlers: undo that afterwards."""
    logger = logging.getLogger("coldvault")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            if handler not in saved[0]:
                logger.removeHandler(handler)
                handler.close()
        for handler in saved[0]:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
