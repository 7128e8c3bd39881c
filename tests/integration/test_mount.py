"""``coldvault mount`` / ``umount`` against real parts: real image jobs, FUSE, loop devices,
ext4 and btrfs file systems, a killed FUSE server and a real lock.

The backup disk is a plain folder (``require_mount: false``) except where the test is
about the disk stack itself; there it is an ext4 file system on a loop device that
``coldvault mount`` mounts and ``umount`` unmounts again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.conftest import ROOT, require, require_programs, require_root

MiB = 1 << 20
WAIT = 120.0  # a bound for a command that should take seconds, not a timing claim


def sh(*argv: str | Path) -> str:
    return subprocess.run(
        [str(a) for a in argv], check=True, capture_output=True, text=True
    ).stdout.strip()


def tree_digest(top: Path) -> dict[str, str]:
    """relative path → sha256 of a file, ``link:TARGET`` of a symlink, ``dir`` of a folder."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(top))
            if rel == "lost+found":
                continue
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        dirs[:] = [d for d in dirs if d != "lost+found" and not (Path(folder) / d).is_symlink()]
    return out


class Env:
    """A configuration with one image job, and the coldvault CLI run as a real process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.backup = tmp / "backup"
        self.backup.mkdir()
        self.runtime = tmp / "run"
        self.config = tmp / "config.yaml"
        self.source = tmp / "source.img"
        self.disk: dict[str, object] = {
            "mount": {"point": str(self.backup), "require_mount": False}
        }

    def write_config(self, **job: object) -> None:
        data = {
            "disk": self.disk,
            "settings": {
                "state_file": str(self.tmp / "state.json"),
                "runtime_dir": str(self.runtime),
                "lock_file": str(self.tmp / "lock"),
            },
            "jobs": [
                {
                    "name": "img",
                    "type": "image",
                    "source": str(self.source),
                    "part_size": "4M",
                    "block_size": "1M",
                    "hash": "blake3",
                    **job,
                }
            ],
        }
        self.config.write_text(yaml.safe_dump(data))

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "daemon")}
        return subprocess.run(
            [sys.executable, "-m", "coldvault", "-c", str(self.config), *map(str, args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )

    def ok(self, *args: str | Path) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr
        return done.stdout

    def records(self) -> list[dict[str, object]]:
        folder = self.runtime / "mounts"
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def snapshots(self) -> list[str]:
        return sorted(p.name for p in (self.backup / "img").glob("snapshot-2*"))


def _force_cleanup(env: Env) -> None:
    """Whatever a failed test left: unmount, detach, kill (never a broad name)."""
    for rec in env.records():
        subprocess.run(
            [sys.executable, "-m", "coldvault", "-c", str(env.config), "umount", str(rec["dir"])],
            env={**os.environ, "PYTHONPATH": str(ROOT / "daemon")},
            capture_output=True,
            check=False,
            timeout=WAIT,
        )
    for rec in env.records():
        for point in reversed([*rec["mounts"], rec["fuse_dir"]]):  # type: ignore[list-item]
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
        for loop in rec.get("loops", []):  # type: ignore[attr-defined]
            subprocess.run(["losetup", "-d", str(loop)], check=False, capture_output=True)
        if rec.get("pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(rec["pid"]), signal.SIGKILL)  # type: ignore[arg-type]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    require_root()
    require(Path("/dev/fuse").exists(), "needs /dev/fuse")
    require_programs("losetup", "blkid", "mount", "umount", "mkfs.ext4")
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        require(False, "needs pyfuse3")
    e = Env(tmp_path)
    e.write_config()
    try:
        yield e
    finally:
        _force_cleanup(e)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[list[str]]:
    """Loop devices and mount points a test makes by hand; released afterwards."""
    made: list[str] = []
    try:
        yield made
    finally:
        for item in reversed(made):
            if item.startswith("/dev/loop"):
                subprocess.run(["losetup", "-d", item], check=False)
            else:
                subprocess.run(["umount", item], check=False)


def loop_of(image: Path, scratch: list[str], *, partitions: bool = False) -> str:
    dev = sh("losetup", "-f", "--show", *(["-P"] if partitions else []), image)
    scratch.append(dev)
    return dev


def mount_rw(dev: str | Path, point: Path, scratch: list[str]) -> None:
    point.mkdir(exist_ok=True)
    sh("mount", dev, point)
    scratch.append(str(point))


def release(point: Path, scratch: list[str]) -> None:
    sh("umount", point)
    scratch.remove(str(point))


def assert_nothing_left(env: Env, rec: dict[str, object]) -> None:
    """No mount, loop device, FUSE process or record of ``rec`` remains."""
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert f" {rec['dir']} " not in mountinfo
    assert f" {rec['fuse_dir']} " not in mountinfo
    for point in rec["mounts"]:  # type: ignore[attr-defined]
        assert f" {point} " not in mountinfo
    assert str(rec["image"]) not in sh("losetup", "-a")
    pid = int(rec["pid"])  # type: ignore[arg-type]
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "Z", f"the FUSE server {pid} still runs"
    except FileNotFoundError:
        pass
    assert env.records() == []
    assert not Path(str(rec["fuse_dir"])).exists() or rec["raw"]


# -- an ext4 image with a real file tree, backed up twice -------------------------------


def test_each_snapshot_mounts_with_the_tree_as_it_was(env: Env, scratch: list[str]) -> None:
    sh("truncate", "-s", "256M", env.source)
    sh("mkfs.ext4", "-q", "-F", env.source)
    src = env.tmp / "src"
    mount_rw(loop_of(env.source, scratch), src, scratch)
    sh("cp", "-a", "/usr/share/doc", src / "doc")
    first = tree_digest(src)
    assert len(first) > 100
    release(src, scratch)
    env.ok("run", "img")

    mount_rw(scratch[0], src, scratch)
    victims = sorted(p for p in first if first[p] not in ("dir",) and "link:" not in first[p])
    (src / victims[0]).write_bytes(b"changed between the backups\n" * 1000)
    (src / victims[1]).unlink()
    (src / "new-file").write_bytes(os.urandom(3 * MiB))
    second = tree_digest(src)
    assert second != first
    release(src, scratch)
    time.sleep(1.1)  # a snapshot name has one-second resolution
    env.ok("run", "img")

    names = env.snapshots()
    assert len(names) == 2
    view = env.tmp / "view"
    for name, expected in zip(names, (first, second), strict=True):
        out = env.ok("mount", "img", view, "--snapshot", name)
        assert name in out and "no manifest" not in out and "noload" not in out
        rec = env.records()[0]
        assert rec["mounts"] == [str(view)] and len(rec["loops"]) == 1  # type: ignore[arg-type]
        assert tree_digest(view) == expected
        assert "ro" in _options(view)
        with pytest.raises(OSError) as err:
            (view / "written-through-a-backup").write_text("x")
        assert err.value.errno == errno.EROFS
        env.ok("umount", view)
        assert_nothing_left(env, rec)
    out = env.ok("mount", "img", view)  # latest
    assert names[-1] in out
    assert tree_digest(view) == second
    env.ok("umount", view)


def _options(point: Path) -> list[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(point):
            return fields[5].split(",")
    raise AssertionError(f"{point} is not mounted")


# -- a partition table with two partitions ----------------------------------------------


def test_each_partition_mounts_under_its_number(env: Env, scratch: list[str]) -> None:
    require_programs("sgdisk", "mkfs.btrfs")
    env.write_config(hash="sha256", part_size="8M")
    sh("truncate", "-s", "200M", env.source)
    sh("sgdisk", "-n", "1:2048:+40M", "-n", "2:0:0", env.source)
    # Each partition through a loop device over its range (this kernel may lack the
    # partition-table parsers that `losetup -P` needs).
    table = sh("partx", "-g", "-b", "-o", "NR,START,SECTORS", env.source).splitlines()
    ranges = {int(n): (int(s) * 512, int(c) * 512) for n, s, c in map(str.split, table)}
    assert sorted(ranges) == [1, 2]
    contents = {}
    for number, make in ((1, "mkfs.ext4"), (2, "mkfs.btrfs")):
        offset, size = ranges[number]
        dev = sh("losetup", "-f", "--show", "-o", str(offset), "--sizelimit", str(size), env.source)
        scratch.append(dev)
        sh(make, "-q", "-f" if make == "mkfs.btrfs" else "-F", dev)
        point = env.tmp / f"src{number}"
        mount_rw(dev, point, scratch)
        contents[number] = os.urandom(MiB + number)
        (point / f"file{number}").write_bytes(contents[number])
        release(point, scratch)
        sh("losetup", "-d", dev)
        scratch.remove(dev)
    env.ok("run", "img")

    view = env.tmp / "view"
    out = env.ok("mount", "img", view)
    rec = env.records()[0]
    assert rec["mounts"] == [str(view / "p1"), str(view / "p2")], out
    for number in (1, 2):
        assert (view / f"p{number}" / f"file{number}").read_bytes() == contents[number]
    env.ok("umount", view)
    assert_nothing_left(env, rec)
    assert not (view / "p1").exists()


# -- an unclean file system: mounted without replaying its journal, and said so ----------


def test_unclean_ext4_mounts_with_noload_and_says_so(env: Env, scratch: list[str]) -> None:
    live = env.tmp / "live.img"
    sh("truncate", "-s", "64M", live)
    sh("mkfs.ext4", "-q", "-F", live)
    point = env.tmp / "live"
    mount_rw(loop_of(live, scratch), point, scratch)
    (point / "kept").write_bytes(b"written before the copy\n")
    sh("sync")
    # A copy taken while it is mounted: its superblock says the journal needs recovery.
    sh("cp", "--sparse=always", live, env.source)
    release(point, scratch)
    env.ok("run", "img")
    view = env.tmp / "view"
    out = env.ok("mount", "img", view)
    assert "noload" in out and "newest changes may be missing" in out
    assert any("noload" in note for note in env.records()[0]["notes"])  # type: ignore[attr-defined]
    assert (view / "kept").read_bytes() == b"written before the copy\n"
    env.ok("umount", view)


# -- a corrupt part, a planted symlink, a snapshot without a manifest ---------------------


def _raw_source(env: Env, parts: int) -> bytes:
    data = b"".join(
        bytes(4 * MiB) if i == 1 else os.urandom(4 * MiB) for i in range(parts - 1)
    ) + os.urandom(MiB + 512)  # a zero part, and a shorter last part
    env.source.write_bytes(data)
    env.ok("run", "img")
    return data


def test_a_corrupt_part_reads_as_eio_and_the_rest_reads_fine(env: Env) -> None:
    data = _raw_source(env, 5)
    snap = env.backup / "img" / env.snapshots()[0]
    assert (snap / "part_00000001").stat().st_size == 0  # stored as a 0-byte part
    part = snap / "part_00000002"
    fd = os.open(part, os.O_WRONLY)
    os.pwrite(fd, b"\xff", 12345)  # bit rot in the middle of part 2
    os.close(fd)
    view = env.tmp / "view"
    out = env.ok("mount", "img", view, "--raw")
    image = view / "img.img"
    assert image.stat().st_size == len(data) and "image file" in out
    fd = os.open(image, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as err:
            os.pread(fd, 4096, 2 * 4 * MiB + 8192)
        assert err.value.errno == errno.EIO
        with pytest.raises(OSError):  # a second read of the bad part fails the same way
            os.pread(fd, 100, 3 * 4 * MiB - 100)
        for index in (0, 1, 3, 4):
            start = index * 4 * MiB
            length = min(4 * MiB, len(data) - start)
            assert os.pread(fd, length, start) == data[start : start + length], index
    finally:
        os.close(fd)
    log = next((env.runtime / "mounts").glob("*.log")).read_text()
    assert "part_00000002" in log and "corrupt" in log
    env.ok("umount", view)


def test_a_symlinked_part_is_refused_not_followed(env: Env) -> None:
    data = _raw_source(env, 3)
    snap = env.backup / "img" / env.snapshots()[0]
    outside = env.tmp / "outside"
    outside.write_bytes(data[: 4 * MiB])  # the right bytes, but not beneath the snapshot
    (snap / "part_00000000").unlink()
    (snap / "part_00000000").symlink_to(outside)
    view = env.tmp / "view"
    env.ok("mount", "img", view, "--raw")
    with (view / "img.img").open("rb") as f:
        with pytest.raises(OSError) as err:
            f.read(4096)
        assert err.value.errno == errno.EIO
        f.seek(2 * 4 * MiB)
        assert f.read() == data[2 * 4 * MiB :]
    env.ok("umount", view)


def test_a_snapshot_without_manifest_mounts_unchecked_and_says_so(env: Env) -> None:
    data = _raw_source(env, 3)
    snap = env.backup / "img" / env.snapshots()[0]
    (snap / ".coldvault-manifest.json").unlink()  # as the original script left its folders
    view = env.tmp / "view"
    out = env.ok("mount", "img", view, "--raw")
    assert "no manifest" in out
    assert (view / "img.img").read_bytes() == data
    env.ok("umount", view)


# -- umount leaves nothing behind, also after SIGKILL; the lock is held while mounted ----


def _small_fs(env: Env) -> None:
    sh("truncate", "-s", "32M", env.source)
    sh("mkfs.ext4", "-q", "-F", env.source)
    env.ok("run", "img")


def test_umount_after_the_fuse_server_was_killed(env: Env) -> None:
    _small_fs(env)
    view = env.tmp / "view"
    env.ok("mount", "img", view)
    rec = env.records()[0]
    os.kill(int(rec["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
    out = env.ok("umount", view)
    assert "unmounted" in out
    assert_nothing_left(env, rec)
    assert not view.exists()  # mount made it, umount removed it


def test_umount_of_a_raw_mount_after_sigkill(env: Env) -> None:
    _small_fs(env)
    view = env.tmp / "view"
    env.ok("mount", "img", view, "--raw")
    rec = env.records()[0]
    os.kill(int(rec["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
    env.ok("umount", view)
    assert_nothing_left(env, rec)


def test_the_lock_is_held_while_mounted(env: Env) -> None:
    _small_fs(env)
    view = env.tmp / "view"
    env.ok("mount", "img", view)
    rec = env.records()[0]
    busy = env.cli("run", "img")
    assert busy.returncode == 5, busy.stdout + busy.stderr
    assert f"coldvault process {rec['pid']}" in busy.stderr
    closing = env.cli("close")
    assert closing.returncode == 5
    status = env.cli("status")
    assert f"mounted: img {rec['snapshot']} at {view} (holds the backup disk)" in status.stdout
    listed = json.loads(env.cli("status", "--json").stdout)["mounts"]
    assert [(m["dir"], m["running"]) for m in listed] == [(str(view), True)]
    again = env.cli("mount", "img", view)
    assert again.returncode != 0 and "already" in again.stderr
    env.ok("umount", view)
    assert_nothing_left(env, rec)
    env.ok("run", "img")  # free again


def test_umount_of_something_not_mounted_fails_clearly(env: Env) -> None:
    done = env.cli("umount", env.tmp / "nothing")
    assert done.returncode == 1 and "nothing mounted" in done.stderr
    assert "Traceback" not in done.stderr


# -- the disk stack: mount opens the backup disk, umount closes it again ---------------


def test_mount_opens_and_umount_closes_the_backup_disk(env: Env, scratch: list[str]) -> None:
    disk_img = env.tmp / "disk.img"
    sh("truncate", "-s", "128M", disk_img)
    sh("mkfs.ext4", "-q", "-F", disk_img)
    dev = loop_of(disk_img, scratch)
    point = env.tmp / "disk"
    env.disk = {"mount": {"point": str(point), "device": dev, "fstype": "ext4"}}
    env.write_config()
    env.source.write_bytes(os.urandom(5 * MiB))
    env.ok("run", "img")  # opens and closes the disk itself
    assert f" {point} " not in Path("/proc/self/mountinfo").read_text()
    view = env.tmp / "view"
    env.ok("mount", "img", view, "--raw")
    rec = env.records()[0]
    assert rec["disk_layers"] == ["mount"]
    assert f" {point} " in Path("/proc/self/mountinfo").read_text()
    assert (view / "img.img").read_bytes() == env.source.read_bytes()
    out = env.ok("umount", view)
    assert "closed the backup disk" in out
    assert f" {point} " not in Path("/proc/self/mountinfo").read_text()
    # Opened by hand (`coldvault open`): mount leaves it open.
    env.ok("open")
    env.ok("mount", "img", view, "--raw")
    assert env.records()[0]["disk_layers"] == []
    env.ok("umount", view)
    assert f" {point} " in Path("/proc/self/mountinfo").read_text()
    env.ok("close")


# -- a mount that fails half-way undoes what it did ---------------------------------------


def test_a_failed_mount_leaves_nothing_behind(env: Env) -> None:
    _raw_source(env, 2)  # random bytes: no file system, no partition table
    view = env.tmp / "view"
    done = env.cli("mount", "img", view)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no file system or partition table" in done.stderr and "--raw" in done.stderr
    assert "Traceback" not in done.stderr
    assert env.records() == [] and not view.exists()
    assert " fuse" not in "".join(
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines(True)
        if str(env.tmp) in line
    )
    env.ok("run", "img")  # the lock was released


def test_a_malformed_manifest_is_refused(env: Env) -> None:
    _raw_source(env, 2)
    manifest = env.backup / "img" / env.snapshots()[0] / ".coldvault-manifest.json"
    data = json.loads(manifest.read_text())
    data["parts"][0]["hash"] = "../../etc/passwd"
    manifest.write_text(json.dumps(data))
    done = env.cli("mount", "img", env.tmp / "view", "--raw")
    assert done.returncode == 1 and "malformed" in done.stderr, done.stderr
    assert env.records() == []


def test_a_busy_mount_is_reported_and_a_second_umount_finishes(env: Env) -> None:
    _small_fs(env)
    view = env.tmp / "view"
    env.ok("mount", "img", view)
    rec = env.records()[0]
    holder = subprocess.Popen(["sleep", "600"], cwd=view)
    try:
        busy = env.cli("umount", view)
        assert busy.returncode == 1, busy.stdout + busy.stderr
        assert f"pid {holder.pid}" in busy.stderr and "working directory" in busy.stderr
        assert env.records() != []  # nothing was torn down under the busy mount
        assert (view / "lost+found").is_dir()
    finally:
        holder.kill()
        holder.wait()
    env.ok("umount", view)
    assert_nothing_left(env, rec)
