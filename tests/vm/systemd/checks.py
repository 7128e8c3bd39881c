"""The checks of the systemd VM test, run by coldvault-vmtest.service in the guest.

systemd is PID 1 here (see ``init`` beside this file) and coldvault.service is the
real hardened unit with ExecStart pointing at this checkout's venv. Each check
drives the service the way an administrator would (systemctl, journalctl,
plugging a loop device that carries LUKS + ext4) and records what it saw in
``$CVTEST_OUT/results.json``; tests/vm/test_systemd.py asserts on the host. The
last checks replace that unit by the Debian package (two builds the host made,
in ``$CVTEST_DEBS``): install, enable, upgrade with the daemon running, remove,
purge, with dpkg as apt would run it. At the end the guest powers off
through sysrq (systemd in "container" mode would only exit, which makes the
kernel panic instead of powering off).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from coldvault.events import Event

OUT = Path(os.environ["CVTEST_OUT"])
WORK = Path("/run/cvtest")
UNIT = "coldvault.service"
MAPPING = "cvtest-backup"
KEY = WORK / "backup.key"
DISK = WORK / "disk.img"
SOURCE = WORK / "source.img"
CONFIG = WORK / "config.yaml"
POINT = WORK / "mnt"
HASH_FILE = WORK / "token.sha512"
SD_MESSAGE_UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"
DEBS = Path(os.environ.get("CVTEST_DEBS", "/nonexistent"))
PACKAGED_UNIT = "/lib/systemd/system/coldvault.service"
# dpkg and the maintainer scripts run with Debian's PATH, not the venv's python3.
DPKG_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LANG": "C.UTF-8",
}

results: dict[str, dict[str, object]] = {}


def sh(
    *argv: str | Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, env=env
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} -> {done.returncode}: {done.stderr}")
    return done


def show(prop: str) -> str:
    return sh("systemctl", "show", "-p", prop, "--value", UNIT).stdout.strip()


def wait_for(what: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.5)
    return what()


def journal(*matches: str) -> list[dict[str, str]]:
    """``journalctl -u coldvault MATCHES`` as JSON entries (oldest first)."""
    out = sh("journalctl", "-u", UNIT, "-o", "json", "--no-pager", *matches, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def events(name: str) -> list[dict[str, str]]:
    return journal(f"COLDVAULT_EVENT={name}")


def record(name: str, ok: bool, detail: str, started: float) -> None:
    results[name] = {"ok": ok, "detail": detail, "seconds": round(time.monotonic() - started, 1)}
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(f"CVTEST {'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def check(name: str) -> Callable[[Callable[[], str]], Callable[[], None]]:
    """Run the decorated function as one check: its return is the detail, raising fails."""

    def wrap(fn: Callable[[], str]) -> Callable[[], None]:
        def run() -> None:
            started = time.monotonic()
            try:
                record(name, True, fn(), started)
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
                record(name, False, detail, started)

        return run

    return wrap


# --- the backup disk: a loop device carrying LUKS + ext4 and a token ------------------


def plug() -> str:
    return sh("losetup", "-f", "--show", DISK).stdout.strip()


def unplug() -> None:
    for line in sh("losetup", "-j", DISK).stdout.splitlines():
        sh("losetup", "-d", line.split(":")[0])


def make_disk() -> str:
    """Build the disk; return the LUKS UUID (the daemon waits for /dev/disk/by-uuid/…)."""
    WORK.mkdir(parents=True, exist_ok=True)
    KEY.write_bytes(os.urandom(64))
    KEY.chmod(0o600)
    with DISK.open("wb") as f:
        f.truncate(256 << 20)
    loop = plug()
    try:
        sh("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
           "--pbkdf-force-iterations", "1000", "--key-file", KEY, loop)  # fmt: skip
        uuid = sh("cryptsetup", "luksUUID", loop).stdout.strip()
        sh("cryptsetup", "open", "--key-file", KEY, loop, "cvtest-setup")
        sh("mkfs.ext4", "-q", "/dev/mapper/cvtest-setup")
        POINT.mkdir(exist_ok=True)
        sh("mount", "/dev/mapper/cvtest-setup", POINT)
        token = os.urandom(1024)
        (POINT / ".token").write_bytes(token)
        digest = sh("sha512sum", POINT / ".token").stdout.split()[0]
        HASH_FILE.write_text(f"{digest}  .token\n")
        sh("umount", POINT)
        sh("cryptsetup", "close", "cvtest-setup")
    finally:
        sh("losetup", "-d", loop, check=False)
    return uuid


def write_config(uuid: str, text: str | None = None) -> None:
    CONFIG.write_text(
        text
        or f"""
