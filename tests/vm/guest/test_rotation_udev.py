"""Guest scenario: two LUKS disks in rotation, plugged in turn through udev.

Each disk is LUKS2 + ext4 over a device-mapper ``linear`` device on its own loop
device (plugging is creating that device: udev announces it, as for a USB disk),
with its own key file, LUKS mapping, mount point and token. The daemon polls once
an hour, so only the udev events can wake it. Each disk must get its backup,
be closed again (no mapping, no mount) and be recorded in its own state.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, require
from tests.vm.guest.conftest import mounted, sh
from tests.vm.guest.test_daemon_udev import WAIT, _wait, start_daemon

SECTORS = 48 * 2048  # 48 MiB: the LUKS2 header takes 16


@dataclass(frozen=True)
class RotDisk:
    """One rotation disk: its loop device, its dm name (the plug) and its config."""

    name: str
    loop: Path
    point: Path
    config: dict[str, object]

    @property
    def dm(self) -> str:
        return f"cv-rot-{self.name}"

    @property
    def mapping(self) -> str:
        return f"cvrot-{self.name}"

    def plug(self) -> None:
        sh("dmsetup", "create", self.dm, input=f"0 {SECTORS} linear {self.loop} 0\n")

    def unplug(self) -> None:
        sh("udevadm", "settle")
        sh("dmsetup", "remove", self.dm)
        sh("udevadm", "settle")


def _make_disk(tmp: Path, name: str) -> RotDisk:
    """Format one disk by hand and leave it unplugged."""
    image = tmp / f"{name}.img"
    sh("truncate", "-s", f"{SECTORS * 512}", image)
    loop = Path(sh("losetup", "-f", "--show", image).stdout.strip())
    key = tmp / f"{name}.key"
    key.write_bytes(os.urandom(64))
    key.chmod(0o600)
    point = tmp / "media" / name
    point.mkdir(parents=True)
    hash_file = tmp / f"{name}.sha512"
    disk = RotDisk(
        name,
        loop,
        point,
        {
            "name": name,
            "device": f"/dev/mapper/cv-rot-{name}",
            "luks": {"key_file": str(key), "name": f"cvrot-{name}"},
            "mount": {"point": str(point), "fstype": "ext4"},
            "token": {"hash_file": str(hash_file)},
        },
    )
    disk.plug()
    dev = f"/dev/mapper/{disk.dm}"
    luks = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key)
    sh("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", *luks, dev)
    sh("cryptsetup", "open", "--key-file", key, dev, disk.mapping)
    sh("mkfs.ext4", "-q", f"/dev/mapper/{disk.mapping}")
    sh("mount", f"/dev/mapper/{disk.mapping}", point)
    token = os.urandom(64)
    (point / ".token").write_bytes(token)
    hash_file.write_text(f"{hashlib.sha512(token).hexdigest()}  .token\n")
    sh("umount", point)
    sh("cryptsetup", "close", disk.mapping)
    disk.unplug()
    return disk


def _closed(disk: RotDisk) -> bool:
    return not mounted(disk.point) and not Path(f"/dev/mapper/{disk.mapping}").exists()


def _succeeded_on(state: Path, disk: str) -> bool:
    if not state.exists():
        return False
    jobs = json.loads(state.read_text()).get("disks", {}).get(disk, {}).get("jobs", {})
    return bool(jobs.get("img", {}).get("result") == "success")


def test_two_luks_disks_plugged_in_turn_through_udev(tmp_path: Path) -> None:
    require(os.environ.get("COLDVAULT_IN_GUEST") == "1", "runs only inside the VM guest")
    require(Path("/run/udev/control").exists(), "udevd is not running in the guest")
    home, office = _make_disk(tmp_path, "home"), _make_disk(tmp_path, "office")
    source = tmp_path / "source.img"
    source.write_bytes(os.urandom(2 << 20) + bytes(1 << 20) + os.urandom(1 << 20))
    state = tmp_path / "state.json"
    config = tmp_path / "daemon.yaml"
    config.write_text(
        json.dumps(
            {
                "disks": [home.config, office.config],
                "settings": {
                    "state_file": str(state),
                    "runtime_dir": str(tmp_path / "run"),
                    "lock_file": str(tmp_path / "lock"),
                    "poll_seconds": 3600,
                },
                "jobs": [
                    {
                        "name": "img",
                        "type": "image",
                        "source": str(source),
                        "part_size": "1M",
                        "block_size": "256K",
                        "on_plug": True,
                    }
                ],
            }
        )
    )
    log = tmp_path / "daemon.log"
    proc = None
    try:
        proc = start_daemon(config, log)
        for disk in (home, office):
            disk.plug()  # udev announces the new block device
            _wait(f"backup on {disk.name}", lambda d=disk: _succeeded_on(state, d.name), proc, log)
            _wait(f"{disk.name} closed", lambda d=disk: _closed(d), proc, log)
            if disk is home:  # office is away: nothing ran there yet
                assert not _succeeded_on(state, office.name), log.read_text()
            disk.unplug()
        text = log.read_text()
        for disk in (home, office):
            assert f"starting a disk session on {disk.name} for img" in text, text
        assert text.count("backup disk closed (") == 2, text
        assert "teardown incomplete" not in text and "Traceback" not in text, text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
        # Each disk holds its own copy: open it by hand through the CLI and look.
        for disk in (home, office):
            disk.plug()
            cli = [sys.executable, "-m", "coldvault", "-c", str(config)]
            listed = subprocess.run(
                [*cli, "list", "img", "--disk", disk.name],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=WAIT,
                check=False,
            )
            assert listed.returncode == 0, listed.stdout + listed.stderr
            lines = listed.stdout.splitlines()
            rows = [line.split() for line in lines if line.startswith("snapshot-")]
            # One snapshot of 4 parts (1 MiB each) of a 4 MiB source, on the named disk.
            assert len(rows) == 1 and rows[0][1:5] == ["4", "4", "4.0", "MiB"], listed.stdout
            assert f"disks (this is {disk.name};" in listed.stdout, listed.stdout
            assert _closed(disk), "list left the disk open"
            disk.unplug()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for disk in (home, office):
            sh("umount", disk.point, check=False)
            sh("cryptsetup", "close", disk.mapping, check=False)
            sh("dmsetup", "remove", disk.dm, check=False)
            sh("losetup", "-d", disk.loop, check=False)
