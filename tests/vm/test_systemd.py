"""The hardened coldvault.service under a real systemd (PID 1) in a QEMU guest.

A boot of its own (systemd as PID 1 cannot share the harness's boot): ``vng
--systemd`` runs in a private mount namespace where ``/lib/systemd/systemd`` is
``tests/vm/systemd/init``, which prepares the read-only shared root and execs the
real systemd with ``--unit=coldvault-vmtest.target``. That target's service runs
``tests/vm/systemd/checks.py`` against the real unit (only its ExecStart points at
this checkout's venv, and a drop-in shortens the watchdog and restart delays) and
writes one result per check; each host test below asserts one of them. The last
checks install two Debian packages built here from this checkout (the second a
newer version of the same code), upgrade with the daemon running, then remove and
purge it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from coldvault import __version__
from coldvault.cli.service_cmd import render_unit
from tests.conftest import ROOT, require, require_programs, require_root
from tests.vm import harness

pytestmark = pytest.mark.vm

IN_GUEST = os.environ.get("COLDVAULT_IN_GUEST") == "1"
BOOT_DIR = harness.WORK / "systemd-boot"
BOOT_TIMEOUT = 2400  # seconds: boot + checks (and two package installs) under emulation
CHECKS = [
    "start_reaches_active_after_ready",
    "status_shows_status_line",
    "journal_has_structured_events",
    "plugging_the_disk_triggers_a_backup",
    "stop_tears_the_stack_down",
    "watchdog_restarts_a_hung_daemon",
    "broken_config_stops_without_restart_loop",
    "package_upgrade_restarts_the_running_daemon",
    "package_remove_stops_the_daemon",
    "package_purge_cleans_up",
]
# The upgrade checks get two builds of this checkout: the changelog's version, and
# the same code with a newer Debian version (an entry build-deb adds to its copy).
UPGRADE_SUFFIX = "+upgradetest1"
GUEST_PATH = f"{harness.VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Only timings differ from the shipped unit, so the test does not wait minutes.
DROP_IN = """[Service]
Environment=COLDVAULT_CONFIG=/run/cvtest/config.yaml
WatchdogSec=10s
TimeoutAbortSec=5s
RestartSec=1s
# Python starts slowly under software emulation on a busy host.
TimeoutStartSec=5min
"""
TARGET = """[Unit]
Description=coldvault systemd test
Requires=basic.target coldvault-vmtest.service
After=basic.target coldvault-vmtest.service
AllowIsolate=yes
"""
CHECK_SERVICE = """[Unit]
Description=coldvault checks under systemd
Requires=basic.target
After=basic.target systemd-udevd.service systemd-udev-trigger.service systemd-journald.service

