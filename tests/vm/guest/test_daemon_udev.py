"""Guest scenario: a udev event for the backup disk wakes the daemon for a full cycle.

The daemon runs with polling effectively off (``poll_seconds: 3600``), so only a
udev block event can make it look again. Unplugging and plugging is done by
removing and re-creating the array member's device-mapper device; udev then
announces the new block device and creates ``/dev/mapper/cv-member``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, require
from tests.vm.guest.conftest import MEMBER_DM, VG, BackupDisk, sh

WAIT = 300.0  # generous: software emulation


def _wait(what: str, pred: object, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        assert proc.poll() is None, f"daemon exited while waiting for {what}:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``coldvault daemon`` on ``config`` (output in ``log``), once it says it started."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coldvault", "-c", str(config), "daemon"],
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )
    try:
        _wait("daemon start", lambda: "coldvault daemon started" in log.read_text(), proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def _set_autoactivation(disk: BackupDisk, on: bool) -> None:
    """Switch LVM autoactivation of the disk's volume group (needs LUKS open to see it)."""
    disk.open_by_hand("luks")
    out = sh("vgchange", "--setautoactivation", "y" if on else "n", VG, check=False)
    assert out.returncode == 0 or "already" in out.stderr, out.stderr
    disk.close_by_hand()


def test_udev_plug_full_cycle_disk_init_style(disk: BackupDisk, tmp_path: Path) -> None:
    """A disk as `coldvault disk init` makes it: the VG is not autoactivated by udev."""
    _plug_cycle(disk, tmp_path, autoactivation=False)


def test_udev_plug_full_cycle_hand_built_disk(disk: BackupDisk, tmp_path: Path) -> None:
    """A disk built by hand like the original instructions: udev activates the LV as soon
    as LUKS opens, so the stack finds it open; teardown must still close what it opened."""
    _plug_cycle(disk, tmp_path, autoactivation=True)


def _plug_cycle(disk: BackupDisk, tmp_path: Path, *, autoactivation: bool) -> None:
    require(Path("/run/udev/control").exists(), "udevd is not running in the guest")
    _set_autoactivation(disk, autoactivation)
    config = json.loads(disk.config.read_text())
    config["settings"] = {
        "state_file": str(tmp_path / "state.json"),
        "runtime_dir": str(tmp_path / "run"),
        "lock_file": str(tmp_path / "lock"),
        "poll_seconds": 3600,
    }
    config["jobs"] = [dict(config["jobs"][0], on_plug=True)]  # the image job
    path = tmp_path / "daemon.yaml"
    path.write_text(json.dumps(config))
    state = tmp_path / "state.json"
    log = tmp_path / "daemon.log"

    table = f"0 {disk.sectors} linear {disk.loop} 0\n"
    sh("dmsetup", "remove", MEMBER_DM)  # unplugged
    sh("udevadm", "settle")
    proc = None
    try:
        proc = start_daemon(path, log)
        assert "udev block events" in log.read_text()
        assert not state.exists()  # nothing ran: the disk is absent

        sh("dmsetup", "create", MEMBER_DM, input=table)  # plugged: udev announces it

        def backed_up() -> bool:
            if not state.exists():
                return False
            return bool(json.loads(state.read_text())["jobs"].get("img", {}).get("last_success"))

        _wait("backup after the udev event", backed_up, proc, log)
        _wait("end of the session", lambda: "backup disk clos" in log.read_text(), proc, log)
        text = log.read_text()
        assert "appeared" in text and "img: backup finished" in text
        # The session closed what it opened: at least the LUKS mapping and the mount (udev
        # may have assembled the array when the member appeared: that one was found open).
        assert "teardown incomplete" not in text, text
        layers = disk.layers_open()
        assert not layers["mount"] and not layers["luks"], (layers, text)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if not Path(f"/dev/mapper/{MEMBER_DM}").exists():
            sh("dmsetup", "create", MEMBER_DM, input=table)
            sh("udevadm", "settle")
        disk.close_by_hand()
        _set_autoactivation(disk, True)  # as the session fixture built it
