"""The daemon's offsite copies: after the backups of a session, and without a disk for
copies from the source side."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from tests.integration.btrfs_env import MakeFs, create_subvolume, make_fs, random_file
from tests.integration.daemon_env import DaemonEnv, daemon_env, image_job

__all__ = ["make_fs"]
MiB = 1 << 20


def _target(tmp: Path, **extra: object) -> dict[str, object]:
    password = tmp / "restic.pass"
    password.write_text("pw\n")
    password.chmod(0o600)
    repo = tmp / "repo"
    env = {**os.environ, "RESTIC_PASSWORD_FILE": str(password)}
    subprocess.run(["restic", "-r", str(repo), "init"], env=env, check=True, capture_output=True)
    return {"name": "local", "repository": str(repo), "password_file": str(password), **extra}


def _add_offsite(config: Path, target: dict[str, object]) -> None:
    data = yaml.safe_load(config.read_text())
    data["offsite"] = [target]
    config.write_text(yaml.safe_dump(data))


def _restic_snapshots(tmp: Path) -> int:
    env = {**os.environ, "RESTIC_PASSWORD_FILE": str(tmp / "restic.pass")}
    out = subprocess.run(
        ["restic", "-r", str(tmp / "repo"), "--no-lock", "snapshots", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.count('"id"')


def _plug_and_wait_for_copy(env: DaemonEnv, tmp: Path, job: str) -> str:
    """Plug the disk, start the daemon, wait for the job's first copy; the daemon's log."""
    env.disk.write_bytes(b"")
    env.start()
    env.wait_until("the offsite copy", lambda: f"offsite local: {job}" in env.log_text())
    assert _restic_snapshots(tmp) == 1
    return env.log_text()


def test_image_copy_follows_the_backup_in_the_session(tmp_path: Path) -> None:
    with daemon_env(tmp_path) as env:
        source = tmp_path / "source.img"
        source.write_bytes(os.urandom(2 * MiB))
        env.write_config([image_job("root", source)])
        _add_offsite(env.config, _target(tmp_path))
        log = _plug_and_wait_for_copy(env, tmp_path, "root")
        assert log.index("root: backup finished") < log.index("offsite local: root")
        assert env.stop() == 0


def test_source_side_copies_run_after_the_disk_closed_and_without_it(
    make_fs: MakeFs, tmp_path: Path
) -> None:
    src = make_fs("src")
    data = create_subvolume(src.mount / "data")
    random_file(data / "a.bin", 2 * MiB)
    with daemon_env(tmp_path) as env:
        backup = make_fs("bdisk")
        env.backup = backup.mount
        job = {
            "name": "data",
            "type": "btrfs",
            "sources": [str(data)],
            "offsite_from": "source",
            "every": "1d",
        }
        env.write_config([job])
        _add_offsite(env.config, _target(tmp_path, every="1h"))
        log = _plug_and_wait_for_copy(env, tmp_path, "data")
        assert log.index("may be unplugged") < log.index("offsite local: data")
        assert env.stop() == 0
        # Away from the disk: a new source snapshot (made by hand here) is copied by schedule.
        env.disk.unlink()
        state = tmp_path / "state.offsite.json"
        state.unlink()  # forget the last copy: it is due again
        snaps = src.mount / ".coldvault-snapshots" / "data" / "data"
        names = sorted(p.name for p in snaps.iterdir() if p.name.startswith("data.20"))
        stamp = names[-1].split(".", 1)[1]
        later = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ") + timedelta(minutes=1)
        newer = f"data.{later:%Y%m%dT%H%M%SZ}"
        random_file(data / "b.bin", MiB)
        subprocess.run(
            ["btrfs", "subvolume", "snapshot", "-r", str(data), str(snaps / newer)],
            check=True,
            capture_output=True,
        )
        env.start()
        env.wait_until("a copy without the disk", lambda: _restic_snapshots(tmp_path) == 2)
        assert env.stop() == 0
