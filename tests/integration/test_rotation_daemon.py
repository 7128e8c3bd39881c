"""The real daemon with two plain-folder disks in rotation: each disk gets its own backups."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.daemon_env import DaemonEnv, completed_snapshots, daemon_env, image_job
from tests.integration.rotation_env import folder_disk, write_config

MiB = 1 << 20


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DaemonEnv]:
    with daemon_env(tmp_path) as e:
        yield e


def disk_jobs(env: DaemonEnv, disk: str) -> dict[str, dict[str, object]]:
    raw = json.loads(env.state.read_text())
    if disk == "default":
        jobs: dict[str, dict[str, object]] = raw["jobs"]
        return jobs
    return raw.get("disks", {}).get(disk, {}).get("jobs", {})


def succeeded(env: DaemonEnv, disk: str, job: str) -> int:
    """How many snapshots the job has on the disk (0 before its first success)."""
    if not env.state.exists() or disk_jobs(env, disk).get(job, {}).get("result") != "success":
        return 0
    return 1


def test_two_disks_in_turn_each_get_their_due_jobs(env: DaemonEnv) -> None:
    src = env.tmp / "source.img"
    src.write_bytes(os.urandom(2 * MiB))
    home, office = folder_disk(env.tmp, "home"), folder_disk(env.tmp, "office")
    jobs = [image_job("root", src), image_job("photos", src, disks=["office"], target="photos")]
    write_config(env.config, env.tmp, [home, office], jobs)
    env.start()
    env.notify.wait_for(lambda m: "READY=1" in m)

    home.plug()
    env.wait_until("root on home", lambda: succeeded(env, "home", "root") > 0)
    assert len(completed_snapshots(home.root / "root")) == 1
    assert not (home.root / "photos").exists()  # photos only goes to office
    assert succeeded(env, "office", "root") == 0  # office is away: nothing ran there
    home.unplug()
    env.wait_until("home unplugged", lambda: "went away" in env.log_text())

    office.plug()
    env.wait_until("photos on office", lambda: succeeded(env, "office", "photos") > 0)
    env.wait_until("root on office", lambda: succeeded(env, "office", "root") > 0)
    assert len(completed_snapshots(office.root / "root")) == 1
    assert len(completed_snapshots(office.root / "photos")) == 1
    # root was due on office although it succeeded on home an instant before.
    assert len(completed_snapshots(home.root / "root")) == 1

    # Both present: nothing is due any more on either; no second session on home.
    home.plug()
    appeared = f"backup disk home: {home.device} appeared"
    env.wait_until("home back", lambda: env.log_text().count(appeared) == 2)
    for _ in range(2):  # the turn that saw home come back has decided by the next ping
        env.notify.wait_for(lambda m: m == "WATCHDOG=1")
    assert len(completed_snapshots(home.root / "root")) == 1
    assert env.stop() == 0
    log = env.log_text()
    assert log.count("starting a disk session on home for root") == 1
    assert "starting a disk session on office for root, photos" in log
    assert "Traceback" not in log


def test_disks_present_at_once_are_served_one_after_the_other(env: DaemonEnv) -> None:
    src = env.tmp / "source.img"
    src.write_bytes(os.urandom(MiB))
    disks = [folder_disk(env.tmp, n) for n in ("a", "b")]
    for d in disks:
        d.plug()
    write_config(env.config, env.tmp, disks, [image_job("root", src)])
    env.start()
    env.wait_until("root on a and b", lambda: all(succeeded(env, d.name, "root") for d in disks))
    assert env.stop() == 0
    log = env.log_text().splitlines()
    starts = [i for i, ln in enumerate(log) if "starting a disk session" in ln]
    ends = [i for i, ln in enumerate(log) if "root: backup finished" in ln]
    assert len(starts) == 2
    assert [ln.split(" on ")[1].split()[0] for ln in (log[i] for i in starts)] == ["a", "b"]
    # The second session started after the first one's backup was done (one at a time).
    assert starts[0] < ends[0] < starts[1] < ends[1], "\n".join(log)


def test_wrong_token_on_one_disk_does_not_hold_the_other(env: DaemonEnv) -> None:
    src = env.tmp / "source.img"
    src.write_bytes(os.urandom(MiB))
    good, bad = folder_disk(env.tmp, "good"), folder_disk(env.tmp, "bad")
    (bad.root / ".token").write_bytes(b"another disk")  # rejected
    write_config(env.config, env.tmp, [bad, good], [image_job("root", src)])
    bad.plug()
    good.plug()
    env.start()
    env.wait_until("root on good", lambda: succeeded(env, "good", "root") > 0)
    assert env.stop() == 0
    assert not (bad.root / "root").exists()  # nothing written to the rejected disk
    state = disk_jobs(env, "bad")["root"]
    assert state["result"] == "failed"


def test_long_absent_disk_is_logged_and_shown_by_status(env: DaemonEnv) -> None:
    from datetime import UTC, datetime, timedelta

    from coldvault.service.state import StateFile

    src = env.tmp / "source.img"
    src.write_bytes(os.urandom(MiB))
    home, office = folder_disk(env.tmp, "home"), folder_disk(env.tmp, "office")
    write_config(env.config, env.tmp, [home, office], [image_job("root", src)])
    StateFile(env.state, "office").seen(datetime.now(UTC) - timedelta(days=41, hours=1))
    home.plug()
    env.start()
    env.wait_until("root on home", lambda: succeeded(env, "home", "root") > 0)
    env.wait_until(
        "absent event", lambda: "backup disk office: last seen 41 days ago" in env.log_text()
    )
    text = env.cli("status")
    assert text.returncode == 0, text.stdout + text.stderr  # root is fresh on home
    assert "WARNING: office: last seen 41 days ago" in text.stdout
    assert "disk home: present" in text.stdout and "disk office: absent" in text.stdout
    assert (
        "  on home: last success" in text.stdout
        and "  on office: last success never" in text.stdout
    )
    data = env.status_json()
    assert {d["name"]: d["absent_days"] for d in data["disks"]} == {"home": None, "office": 41}
    assert [d["result"] for d in data["jobs"][0]["disks"]] == ["success", None]
    assert env.stop() == 0
    assert env.log_text().count("last seen 41 days ago") == 1  # once per absence
