"""Disk stack scenarios on a real kernel: md, dm-crypt, LVM, Btrfs on loop devices."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.vm.guest.conftest import BackupDisk, array_state, sh

ALL_OPEN = {"array": True, "luks": True, "lvm": True, "mount": True}
ALL_CLOSED = {"array": False, "luks": False, "lvm": False, "mount": False}


def test_open_close_round_trip(disk: BackupDisk) -> None:
    """open brings every layer up and reports a degraded array; close takes all down."""
    opened = disk.cli("open")
    assert opened.returncode == 0, opened.stderr
    assert disk.layers_open() == ALL_OPEN
    assert (disk.point / ".token").stat().st_size == 1024
    status = disk.cli("disk", "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert [layer["open"] for layer in report["layers"]] == [True, True, True, True]
    assert report["array"]["degraded"] == 1
    assert report["array"]["raid_disks"] == 2
    mount = report["layers"][-1]
    assert 0 < mount["free_bytes"] <= mount["size_bytes"]
    closed = disk.cli("close")
    assert closed.returncode == 0, closed.stderr
    assert disk.layers_open() == ALL_CLOSED


def test_open_and_close_are_idempotent(disk: BackupDisk) -> None:
    """A second open finds everything open; a second close does nothing and exits 0."""
    assert disk.cli("open").returncode == 0
    again = disk.cli("open")
    assert again.returncode == 0, again.stderr
    assert disk.layers_open() == ALL_OPEN
    first = disk.cli("close")
    assert first.returncode == 0, first.stderr
    assert disk.layers_open() == ALL_CLOSED
    second = disk.cli("close")
    assert second.returncode == 0, second.stderr
    assert "nothing to close" in second.stdout
    assert disk.layers_open() == ALL_CLOSED


def test_stack_opened_by_hand_is_left_open(disk: BackupDisk) -> None:
    """Layers the user opened stay open; only what coldvault opened is closed."""
    disk.open_by_hand(upto="luks")
    # udev may have activated the logical volume as the LUKS volume appeared: also "by hand".
    before = disk.layers_open()
    assert before["array"] and before["luks"] and not before["mount"]
    assert disk.cli("open").returncode == 0
    assert disk.layers_open() == ALL_OPEN
    closed = disk.cli("close")
    assert closed.returncode == 0, closed.stderr
    assert disk.layers_open() == before
    # A whole stack opened by hand survives a full backup run.
    disk.open_by_hand(upto="mount")
    run = disk.cli("run", "img")
    assert run.returncode == 0, run.stderr
    assert disk.layers_open() == ALL_OPEN


def test_auto_read_only_array_is_adopted(disk: BackupDisk) -> None:
    """An array udev started auto-read-only is switched to read-write and left running."""
    start_ro = Path("/sys/module/md_mod/parameters/start_ro")
    old = start_ro.read_text().strip()
    start_ro.write_text("1\n")
    try:
        sh("mdadm", "--incremental", "--run", disk.member)
        sh("udevadm", "settle")
    finally:
        start_ro.write_text(old + "\n")
    assert array_state() == "read-auto"
    opened = disk.cli("open")
    assert opened.returncode == 0, opened.stderr
    assert array_state() in ("clean", "active")
    (disk.point / "write-test").write_text("written after adoption\n")
    (disk.point / "write-test").unlink()
    assert disk.cli("close").returncode == 0
    # The array was not ours: it keeps running, the layers above are closed.
    assert disk.layers_open() == {"array": True, "luks": False, "lvm": False, "mount": False}


def _listing(disk: BackupDisk) -> dict[str, tuple[int, int]]:
    disk.open_by_hand()
    try:
        return {
            str(p.relative_to(disk.point)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in disk.point.rglob("*")
        }
    finally:
        disk.close_by_hand()


def test_wrong_token_writes_nothing_and_closes(disk: BackupDisk) -> None:
    """A token that does not match: exit 4, stack closed, the disk's files untouched."""
    before = _listing(disk)
    original = disk.hash_file.read_text()
    disk.hash_file.write_text("ab" * 64 + "  .token\n")
    try:
        run = disk.cli("run", "img")
    finally:
        disk.hash_file.write_text(original)
    assert run.returncode == 4, run.stderr
    assert "does not match" in run.stderr
    assert "Traceback" not in run.stderr
    assert disk.layers_open() == ALL_CLOSED
    assert _listing(disk) == before


def test_missing_token_is_rejected(disk: BackupDisk) -> None:
    """No .token on the disk: exit 4, stack closed."""
    disk.open_by_hand()
    (disk.point / ".token").rename(disk.point / ".token.saved")
    disk.close_by_hand()
    try:
        opened = disk.cli("open")
        assert opened.returncode == 4, opened.stderr
        assert "has no token" in opened.stderr
        assert disk.layers_open() == ALL_CLOSED
    finally:
        disk.open_by_hand()
        (disk.point / ".token.saved").rename(disk.point / ".token")
        disk.close_by_hand()


