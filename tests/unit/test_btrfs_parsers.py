"""Parsers of btrfs-progs output, fed with output recorded on this machine (see data/btrfs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coldvault.errors import JobError
from coldvault.jobs.btrfs import parent, snapshots, subvol
from coldvault.system.beneath import SafeDir

DATA = Path(__file__).parent / "data" / "btrfs"
SOURCE_SNAP_UUID = "7b86dd67-3de5-484e-a40e-437e6d88946d"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def show(name: str, path: str = "/x") -> subvol.Subvolume:
    return subvol.parse_show(recorded(name), Path(path))


def test_show_source_snapshot() -> None:
    s = show("show-source-snapshot.txt")
    assert s.name == "vol.1"
    assert s.uuid == SOURCE_SNAP_UUID
    assert s.parent_uuid == "eecae107-7438-7048-bd2e-4077a12392bf"
    assert s.received_uuid is None
    assert s.readonly
    assert not s.complete  # a source snapshot is not a received copy
    assert s.subvol_id == 258
    assert s.generation == 7
    assert s.fs_path == "snaps/vol.1"
    assert s.created == datetime(2026, 11, 23, 4, 56, 43, tzinfo=UTC)


def test_show_received_copy_is_complete() -> None:
    s = show("show-received.txt")
    assert s.received_uuid == SOURCE_SNAP_UUID
    assert s.parent_uuid is None
    assert s.readonly and s.complete


def test_show_partial_receive_is_not_complete() -> None:
    s = show("show-partial-receive.txt")
    assert s.received_uuid is None
    assert not s.readonly
    assert not s.complete


def test_show_top_level_and_writable() -> None:
    top = show("show-toplevel.txt")
    assert top.subvol_id == 5
    assert top.name == "<FS_TREE>"
    assert top.fs_path == ""
    assert not top.readonly
    writable = show("show-writable-subvol.txt")
    assert writable.fs_path == "vol"
    assert not writable.readonly


def test_show_garbage_is_a_job_error() -> None:
    with pytest.raises(JobError, match="cannot understand"):
        subvol.parse_show("ERROR: not a subvolume\n", Path("/x"))


def test_list_with_uuids() -> None:
    entries = subvol.parse_list(recorded("list-u-R.txt"))
    assert [(e.subvol_id, e.top_level, e.path) for e in entries] == [
        (256, 5, "vol"),
        (257, 256, "vol/nested"),
        (258, 5, "snaps/vol.1"),
    ]
    assert entries[2].uuid == SOURCE_SNAP_UUID
    assert all(e.received_uuid is None for e in entries)
    [target] = subvol.parse_list(recorded("list-u-R-target.txt"))
    assert target.received_uuid == SOURCE_SNAP_UUID
    assert target.uuid == "baa119e1-a275-1e4e-a4c6-b74418ce5b7e"


def test_list_nested_plain_and_paths_with_spaces() -> None:
    [nested] = subvol.parse_list(recorded("list-o-nested.txt"))
    assert (nested.subvol_id, nested.path, nested.uuid) == (257, "vol/nested", None)
    [spaced] = subvol.parse_list("ID 300 gen 9 top level 5 path my dir/with path in it\n")
    assert spaced.path == "my dir/with path in it"


def test_du() -> None:
    sizes = subvol.parse_du(recorded("fs-du-s-raw.txt"))
    assert sizes == {"t/vol.1": (0, 0), "m/snaps/vol.2": (20971520, 0)}


def test_parent_is_matched_by_received_uuid() -> None:
    src_snap = show("show-source-snapshot.txt", "/src/vol.1")
    received = show("show-received.txt", "/dst/vol.1")
    choice = parent.choose([src_snap], [received])
    assert choice.parent == src_snap
    assert choice.send_args() == ["-p", Path("/src/vol.1")]
    # A partial receive carrying no received_uuid never makes a parent.
    assert parent.choose([src_snap], [show("show-partial-receive.txt")]).parent is None
    # Names do not matter: a copy of another snapshot does not match.
    assert parent.choose([show("show-writable-subvol.txt")], [received]).parent is None


def test_parent_is_the_newest_shared_and_older_ones_are_clone_sources() -> None:
    base = show("show-source-snapshot.txt")
    copy = show("show-received.txt")

    def snap(i: int) -> subvol.Subvolume:
        return subvol.Subvolume(**{**base.__dict__, "uuid": f"u{i}", "path": Path(f"/s/{i}")})

    def recv(i: int) -> subvol.Subvolume:
        return subvol.Subvolume(**{**copy.__dict__, "received_uuid": f"u{i}"})

    sources = [snap(i) for i in range(5)]  # oldest first
    choice = parent.choose(sources, [recv(0), recv(1), recv(2), recv(3)])
    assert choice.parent == sources[3]
    assert choice.clones == (sources[2], sources[1])
    assert choice.shared == ("3", "2", "1", "0")
    assert choice.send_args() == ["-p", Path("/s/3"), "-c", Path("/s/2"), "-c", Path("/s/1")]


def test_snapshot_names_sort_by_time() -> None:
    when = datetime(2026, 11, 23, 5, 55, 50, tzinfo=UTC)
    assert snapshots.source_name(Path("/home")) == "home"
    assert snapshots.source_name(Path("/")) == "root"
    assert snapshots.source_name(Path("/srv/my data")) == "my_data"
    parsed = snapshots.parse_name("home.20261123T055550Z_2")
    assert parsed is not None
    assert (parsed.source, parsed.when, parsed.seq) == ("home", when, 2)
    assert snapshots.parse_name("latest") is None
    assert snapshots.parse_name("home.20261399T000000Z") is None
    a = snapshots.parse_name("my.home.20261123T055550Z")
    b = snapshots.parse_name("my.home.20261123T055551Z")
    assert a is not None and b is not None and a < b and a.source == "my.home"


def test_new_name_sorts_after_existing_ones(tmp_path: Path) -> None:
    when = datetime(2026, 11, 23, 5, 55, 50, tzinfo=UTC)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    with SafeDir.open_root(src) as s, SafeDir.open_root(dst) as d:
        assert snapshots.new_name([s, d], "home", when) == "home.20261123T055550Z"
        (dst / "home.20261123T055550Z_1").mkdir()  # only on the other side
        assert snapshots.new_name([s, d], "home", when) == "home.20261123T055550Z_2"
        later = when + timedelta(seconds=1)
        assert snapshots.new_name([s, d], "home", later) == "home.20261123T055551Z"


def test_links_follow_the_newest_names(tmp_path: Path) -> None:
    with SafeDir.open_root(tmp_path) as folder:
        snapshots.update_links(folder, ["b", "a"])
        assert (tmp_path / "latest").readlink() == Path("b")
        assert (tmp_path / "previous").readlink() == Path("a")
        snapshots.update_links(folder, ["c"])
        assert (tmp_path / "latest").readlink() == Path("c")
        assert not (tmp_path / "previous").is_symlink()
        snapshots.update_links(folder, [])
        assert not (tmp_path / "latest").is_symlink()
        (tmp_path / "latest").mkdir()  # a user's folder is never replaced
        snapshots.update_links(folder, ["d"])
        assert (tmp_path / "latest").is_dir() and not (tmp_path / "latest").is_symlink()
        (tmp_path / ".previous.new").symlink_to("/etc")  # left by a killed swap
        snapshots.leftover_links(folder)
        assert not (tmp_path / ".previous.new").is_symlink()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_disk_state_is_validated_when_read(tmp_path: Path) -> None:
    from coldvault.jobs.btrfs import diskstate

    state = diskstate.with_sent(diskstate.DiskState(), "full", 123)
    state = diskstate.with_verified(state, {}, {"u1": ("data.20261123T055550Z", ("bad",))})
    assert diskstate.parse(state.to_json()) == state
    cleared = diskstate.with_verified(state, {"u1": "data.20261123T055550Z"}, {})
    assert cleared.damaged == {} and cleared.sent == {"full": 123}
    for text in (
        "[]",
        '{"version": 2}',
        '{"version": 1, "sent": {"full": -1}}',
        '{"version": 1, "sent": {"x": 1}}',
        '{"version": 1, "damaged": {"u": 5}}',
        "{",
    ):
        with pytest.raises(ValueError):
            diskstate.parse(text)
    with SafeDir.open_root(tmp_path) as folder:
        (tmp_path / diskstate.FILE).symlink_to("/etc/passwd")  # never followed
        assert diskstate.load(folder) == diskstate.DiskState()
        (tmp_path / diskstate.FILE).unlink()
        (tmp_path / diskstate.FILE).write_text("garbage")
        assert diskstate.load(folder) == diskstate.DiskState()
        diskstate.save(folder, state)
        assert diskstate.load(folder) == state


def test_progress_estimate_is_never_below_what_is_done() -> None:
    from coldvault.progress import ProgressMeter

    seen = []
    meter = ProgressMeter("j", "sending", seen.append, 100, estimate=True)
    meter.update(50)
    meter.emit()
    assert seen[-1].total_bytes == 100 and seen[-1].total_is_estimate
    assert "of about 100 B" in seen[-1].describe()
    meter.update(300)
    meter.emit()
    assert seen[-1].total_bytes == 300 and seen[-1].eta_seconds == 0.0


def test_compressed_data_support_names_what_is_missing(tmp_path: Path) -> None:
    from tests.conftest import require_programs

    from coldvault.jobs.btrfs import transfer

    require_programs("btrfs")
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.write_text("1\n")
    v2.write_text("2\n")
    assert transfer.compressed_data_support(v2) is None  # btrfs-progs 6.2 has the option
    missing = transfer.compressed_data_support(v1)
    assert missing is not None and "send stream version 1" in missing
    assert "version 1" in str(transfer.compressed_data_support(tmp_path / "absent"))
    argv = transfer.send_argv(Path("/s"), ["-p", Path("/p")], compressed=True)
    assert argv == [
        "btrfs",
        "send",
        "--proto",
        "2",
        "--compressed-data",
        "-p",
        Path("/p"),
        Path("/s"),
    ]


def test_damaged_copies_are_never_parents() -> None:
    def sv(name: str, uuid: str, received: str | None = None) -> subvol.Subvolume:
        return subvol.Subvolume(Path(name), name, uuid, None, received, 1, 1, True, None)

    local = [sv("d.1", "s1"), sv("d.2", "s2"), sv("d.3", "s3")]  # oldest first
    copies = [sv("d.1", "c1", "s1"), sv("d.2", "c2", "s2"), sv("d.3", "c3", "s3")]
    assert parent.choose(local, copies).parent == local[2]
    choice = parent.choose(local, copies, {"c3"})
    assert choice.parent == local[1] and choice.damaged == ("d.3",)
    assert local[2] not in choice.clones
    none_good = parent.choose(local, copies, {"c1", "c2", "c3"})
    assert none_good.parent is None and none_good.damaged == ("d.3", "d.2", "d.1")
    renamed = [sv("before-upgrade", "c9", "s2")]  # any name: matched by received_uuid
    assert parent.choose(local, renamed).parent == local[1]