disk:
  device: /dev/disk/by-uuid/{uuid}
  luks:
    key_file: {KEY}
    name: {MAPPING}
  mount:
    point: {POINT}
    fstype: ext4
  token:
    hash_file: {HASH_FILE}
settings:
  poll_seconds: 2
  inhibit_sleep: false
jobs:
  - name: img
    type: image
    source: {SOURCE}
    part_size: 4M
    block_size: 1M
    snapshots: 0
    hash: sha256
    on_plug: true
"""
    )


def new_source(megabytes: int) -> None:
    SOURCE.write_bytes(os.urandom(megabytes << 20))


def mapping_open() -> bool:
    return Path("/dev/mapper", MAPPING).exists()


def backup_matches_source(loop: str) -> str:
    """Open the still-plugged disk by hand (read-only) and compare the parts with the source.

    Done while the disk stays plugged after the daemon closed it: plugging it again
    would make the daemon (on_plug) open it at the same time.
    """
    sh("cryptsetup", "open", "--readonly", "--key-file", KEY, loop, "cvtest-check")
    try:
        point = WORK / "check"
        point.mkdir(exist_ok=True)
        sh("mount", "-o", "ro", "/dev/mapper/cvtest-check", point)
        try:
            parts = sorted((point / "img").rglob("part_*"))
            data = b"".join(p.read_bytes() or bytes(4 << 20) for p in parts)
            source = SOURCE.read_bytes()
            assert data[: len(source)] == source, f"{len(parts)} parts differ from the source"
            return f"{len(parts)} parts under img/ equal the {len(source) >> 20} MiB source"
        finally:
            sh("umount", point)
    finally:
        sh("cryptsetup", "close", "cvtest-check")


# --- the checks ------------------------------------------------------------------------


@check("start_reaches_active_after_ready")
def start() -> str:
    begin = time.monotonic()
    sh("systemctl", "start", UNIT)
    state = (show("ActiveState"), show("SubState"))
    assert state == ("active", "running"), f"after systemctl start: {state}"
    pid = show("MainPID")
    entries = journal()
    started = [
        i
        for i, e in enumerate(entries)
        if e.get("MESSAGE_ID") == SD_MESSAGE_UNIT_STARTED and e.get("_PID") == "1"
    ]
    ours = [
        i
        for i, e in enumerate(entries)
        if e.get("COLDVAULT_EVENT") == "daemon_started" and e.get("_PID") == pid
    ]
    assert ours, "no daemon_started event from the main process"
    assert started, "systemd logged no 'Started' for the unit"
    # Type=notify: systemd calls the unit started only when READY=1 arrives, which the
    # daemon sends after its startup (daemon_started is logged before READY=1).
    assert ours[-1] < started[-1], "the unit was 'Started' before the daemon had started"
    return f"active (running) pid {pid} after {time.monotonic() - begin:.1f}s, Started after READY"


@check("status_shows_status_line")
def status() -> str:
    text = show("StatusText")
    assert text, "no STATUS= text"
    out = sh("systemctl", "status", "--no-pager", UNIT, check=False).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("Status:")]
    assert lines, f"no Status: line in systemctl status:\n{out}"
    return lines[0]


@check("journal_has_structured_events")
def structured() -> str:
    found = events("daemon_started")
    assert found, "journalctl -u coldvault COLDVAULT_EVENT=daemon_started found nothing"
    entry = found[-1]
    assert entry.get("MESSAGE_ID") == Event.DAEMON_STARTED.message_id, entry.get("MESSAGE_ID")
    return f"COLDVAULT_EVENT=daemon_started: {entry.get('MESSAGE')!r}"


@check("plugging_the_disk_triggers_a_backup")
def plugged() -> str:
    before = len(events("job_finished"))
    closes = len(events("disk_closed"))
    loop = plug()
    try:
        done = wait_for(lambda: len(events("job_finished")) > before, 240)
        failed = [e.get("MESSAGE") for e in events("job_failed")]
        assert done, f"no job_finished within 240 s; job_failed: {failed}"
        # disk_closed is logged once the teardown finished, a moment after the job.
        closed = wait_for(lambda: len(events("disk_closed")) > closes, 60)
        assert closed, "no disk_closed event after the run"
        assert not mapping_open(), f"/dev/mapper/{MAPPING} still open after disk_closed"
        assert events("disk_opened"), "no disk_opened event"
        return backup_matches_source(loop)
    finally:
        unplug()


@check("stop_tears_the_stack_down")
def stop() -> str:
    new_source(160)  # big enough that the job still runs when stop arrives
    before = len(events("job_started"))
    plug()
    try:
        started = wait_for(lambda: len(events("job_started")) > before, 240)
        assert started, "the job did not start after plugging the disk"
        assert mapping_open(), "the LUKS mapping is not open while the job runs"
        begin = time.monotonic()
        sh("systemctl", "stop", UNIT)
        took = time.monotonic() - begin
        assert not mapping_open(), f"/dev/mapper/{MAPPING} left open after systemctl stop"
        state = (show("ActiveState"), show("Result"))
        assert state == ("inactive", "success"), f"after stop: {state}"
        cancelled = events("job_cancelled") or events("job_finished")[before:]
        closed = events("disk_closed")
    finally:
        unplug()
    assert closed, "no disk_closed event"
    what = "job cancelled" if events("job_cancelled") else "job had finished"
    return f"stopped in {took:.1f}s, {what}, mapping closed ({len(cancelled)} job end events)"


@check("watchdog_restarts_a_hung_daemon")
def watchdog() -> str:
    sh("systemctl", "start", UNIT)
    pid = show("MainPID")
    restarts = int(show("NRestarts"))
    os.kill(int(pid), 19)  # SIGSTOP: the main loop stops pinging WATCHDOG=1
    again = wait_for(
        lambda: show("MainPID") not in ("0", pid) and show("ActiveState") == "active", 120
    )
    assert again, f"not restarted: {show('ActiveState')}/{show('SubState')} pid {show('MainPID')}"
    assert int(show("NRestarts")) == restarts + 1, f"NRestarts {show('NRestarts')}"
    timeouts = [
        e.get("MESSAGE", "") for e in journal() if "atchdog timeout" in str(e.get("MESSAGE", ""))
    ]
    assert timeouts, "systemd logged no watchdog timeout"
    return f"{timeouts[-1]!r}; new pid {show('MainPID')}, NRestarts {show('NRestarts')}"


@check("broken_config_stops_without_restart_loop")
def broken() -> str:
    sh("systemctl", "stop", UNIT)
    good = CONFIG.read_text()
    write_config("", "jobs:\n  - name: x\n    type: nonsense\n")
    try:
        sh("systemctl", "reset-failed", UNIT, check=False)
        done = sh("systemctl", "start", UNIT, check=False)
        assert done.returncode != 0, "systemctl start succeeded with a broken config"
        restart_sec = 1.0  # the test drop-in's RestartSec
        time.sleep(restart_sec * 8)
        state = (show("ActiveState"), show("ExecMainStatus"), show("NRestarts"))
        assert state == ("failed", "78", "0"), f"(ActiveState, ExecMainStatus, NRestarts) {state}"
        messages = [str(e.get("MESSAGE", "")) for e in journal()]
        assert not any("Traceback" in m for m in messages), "a traceback reached the journal"
    finally:
        CONFIG.write_text(good)
    return f"ActiveState={state[0]} ExecMainStatus={state[1]} NRestarts={state[2]}"


# --- the Debian package ------------------------------------------------------------


def dpkg(*argv: str | Path) -> str:
    """``dpkg ARGV`` as root with Debian's PATH; its output (for the details).

    dpkg, not apt-get: apt would run the same maintainer scripts in the same order
    (the package's dependencies are installed on the shared root), but first
    rebuilds its cache of the host's package lists, minutes under emulation.
    """
    begin = time.monotonic()
    done = sh("dpkg", *argv, check=False, env=DPKG_ENV)
    # On the console, so a slow step shows where the time went.
    print(f"CVTEST dpkg {argv[0]}: {time.monotonic() - begin:.0f}s", flush=True)
    assert done.returncode == 0, f"dpkg {argv} -> {done.returncode}:\n{done.stdout[-2000:]}"
    return done.stdout + done.stderr


def deb(which: str) -> tuple[Path, str]:
    """The package the host built into $CVTEST_DEBS/WHICH, and its version."""
    found = sorted((DEBS / which).glob("coldvault_*_all.deb"))
    assert len(found) == 1, f"expected one .deb in {DEBS / which}, found {found}"
    return found[0], sh("dpkg-deb", "-f", found[0], "Version").stdout.strip()


def installed_version() -> str:
    done = sh("dpkg-query", "-W", "-f=${Status} ${Version}", "coldvault", check=False)
    return done.stdout.strip() if done.returncode == 0 else "not installed"


def writable_usr() -> None:
    """An overlay on /usr (upper layer in /run), keeping the mounts beneath it."""
    held = WORK / "usr-lib-modules"
    held.mkdir(parents=True)
    sh("mount", "--rbind", "/usr/lib/modules", held)
    layer = Path("/run/cvtest-overlay/usr")
    (layer / "upper").mkdir(parents=True)
    (layer / "work").mkdir()
    options = f"lowerdir=/usr,upperdir={layer}/upper,workdir={layer}/work"
    sh("mount", "-t", "overlay", "overlay", "-o", options, "/usr")
    Path("/usr/lib/modules").mkdir(exist_ok=True)
    sh("mount", "--rbind", held, "/usr/lib/modules")


def hand_over_to_the_package() -> None:
    """Let systemd see the packaged unit instead of the venv's, keeping the test drop-in.

    The test units folder comes first in the unit path and holds a coldvault.service
    (ExecStart = the venv): a tmpfs over it gets a copy of everything but that file.
    The drop-in stays (the test config, short watchdog). dpkg writes to /usr, which
    the shared root has read-only: an overlay (RAM-backed, like /etc and /var) goes
    on it here, with the kernel modules virtme-ng mounted under /usr/lib/modules
    bound back. The shared root's /usr/sbin/policy-rc.d (a container's "start
    nothing") is removed in that overlay only, so the maintainer scripts act as on
    a real machine.
    """
    writable_usr()
    sh("systemctl", "stop", UNIT, check=False)
    sh("systemctl", "reset-failed", UNIT, check=False)
    units = Path(os.environ["CVTEST_UNITS"])
    keep = WORK / "units"
    shutil.copytree(units, keep, ignore=shutil.ignore_patterns("coldvault.service"))
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", units)
    shutil.copytree(keep, units, dirs_exist_ok=True)
    Path("/usr/sbin/policy-rc.d").unlink(missing_ok=True)
    # man-db's trigger would re-index every manual page of the shared root over 9p
    # (minutes under emulation): its own switch turns that off, in the overlay.
    Path("/var/lib/man-db/auto-update").unlink(missing_ok=True)
    sh("systemctl", "daemon-reload")


def main_pid_running(pid: str) -> bool:
    return pid != "0" and Path(f"/proc/{pid}").exists()


@check("package_upgrade_restarts_the_running_daemon")
def package_upgrade() -> str:
    old, old_version = deb("old")
    new, new_version = deb("new")
    newer = sh("dpkg", "--compare-versions", new_version, "gt", old_version, check=False)
    assert newer.returncode == 0, f"{new_version} is not newer than {old_version}"
    assert installed_version() == "not installed", installed_version()
    hand_over_to_the_package()
    dpkg("--install", old)
    fragment = show("FragmentPath")
    assert fragment in (PACKAGED_UNIT, f"/usr{PACKAGED_UNIT}"), f"unit from {fragment}"
    # A fresh install neither enables nor starts it (the config must be edited first).
    assert show("ActiveState") == "inactive", f"started on install: {show('ActiveState')}"
    enabled = sh("systemctl", "is-enabled", UNIT, check=False).stdout.strip()
    assert enabled == "disabled", f"is-enabled after install: {enabled}"
    sh("systemctl", "enable", "--now", UNIT)
    before = (show("ActiveState"), show("SubState"), show("MainPID"))
    assert before[:2] == ("active", "running"), f"after enable --now: {before}"
    old_pid = before[2]
    dpkg("--install", new)
    after = (show("ActiveState"), show("SubState"), show("MainPID"))
    assert after[:2] == ("active", "running"), f"after the upgrade: {after}"
    assert after[2] != old_pid, f"same main PID {old_pid}: not restarted"
    assert not main_pid_running(old_pid), f"the old daemon {old_pid} still runs"
    cmdline = Path(f"/proc/{after[2]}/cmdline").read_bytes().split(b"\0")
    assert b"/usr/bin/coldvault" in cmdline, f"main process is {cmdline}"
    version = installed_version()
    assert version == f"install ok installed {new_version}", version
    return (
        f"{old_version} pid {old_pid} -> {new_version} pid {after[2]} "
        f"({after[0]}/{after[1]}, {cmdline[1].decode()})"
    )


@check("package_remove_stops_the_daemon")
def package_remove() -> str:
    pid = show("MainPID")
    assert main_pid_running(pid), f"no running daemon before remove (MainPID {pid})"
    dpkg("--remove", "coldvault")
    state = show("ActiveState")
    assert not main_pid_running(pid), f"after dpkg --remove the daemon {pid} still runs"
    assert state == "inactive", f"after dpkg --remove: ActiveState={state}"
    status = installed_version().rsplit(" ", 1)[0]
    assert status == "deinstall ok config-files", status
    assert Path("/etc/coldvault/config.yaml").exists(), "remove deleted the conffile"
    return f"ActiveState={state}, pid {pid} gone, dpkg: {status}"


@check("package_purge_cleans_up")
def package_purge() -> str:
    wants = Path("/etc/systemd/system/multi-user.target.wants/coldvault.service")
    assert wants.is_symlink(), "the enablement symlink is already gone before purge"
    Path("/etc/coldvault/backup.key").write_bytes(b"an administrator's key file")
    dpkg("--purge", "coldvault")
    left = [
        p
        for p in (Path("/etc/coldvault/config.yaml"), Path("/var/lib/coldvault"), wants)
        if p.exists() or p.is_symlink()
    ]
    assert not left, f"left after purge: {left}"
    assert Path("/etc/coldvault/backup.key").exists(), "purge removed the administrator's key"
    assert installed_version() == "not installed" or "not-installed" in installed_version()
    return (
        f"config, state and enablement gone; /etc/coldvault/backup.key kept; {installed_version()}"
    )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    try:
        for module in ("loop", "dm-mod", "dm-crypt", "ext4"):
            sh("modprobe", module, check=False)
        udev = sh("systemctl", "is-active", "systemd-udevd.service", check=False).stdout.strip()
        print(f"CVTEST udevd {udev}", flush=True)
        uuid = make_disk()
        new_source(24)
        write_config(uuid)
        for run in (start, status, structured, plugged, stop, watchdog, broken):
            run()
        for run in (package_upgrade, package_remove, package_purge):
            run()
    except Exception:
        record("setup", False, traceback.format_exc(), begin)
    finally:
        results["_guest_seconds"] = {"ok": True, "detail": f"{time.monotonic() - begin:.0f}"}
        (OUT / "results.json").write_text(json.dumps(results, indent=1))
        log = sh("journalctl", "-b", "--no-pager", "-o", "short-monotonic", check=False).stdout
        (OUT / "journal.txt").write_text(log)
        shutil.rmtree(WORK, ignore_errors=True)
        os.sync()
        Path("/proc/sysrq-trigger").write_text("o")
    return 0


if __name__ == "__main__":
    sys.exit(main())
