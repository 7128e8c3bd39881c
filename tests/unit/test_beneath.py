"""The backup-disk path helper against real symlinks, FIFOs and folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldvault.system import proc
from coldvault.system.beneath import SafeDir, UnexpectedEntry, open_beneath, open_regular


@pytest.fixture
def root(tmp_path: Path) -> Path:
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "host").mkdir()
    return disk


def test_sub_refuses_a_symlinked_folder(root: Path) -> None:
    (root / "img").symlink_to(root.parent / "host")
    with pytest.raises(UnexpectedEntry, match=r"img is a symlink, expected a folder"):
        open_beneath(root, "img")


def test_sub_refuses_a_symlink_deeper_down_and_creates_nothing_outside(root: Path) -> None:
    (root / "a").mkdir()
    (root / "a" / "b").symlink_to(root.parent / "host")
    with pytest.raises(UnexpectedEntry):
        open_beneath(root, "a/b/c", create=True)
    assert list((root.parent / "host").iterdir()) == []


def test_sub_creates_missing_folders_and_refuses_escapes(root: Path) -> None:
    with open_beneath(root, "x/y", create=True) as d:
        assert d.path == root / "x" / "y"
        d.write_atomic("f", b"data")
    assert (root / "x" / "y" / "f").read_bytes() == b"data"
    with pytest.raises(ValueError), SafeDir.open_root(root) as top:
        top.sub("../host")
    with pytest.raises(ValueError), SafeDir.open_root(root) as top:
        top.sub("/etc")


def test_a_folder_swapped_for_a_symlink_after_opening_is_not_followed(root: Path) -> None:
    (root / "img").mkdir()
    with open_beneath(root, "img") as d:
        os.rename(root / "img", root / "moved")
        (root / "img").symlink_to(root.parent / "host")
        d.write_atomic("part", b"x")
    assert (root / "moved" / "part").exists()
    assert list((root.parent / "host").iterdir()) == []


def test_open_file_refuses_symlink_fifo_and_folder_without_blocking(root: Path) -> None:
    secret = root.parent / "host" / "secret"
    secret.write_text("host data")
    (root / "link").symlink_to(secret)
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    with SafeDir.open_root(root) as top:
        for name, kind in (("link", "symlink"), ("fifo", "FIFO"), ("dir", "folder")):
            with pytest.raises(UnexpectedEntry, match=f"is a {kind}, expected a file"):
                top.open_file(name)
        with pytest.raises(UnexpectedEntry):
            top.read_bytes("fifo", 100)


def test_write_atomic_never_writes_through_a_symlink(root: Path) -> None:
    target = root.parent / "host" / "victim"
    target.write_text("keep me")
    (root / "manifest").symlink_to(target)
    with SafeDir.open_root(root) as top, pytest.raises(UnexpectedEntry):
        top.write_atomic("manifest", b"evil")
    assert target.read_text() == "keep me"


def test_rmtree_refuses_a_symlink_and_never_follows_one_inside(root: Path) -> None:
    host = root.parent / "host"
    (host / "precious").write_text("keep")
    (root / "old-link").symlink_to(host)
    (root / "old").mkdir()
    (root / "old" / "inner").symlink_to(host)
    with SafeDir.open_root(root) as top:
        with pytest.raises(UnexpectedEntry):
            top.rmtree("old-link")
        top.rmtree("old")
    assert not (root / "old").exists()
    assert (host / "precious").read_text() == "keep"


def test_rename_noreplace_and_symlink_replace(root: Path) -> None:
    (root / "a").mkdir()
    (root / "b").mkdir()
    with SafeDir.open_root(root) as top:
        with pytest.raises(FileExistsError):
            top.rename_noreplace("a", "b")
        top.rename_noreplace("a", "c")
        top.symlink_replace("latest", "c")
        top.symlink_replace("latest", "b")
        assert top.readlink("latest") == "b"
        assert top.readlink("b") is None
        with pytest.raises(UnexpectedEntry):
            top.symlink_replace("c", "b")  # a real folder is never replaced by a link
    assert (root / "c").is_dir()


def test_proc_path_reaches_the_folder_from_a_child_process(root: Path) -> None:
    (root / "img").mkdir()
    (root / "img" / "f").write_text("hello")
    with open_beneath(root, "img") as d:
        assert proc.run_text(["cat", d.proc_path("f")]) == "hello"


def test_entries_lists_kinds(root: Path) -> None:
    (root / "d").mkdir()
    (root / "f").write_text("")
    os.mkfifo(root / "p")
    (root / "l").symlink_to("d")
    with SafeDir.open_root(root) as top:
        assert dict(top.entries()) == {"d": "folder", "f": "file", "p": "FIFO", "l": "symlink"}


def test_open_regular_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.yaml")
    with pytest.raises(UnexpectedEntry, match="FIFO"):
        open_regular(tmp_path / "config.yaml")
    (tmp_path / "ok").write_text("x")
    fd = open_regular(tmp_path / "ok")
    try:
        assert os.read(fd, 10) == b"x"
    finally:
        os.close(fd)
