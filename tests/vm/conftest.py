"""The VM tier: on the host, boot one guest for the session; in the guest, nothing special.

On the host, the scenario files in ``guest/`` are not collected (they need MD and
device-mapper); ``test_vm.py`` reports their results from the guest run instead.
"""

from __future__ import annotations

import os

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
    return harness.boot()
