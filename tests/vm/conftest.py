"""The VM tier: on the host, boot one guest for the session; in the guest, nothing special.

On the host, the scenario files in ``guest/`` are not collected (they need MD and
device-mapper); ``test_vm.py`` reports their results from the guest run instead.
"""

from __future__ import annotations

import json
import os
import shlex

import pytest

from tests.conftest import require, require_programs, require_root
from tests.vm import harness

IN_GUEST = os.environ.get("COLDVAULT_IN_GUEST") == "1"

collect_ignore_glob = [] if IN_GUEST else ["guest/*"]


@pytest.fixture(scope="session")
def guest_run() -> harness.GuestRun:
    """Boot the guest once and run every guest scenario (see harness.py)."""
    require_root()
    require_programs("qemu-system-x86_64", "apt-get", "dpkg", "depmod", "busybox")
    require(not IN_GUEST, "the guest does not boot guests")
    # COLDVAULT_VM_ARGS: extra guest pytest arguments, e.g. "-k test_disk_stack" while
    # working on one file (the host then reports the others as not run).
    return harness.boot(shlex.split(os.environ.get("COLDVAULT_VM_ARGS", "")))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In the guest: append each scenario's outcome to the results file at once.

    Written as the run goes, so scenarios that finished are reported even when
    the guest is killed by the harness's timeout.
    """
    path = os.environ.get("COLDVAULT_VM_RESULTS")
    if not IN_GUEST or not path:
        return
    if report.when == "call" or report.outcome != "passed":
        entry = {
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "message": str(report.longrepr)[-4000:] if report.longrepr else "",
            "seconds": round(report.duration, 1),
        }
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")