[Service]
Type=oneshot
Environment=PATH={path}
Environment=CVTEST_OUT={out}
Environment=CVTEST_UNITS={units}
Environment=CVTEST_DEBS={debs}
Environment=PYTHONDONTWRITEBYTECODE=1
WorkingDirectory={root}
ExecStart={python} {root}/tests/vm/systemd/checks.py
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec={timeout}
"""


def write_units(units: Path, out: Path) -> None:
    """The real unit (ExecStart = this venv's coldvault), the drop-in, the test units."""
    units.mkdir(parents=True)
    shipped = (ROOT / "systemd" / "coldvault.service").read_text()
    coldvault = str(harness.VENV_BIN / "coldvault")
    (units / "coldvault.service").write_text(render_unit(shipped, [coldvault]))
    (units / "coldvault.service.d").mkdir()
    drop_in = DROP_IN
    if ROOT.is_relative_to("/tmp"):
        # PrivateTmp= hides a checkout under /tmp (where a CI clone may live), and
        # with it this venv's coldvault: bind it back read-only. An installed
        # coldvault lives in /usr and needs nothing of the kind.
        drop_in += f"BindReadOnlyPaths={ROOT}\n"
    (units / "coldvault.service.d" / "vmtest.conf").write_text(drop_in)
    (units / "coldvault-vmtest.target").write_text(TARGET)
    (units / "coldvault-vmtest.service").write_text(
        CHECK_SERVICE.format(
            path=GUEST_PATH,
            out=out,
            units=units,
            debs=BOOT_DIR / "debs",
            root=ROOT,
            python=harness.VENV_BIN / "python",
            timeout=BOOT_TIMEOUT - 120,
        )
    )


def build_debs(debs: Path) -> None:
    """debs/old: the package as the changelog says; debs/new: the same, a newer version."""
    for which, extra in (("old", []), ("new", ["--deb-version", __version__ + UPGRADE_SUFFIX])):
        built = subprocess.run(
            [str(ROOT / "packaging" / "build-deb"), *extra, str(debs / which)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert built.returncode == 0, f"build-deb {extra}: {built.stderr[-3000:]}"


def boot_argv(vng: Path, vmlinuz: Path, out: Path) -> list[str]:
    """vng under `unshare -m`, with /lib/systemd/systemd replaced by our init only there."""
    argv = [str(vng), "-r", str(vmlinuz), "--memory", "2G", "--cpus", "2", "--systemd"]
    if os.environ.get("COLDVAULT_VM_KVM") != "1":
        argv.append("--disable-kvm")
    argv += ["--rwdir", f"{out}={out}", "--append", f"CVTEST_DIR={BOOT_DIR}"]
    # Only in QEMU's mount namespace: an overlay on /lib gives vng's `mkdir -p
    # /lib/modules` a folder to mount on (the host has none), and the real systemd
    # is moved aside for our init. The host's own /lib is untouched.
    swap = (
        'mkdir -p "$3/upper" "$3/work"'
        ' && mount -t overlay overlay -o "lowerdir=/lib,upperdir=$3/upper,workdir=$3/work" /lib'
        " && mkdir -p /lib/modules"
        ' && mount --bind /lib/systemd/systemd "$1" && mount --bind "$2" /lib/systemd/systemd'
        ' && shift 3 && exec "$@"'
    )
    init = ROOT / "tests" / "vm" / "systemd" / "init"
    real = BOOT_DIR / "systemd"
    unshare = ["unshare", "-m", "--propagation", "private", "sh", "-c", swap, "sh"]
    return [*unshare, str(real), str(init), str(BOOT_DIR / "lib-overlay"), *argv]


@pytest.fixture(scope="module")
def guest_results() -> dict[str, dict[str, object]]:
    """Boot the guest with systemd as PID 1 once; the checks' results by name."""
    require_root()
    require_programs(
        "qemu-system-x86_64", "unshare", "busybox", "apt-get", "depmod", "dpkg-buildpackage"
    )
    require(not IN_GUEST, "the guest does not boot guests")
    vmlinuz = harness.ensure_kernel()
    vng = harness.ensure_vng()
    shutil.rmtree(BOOT_DIR, ignore_errors=True)
    out = BOOT_DIR / "out"
    out.mkdir(parents=True)
    (BOOT_DIR / "systemd").touch()  # bind-mount target for the real systemd
    write_units(BOOT_DIR / "units", out)
    build_debs(BOOT_DIR / "debs")
    env = {**os.environ, "PATH": f"{harness.VENV_BIN}:{os.environ.get('PATH', os.defpath)}"}
    start = time.monotonic()
    console_log = out / "console.log"
    # The console goes straight to a file, so a slow or stuck boot can be watched.
    with console_log.open("w") as console_file:
        guest = subprocess.Popen(
            boot_argv(vng, vmlinuz, out),
            stdin=subprocess.DEVNULL,
            stdout=console_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,  # one group: vng, virtme-run and QEMU end together
        )
        try:
            guest.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(guest.pid, signal.SIGKILL)
            guest.wait()
            console_file.write(f"\n[test_systemd] guest killed after {BOOT_TIMEOUT}s\n")
    console = console_log.read_text(errors="replace")
    seconds = time.monotonic() - start
    results_file = out / "results.json"
    if not results_file.exists():
        pytest.fail(
            f"the systemd guest wrote no results in {seconds:.0f}s; console tail:\n"
            + console[-6000:],
            pytrace=False,
        )
    results: dict[str, dict[str, object]] = json.loads(results_file.read_text())
    results["_host_seconds"] = {"ok": True, "detail": f"{seconds:.0f}"}
    (out / "wall-time.txt").write_text(f"{seconds:.0f}\n")
    return results


@pytest.mark.parametrize("name", CHECKS)
def test_under_systemd(name: str, guest_results: dict[str, dict[str, object]]) -> None:
    """One check run by the guest under systemd passed."""
    setup = guest_results.get("setup")
    assert setup is None or setup["ok"], f"guest setup failed: {setup['detail']}"
    result = guest_results.get(name)
    assert result is not None, f"{name} did not run; ran: {sorted(guest_results)}"
    assert result["ok"], f"{name}: {result['detail']}"


def test_check_list_matches_the_guest_script() -> None:
    """Every check the guest script defines is asserted here (none silently dropped)."""
    text = (ROOT / "tests" / "vm" / "systemd" / "checks.py").read_text()
    assert sorted(CHECKS) == sorted(
        line.split('"')[1] for line in text.splitlines() if line.startswith('@check("')
    )
