"""The systemd unit and the launchd plist, checked against systemd and the real CLI parser.

``systemd-analyze`` runs offline here (no systemd as PID 1 needed); the unit is
also booted under a real systemd in tests/vm/test_systemd.py.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import ROOT, require_programs

from coldvault.cli import service_cmd
from coldvault.cli.main import build_parser
from coldvault.config.model import DEFAULT_CONFIG_PATH, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_FILE
from coldvault.errors import EXIT_CONFIG

UNIT = ROOT / "systemd" / "coldvault.service"
PLIST = ROOT / "launchd" / "org.coldvault.daemon.plist"
MAX_EXPOSURE = 5.0


def service_section(text: str) -> dict[str, list[str]]:
    """``[Service]`` directives of a unit: name -> every value given (in order)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def one(directives: dict[str, list[str]], key: str) -> str:
    values = directives.get(key)
    assert values, f"{key}= missing from {UNIT.name}"
    return values[-1]


def run_coldvault(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coldvault", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )


def exposure(unit: Path) -> float:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout)
    assert match, f"no exposure line in:\n{out.stdout}\n{out.stderr}"
    return float(match.group(1))


def expand_syscalls(filters: list[str]) -> set[str]:
    """The system calls a SystemCallFilter= allow list admits, groups expanded."""
    names: set[str] = set()
    pending = list(filters)
    seen: set[str] = set()
    while pending:
        item = pending.pop()
        if item in seen:
            continue
        seen.add(item)
        if not item.startswith("@"):
            names.add(item)
            continue
        out = subprocess.run(
            ["systemd-analyze", "syscall-filter", item], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines()[1:]:
            word = line.strip()
            if word and not word.startswith("#"):
                pending.append(word)
    return names


# --- the systemd unit ----------------------------------------------------------------


def test_unit_is_a_notify_service_with_watchdog_and_no_restart_loop_on_config_error() -> None:
    d = service_section(UNIT.read_text())
    assert one(d, "Type") == "notify"
    assert one(d, "NotifyAccess") == "main"
    assert one(d, "Restart") == "on-failure"
    assert str(EXIT_CONFIG) in one(d, "RestartPreventExitStatus").split()
    assert one(d, "ExecReload").split() == ["/bin/kill", "-HUP", "$MAINPID"]
    assert one(d, "WatchdogSec") not in ("", "0", "infinity")
    # SIGTERM to the daemon only, and time for it to close the disk stack.
    assert one(d, "KillMode") == "mixed"
    assert one(d, "TimeoutStopSec").endswith("min")
    assert one(d, "LogRateLimitIntervalSec") == "0"
    assert one(d, "IOSchedulingClass") in ("idle", "best-effort")
    assert int(one(d, "Nice")) > 0


def test_unit_directories_are_the_daemons_defaults() -> None:
    d = service_section(UNIT.read_text())
    assert Path("/etc", one(d, "ConfigurationDirectory")) == DEFAULT_CONFIG_PATH.parent
    assert Path("/var/lib", one(d, "StateDirectory")) == DEFAULT_STATE_FILE.parent
    assert Path("/run", one(d, "RuntimeDirectory")) == DEFAULT_RUNTIME_DIR


def test_exec_start_is_the_daemon_command_of_the_real_parser() -> None:
    argv = shlex.split(one(service_section(UNIT.read_text()), "ExecStart"))
    # The Debian package installs the [project.scripts] entry point as /usr/bin/coldvault.
    assert argv[0] == "/usr/bin/coldvault"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "daemon"
    assert args.func.__module__ == "coldvault.cli.daemon_cmd"


def test_unit_verifies_offline_as_install_service_writes_it(tmp_path: Path) -> None:
    require_programs("systemd-analyze")
    # The shipped ExecStart=/usr/bin/coldvault exists only once the package is installed
    # (tests/integration/test_deb.py verifies that one); here the copy that
    # install-service writes, which runs this checkout's coldvault, must verify.
    done = run_coldvault("install-service", "--for", "systemd", "--prefix", tmp_path)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "etc/systemd/system/coldvault.service"
    exec_start = one(service_section(unit.read_text()), "ExecStart")
    assert shlex.split(exec_start) == [*service_cmd.installed_command(), "daemon"]
    checked = verify(unit)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "coldvault.service:" not in checked.stdout + checked.stderr


NETWORK_MAX_EXPOSURE = 4.0  # the unit with its network drop-in (issue 16)


def _config_file(tmp_path: Path, settings: str) -> Path:
    (tmp_path / "backup").mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"disk: {{mount: {{point: {tmp_path}/backup, require_mount: false}}}}\n"
        f"settings: {settings}\n"
        "jobs: [{name: a, type: image, source: /dev/null}]\n"
    )
    return path


