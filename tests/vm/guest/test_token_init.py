"""First setup of a hand-built disk on a real kernel: ``token init`` opens MD, LUKS, LVM
and the mount itself, writes the token and its hash, and closes what it opened."""

from __future__ import annotations

from tests.vm.guest.conftest import BackupDisk

ALL_CLOSED = {"array": False, "luks": False, "lvm": False, "mount": False}


def test_token_init_on_a_closed_hand_built_disk(disk: BackupDisk) -> None:
    """No token, no hash file, stack closed: init opens it all, writes, closes it all."""
    disk.open_by_hand()
    saved_token = (disk.point / ".token").read_bytes()
    (disk.point / ".token").unlink()  # a disk built by hand has no token yet
    disk.close_by_hand()
    saved_hash = disk.hash_file.read_bytes()
    disk.hash_file.unlink()
    try:
        refused = disk.cli("open")  # the circle: open needs the hash file
        assert refused.returncode == 78, refused.stderr
        assert disk.layers_open() == ALL_CLOSED

        done = disk.cli("token", "init")
        assert done.returncode == 0, done.stderr
        assert "token not checked" in done.stderr
        assert disk.layers_open() == ALL_CLOSED  # closed everything it opened
        assert disk.hash_file.read_bytes() != saved_hash

        opened = disk.cli("open")  # now the normal path works
        assert opened.returncode == 0, opened.stderr
        assert disk.cli("close").returncode == 0
        assert disk.layers_open() == ALL_CLOSED
    finally:
        if not disk.hash_file.exists():  # keep the session's disk usable for later scenarios
            disk.hash_file.write_bytes(saved_hash)
            disk.open_by_hand()
            (disk.point / ".token").write_bytes(saved_token)
            disk.close_by_hand()


def test_token_init_leaves_layers_opened_by_hand(disk: BackupDisk) -> None:
    """Layers opened by hand stay open; the mount, opened by init, is closed again.

    (udev's LVM autoactivation may bring the volume up as soon as LUKS opens: then
    it too was found open and stays so.)
    """
    disk.open_by_hand(upto="luks")
    before = disk.layers_open()
    assert before["array"] and before["luks"] and not before["mount"], before
    done = disk.cli("token", "init", "--force")
    assert done.returncode == 0, done.stderr
    assert disk.layers_open() == before
