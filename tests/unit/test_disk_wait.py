"""Waiting for the backup device, with a real file that appears later."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from coldvault.config.model import DiskConfig, MountConfig
from coldvault.disk.device import wait_for
from coldvault.disk.stack import DiskStack
from coldvault.errors import Cancelled, DiskAbsent
from coldvault.system.cancel import CancelToken


def test_present_device_returns_at_once(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.touch()
    wait_for(dev, 0)


def test_device_that_appears_later_is_waited_for(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    appeared = threading.Event()

    def plug_in() -> None:
        appeared.wait(0.3)
        dev.touch()

    thread = threading.Thread(target=plug_in)
    thread.start()
    try:
        wait_for(dev, 30)
    finally:
        thread.join()
    assert dev.exists()


def test_absent_device_raises_after_the_wait(tmp_path: Path) -> None:
    with pytest.raises(DiskAbsent, match="is not attached") as info:
        wait_for(tmp_path / "never", 0.3)
    assert info.value.exit_code == 3


def test_dangling_symlink_counts_as_absent(tmp_path: Path) -> None:
    link = tmp_path / "by-id"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(DiskAbsent):
        wait_for(link, 0)


def test_cancel_stops_the_wait(tmp_path: Path) -> None:
    cancel = CancelToken()
    timer = threading.Timer(0.2, cancel.cancel)
    timer.start()
    try:
        with pytest.raises(Cancelled):
            wait_for(tmp_path / "never", None, cancel=cancel)
    finally:
        timer.cancel()


def test_stack_waits_for_the_configured_device(tmp_path: Path) -> None:
    dev = tmp_path / "by-partlabel-backup"
    disk = DiskConfig(device=dev, mount=MountConfig(point=tmp_path / "m", require_mount=False))
    stack = DiskStack(disk)
    assert not stack.is_present()
    with pytest.raises(DiskAbsent):
        stack.wait(0.2)
    dev.touch()
    assert stack.is_present()
    stack.wait(0)
