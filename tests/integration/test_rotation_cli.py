"""One-shot commands with several disks: ``--disk NAME``, or the one attached, or ask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration.daemon_env import completed_snapshots
from tests.integration.rotation_env import Env, FolderDisk

MiB = 1 << 20


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, with_photos=True)


def snapshots(disk: FolderDisk, folder: str) -> int:
    return len(completed_snapshots(disk.root / folder))


def test_none_or_several_attached_asks_for_disk(env: Env) -> None:
    for args in (["run"], ["list", "root"], ["open"], ["disk", "status"]):
        done = env.cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "2 disks are configured and none is attached: say which with --disk NAME" in (
            done.stderr
        )
        assert "disks configured: home, office" in done.stderr
    env.home.plug()
    env.office.plug()
    done = env.cli("run")
    assert done.returncode == 2 and "attached: home, office" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshots(env.home, "root") == snapshots(env.office, "root") == 0


def test_the_one_attached_disk_is_used(env: Env) -> None:
    env.home.plug()
    done = env.cli("run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        done.stdout.splitlines()[0]
    ]  # root only: photos is office's
    assert snapshots(env.home, "root") == 1 and snapshots(env.office, "root") == 0
    assert env.state("home")["root"]["result"] == "success"
    listed = env.cli("list", "root")
    assert listed.returncode == 0 and "snapshot-" in listed.stdout


def test_disk_names_the_disk(env: Env) -> None:
    env.home.plug()
    env.office.plug()
    done = env.cli("run", "--disk", "office")
    assert done.returncode == 0, done.stderr
    assert snapshots(env.office, "root") == 1 and snapshots(env.office, "p") == 1
    assert snapshots(env.home, "root") == 0
    assert set(env.state("office")) == {"root", "photos"}
    verify = env.cli("verify", "root", "--disk", "office")
    assert verify.returncode == 0 and "all good" in verify.stdout, verify.stderr
    restored = env.tmp / "restored.img"
    back = env.cli("restore", "root", str(restored), "--disk", "office")
    assert back.returncode == 0, back.stderr
    assert restored.read_bytes() == (env.tmp / "source.img").read_bytes()
    status = env.cli("disk", "status", "--disk", "office", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["present"] is True
    opened = env.cli("open", "--disk", "office")
    assert opened.returncode == 0 and str(env.office.root) in opened.stdout, opened.stderr
    assert env.cli("close", "--disk", "office").returncode == 0


def test_unknown_disk_and_a_job_on_another_disk_are_refused(env: Env) -> None:
    env.home.plug()
    done = env.cli("run", "--disk", "attic")
    assert done.returncode == 2 and "no disk named 'attic'" in done.stderr
    done = env.cli("run", "--disk", "home", "photos")
    assert done.returncode == 2
    assert "job 'photos' does not back up to disk 'home'" in done.stderr
    assert "its disks: office" in done.stderr


def test_token_init_on_the_named_disk(env: Env) -> None:
    (env.office.root / ".token").unlink()
    env.office.hash_file.unlink()
    env.office.plug()
    env.home.plug()
    done = env.cli("token", "init", "--disk", "office")
    assert done.returncode == 0, done.stderr
    assert (env.office.root / ".token").is_file() and env.office.hash_file.is_file()
    home_token = (env.home.root / ".token").read_bytes()
    assert home_token != (env.office.root / ".token").read_bytes()