def test_network_dropin_is_written_only_when_the_config_needs_it(tmp_path: Path) -> None:
    require_programs("systemd-analyze")
    quiet = _config_file(tmp_path, "{}")
    done = run_coldvault("-c", quiet, "install-service", "--for", "systemd", "--prefix", tmp_path)
    assert done.returncode == 0, done.stderr
    dropin = tmp_path / "etc/systemd/system/coldvault.service.d/network.conf"
    assert not dropin.exists()
    assert "no network drop-in: nothing in" in done.stdout

    pinging = _config_file(tmp_path, "{ping: 'https://hc-ping.com/KEY/{job}'}")
    done = run_coldvault("-c", pinging, "install-service", "--for", "systemd", "--prefix", tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"installed: {dropin}" in done.stdout
    unit = tmp_path / "etc/systemd/system/coldvault.service"
    checked = verify(unit)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The drop-in beside the unit is read: IP is allowed, the exposure stays below 4.
    analyzed = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert re.search(r"✗ RestrictAddressFamilies=~AF_\(INET\|INET6\)", analyzed), analyzed
    assert exposure(unit) < NETWORK_MAX_EXPOSURE
    assert exposure(UNIT) < exposure(unit)  # without the drop-in: less exposed

    # The Debian package installs the unit: --network-only writes the drop-in alone.
    other = tmp_path / "deb"
    args = ("-c", pinging, "install-service", "--network-only", "--prefix", other)
    done = run_coldvault(*args)
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    assert written == [Path("etc/systemd/system/coldvault.service.d/network.conf")]


def test_needs_network_for_pings_notifications_and_remote_repositories() -> None:
    from dataclasses import replace

    from tests.unit.image_env import make_job

    from coldvault.config.model import Config, NotifyTarget, OffsiteTarget, Settings
    from coldvault.service.network import needs_network

    job = make_job("/dev/null")
    base = Config(path=None, jobs=(job,))
    assert not needs_network(base)
    assert needs_network(replace(base, jobs=(replace(job, ping="https://hc-ping.com/k"),)))
    assert needs_network(replace(base, settings=Settings(ping="https://hc-ping.com/{job}")))
    notify = (NotifyTarget(url="ntfys://ntfy.example.org/t"),)
    assert needs_network(replace(base, settings=Settings(notify=notify)))
    local = OffsiteTarget(name="usb", repository="/srv/restic", password_file=Path("/p"))
    assert not needs_network(replace(base, offsite=(local,)))
    remote = replace(local, repository="sftp:backup@nas:/srv/restic")
    assert needs_network(replace(base, offsite=(local, remote)))


def test_exec_start_quoting_survives_spaces_and_specifiers(tmp_path: Path) -> None:
    require_programs("systemd-analyze")
    folder = tmp_path / "my venv 100%"
    folder.mkdir()
    (folder / "coldvault").symlink_to(service_cmd.installed_command()[0])
    unit = tmp_path / "coldvault.service"
    unit.write_text(service_cmd.render_unit(UNIT.read_text(), [str(folder / "coldvault")]))
    checked = verify(unit)
    # verify fails with "Command ... is not executable" if the quoting mangled the path.
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_unit_exposure_is_below_five() -> None:
    require_programs("systemd-analyze")
    assert exposure(UNIT) < MAX_EXPOSURE


def test_hardening_still_allows_what_the_storage_tools_need() -> None:
    require_programs("systemd-analyze")
    d = service_section(UNIT.read_text())
    caps = set(one(d, "CapabilityBoundingSet").split())
    assert {"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH", "CAP_IPC_LOCK", "CAP_MKNOD"} <= caps
    assert {"AF_UNIX", "AF_NETLINK"} <= set(one(d, "RestrictAddressFamilies").split())
    allowed = expand_syscalls(one(d, "SystemCallFilter").split())
    # mount/umount: the backup file system; ioctl: md, dm, loop, btrfs; splice: the
    # send|receive relay; mlockall/keyctl: cryptsetup; semop: libdevmapper's udev sync;
    # mknodat/fsetxattr: btrfs receive; syncfs/fsync: durable parts.
    needed = {"mount", "umount2", "ioctl", "splice", "mlockall", "keyctl", "semop", "mknodat"}
    needed |= {"fsetxattr", "syncfs", "fsync", "renameat2", "linkat", "flock", "chroot"}
    assert needed <= allowed, f"filtered out: {sorted(needed - allowed)}"
    # Block devices must stay reachable through the device ACL.
    assert "block-* rw" in d["DeviceAllow"]
    assert one(d, "ProtectSystem") != "strict"


@pytest.mark.parametrize(
    "directive",
    [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "RestrictAddressFamilies",
        "RestrictNamespaces",
        "LockPersonality",
        "RestrictRealtime",
        "SystemCallArchitectures",
        "CapabilityBoundingSet",
        "NoNewPrivileges",
        "PrivateDevices",
        "ProtectClock",
        "PrivateNetwork",
        "ProcSubset",
        "PrivateUsers",
    ],
)
def test_each_hardening_directive_is_set_or_its_absence_explained(directive: str) -> None:
    text = UNIT.read_text()
    if directive in service_section(text):
        return
    # "# Directive   what breaks": the name first, then the reason.
    explained = [
        line for line in text.splitlines() if re.match(rf"#\s*{directive}\b\S*\s.*\w", line)
    ]
    assert explained, f"{directive}= is neither set nor explained in a comment"


def test_install_service_puts_the_catalog_where_journalctl_reads_it(tmp_path: Path) -> None:
    require_programs("journalctl")
    from coldvault.events import Event

    done = run_coldvault("install-service", "--for", "systemd", "--prefix", tmp_path)
    assert done.returncode == 0, done.stderr
    root = f"--root={tmp_path}"
    subprocess.run(["journalctl", root, "--update-catalog"], check=True, capture_output=True)
    listed = subprocess.run(
        ["journalctl", root, "--list-catalog"], check=True, capture_output=True, text=True
    ).stdout
    missing = [e.name for e in Event if e.message_id not in listed]
    assert not missing, f"not in the installed catalog: {missing}"


# --- the launchd plist ---------------------------------------------------------------


def load_plist(path: Path = PLIST) -> dict[str, object]:
    with path.open("rb") as f:
        value = plistlib.load(f)
    assert isinstance(value, dict)
    return value


def test_plist_runs_the_daemon_command_of_the_real_parser() -> None:
    plist = load_plist()
    program = plist["ProgramArguments"]
    assert isinstance(program, list)
    assert Path(program[0]).is_absolute()
    args = build_parser().parse_args(program[1:])
    assert args.command == "daemon"
    assert args.func.__module__ == "coldvault.cli.daemon_cmd"
    assert plist["Label"] == service_cmd.PLIST_LABEL
    assert f"{plist['Label']}.plist" == service_cmd.PLIST_NAME


def test_plist_restarts_crashes_but_not_a_config_error_exit() -> None:
    plist = load_plist()
    assert plist["RunAtLoad"] is True
    # Crashed restarts only after a signal death; SuccessfulExit=false would also
    # restart after exit 78 (bad config) every ThrottleInterval, forever.
    assert plist["KeepAlive"] == {"Crashed": True}
    assert plist["ProcessType"] == "Background"
    assert plist["LowPriorityIO"] is True
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert str(plist[key]).startswith("/Library/Logs/coldvault/")
    env = plist["EnvironmentVariables"]
    assert isinstance(env, dict)
    # diskutil lives in /usr/sbin and caffeinate in /usr/bin on macOS.
    assert {"/usr/sbin", "/usr/bin"} <= set(str(env["PATH"]).split(":"))


def test_install_service_writes_the_plist_for_this_installation(tmp_path: Path) -> None:
    done = run_coldvault("install-service", "--for", "launchd", "--prefix", tmp_path)
    assert done.returncode == 0, done.stderr
    written = load_plist(tmp_path / "Library/LaunchDaemons" / service_cmd.PLIST_NAME)
    shipped = load_plist()
    assert written["ProgramArguments"] == [*service_cmd.installed_command(), "daemon"]
    assert {k: v for k, v in written.items() if k != "ProgramArguments"} == {
        k: v for k, v in shipped.items() if k != "ProgramArguments"
    }
    assert (tmp_path / "Library/Logs/coldvault").is_dir()


def test_install_service_print_writes_nothing(tmp_path: Path) -> None:
    done = run_coldvault("install-service", "--print", "--for", "systemd", "--prefix", tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"# {tmp_path}/etc/systemd/system/coldvault.service" in done.stdout
    assert "\nType=notify\n" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_install_service_refuses_an_unwritable_prefix_without_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = run_coldvault("install-service", "--for", "systemd", "--prefix", blocker)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr


# --- the daemon's macOS code paths the plist relies on -------------------------------
# (diskutil parsing is tested on recorded output in tests/unit/test_image_platform.py)


def test_macos_daemon_polls_for_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    from coldvault.platform.hotplug import PollingWatcher, disk_watcher

    monkeypatch.setattr(sys, "platform", "darwin")
    watcher = disk_watcher(7.0)
    assert isinstance(watcher, PollingWatcher)
    assert watcher.recheck_seconds == 7.0
    assert watcher.fileno() is None


def test_macos_backup_holds_caffeinate_for_its_own_pid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The macOS inhibitor path: `caffeinate -i -w PID` runs during the block, not after.

    caffeinate cannot run here; the stand-in records its argv and, like
    caffeinate -w, lives until the watched process ends or it is signalled.
    """
    from coldvault.service.inhibit import sleep_inhibited

    seen = tmp_path / "argv"
    fake = tmp_path / "bin" / "caffeinate"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {seen}\nexec tail --pid="$3" -f /dev/null\n')
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with sleep_inhibited("backup"):
        deadline = time.monotonic() + 30
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen.read_text().split() == ["-i", "-w", str(os.getpid())]
        # The stand-in writes argv before it execs tail: wait for the exec as well.
        while not _watchers_of(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _watchers_of(os.getpid())
    assert not _watchers_of(os.getpid()), "the caffeinate stand-in outlived the backup"


def _watchers_of(pid: int) -> list[Path]:
    """Processes running the stand-in's `tail --pid=PID`."""
    return [
        p
        for p in Path("/proc").glob("[0-9]*")
        if _cmdline(p).startswith("tail --pid") and f"--pid={pid}" in _cmdline(p)
    ]


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