def test_wrong_key_file(disk: BackupDisk) -> None:
    """A key that does not unlock the disk: a clear error, the array stopped again."""
    wrong = disk.tmp / "keys" / "wrong.key"
    wrong.write_bytes(b"w" * 64)
    wrong.chmod(0o600)
    config = disk.write_config(
        disk.tmp / "wrong-key.yaml", luks={"key_file": str(wrong), "name": "enc-backup"}
    )
    opened = disk.cli("open", config=config)
    assert opened.returncode == 1, opened.stderr
    assert f"the key file {wrong} does not unlock" in opened.stderr
    assert "Traceback" not in opened.stderr
    assert disk.layers_open() == ALL_CLOSED


def test_key_file_with_loose_permissions(disk: BackupDisk) -> None:
    """A key file readable by others is refused before it is used."""
    loose = disk.tmp / "keys" / "loose.key"
    loose.write_bytes(disk.key_file.read_bytes())
    loose.chmod(0o644)
    config = disk.write_config(
        disk.tmp / "loose-key.yaml", luks={"key_file": str(loose), "name": "enc-backup"}
    )
    opened = disk.cli("open", config=config)
    assert opened.returncode == 1, opened.stderr
    assert f"chmod 600 {loose}" in opened.stderr
    assert disk.layers_open() == ALL_CLOSED


def test_device_absent_with_wait(disk: BackupDisk) -> None:
    """The disk never appears within --wait 2: exit 3, nothing opened."""
    config = disk.write_config(
        disk.tmp / "absent.yaml", device="/dev/disk/by-partlabel/coldvault-absent"
    )
    opened = disk.cli("open", "--wait", "2", config=config)
    assert opened.returncode == 3, opened.stderr
    assert "is not attached" in opened.stderr
    assert disk.layers_open() == ALL_CLOSED


def test_btrfs_and_image_jobs_end_to_end(disk: BackupDisk) -> None:
    """Both job types back up onto the stack, which is closed afterwards; then read back."""
    run = disk.cli("run", "img", "subvols")
    assert run.returncode == 0, run.stderr
    assert disk.layers_open() == ALL_CLOSED
    assert disk.cli("open").returncode == 0
    verify = disk.cli("verify", "img")
    assert verify.returncode == 0, verify.stderr
    received = list((disk.point / "subvols").rglob("hello.txt"))
    assert received, sorted(str(p) for p in (disk.point / "subvols").rglob("*"))
    assert received[0].read_text() == "hello from the guest\n"
    assert disk.cli("close").returncode == 0
    assert disk.layers_open() == ALL_CLOSED


def test_job_fails_mid_run_full_teardown(disk: BackupDisk) -> None:
    """An image source that returns read errors half-way: the job fails, the stack closes."""
    backing = disk.tmp / "badsrc.img"
    sh("truncate", "-s", "4M", backing)
    loop = sh("losetup", "-f", "--show", backing).stdout.strip()
    sh("dmsetup", "create", "cv-badsrc", input=f"0 4096 linear {loop} 0\n4096 4096 error\n")
    try:
        config = disk.write_config(disk.tmp / "bad-job.yaml")
        text = config.read_text().replace(str(disk.source_image), "/dev/mapper/cv-badsrc")
        config.write_text(text)
        run = disk.cli("run", "img", config=config)
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        assert disk.layers_open() == ALL_CLOSED
    finally:
        sh("dmsetup", "remove", "cv-badsrc", check=False)
        sh("losetup", "-d", loop, check=False)


def test_teardown_when_mount_is_busy(disk: BackupDisk) -> None:
    """A process inside the mount: close names it and leaves the stack; a retry closes all."""
    assert disk.cli("open").returncode == 0
    holder = subprocess.Popen(["sleep", "600"], cwd=disk.point)
    try:
        busy = disk.cli("close")
        assert busy.returncode == 1, busy.stderr
        assert f"pid {holder.pid} (sleep)" in busy.stderr
        assert disk.layers_open()["mount"]
    finally:
        holder.kill()
        holder.wait()
    retry = disk.cli("close")
    assert retry.returncode == 0, retry.stderr
    assert disk.layers_open() == ALL_CLOSED


def test_io_errors_fail_cleanly_and_earlier_backups_survive(disk: BackupDisk) -> None:
    """dm-error under the array mid-backup: a clean failure; after the fault clears, the
    earlier backup verifies."""
    first = disk.cli("run", "img")
    assert first.returncode == 0, first.stderr
    assert disk.cli("open").returncode == 0
    listed = disk.cli("list", "img")
    assert listed.returncode == 0, listed.stderr
    disk.source_image.write_bytes(os.urandom(8 << 20))  # every part changes
    disk.set_member_table("error")
    try:
        failed = disk.cli("run", "img")
        closing = disk.cli("close")
    finally:
        disk.set_member_table("linear")
        disk.close_by_hand()
    assert failed.returncode == 1, failed.stderr
    assert "img: backup failed" in failed.stderr
    assert "Traceback" not in closing.stderr, closing.stderr
    assert disk.layers_open() == ALL_CLOSED
    assert disk.cli("open").returncode == 0
    verify = disk.cli("verify", "img", "--all")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert disk.cli("list", "img").stdout.strip() != ""
    assert disk.cli("close").returncode == 0
    # Last, so the recovery above is checked even while this still fails: an I/O
    # error is an expected failure and must be reported without a traceback.
    assert "Traceback" not in failed.stderr, failed.stderr
