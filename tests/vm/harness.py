"""Boot one QEMU guest with Debian's kernel and run the guest scenarios inside it.

The host kernel here has no MD or device-mapper, so the scenarios of
``tests/vm/guest/`` run under a real Debian kernel in a virtme-ng guest that
shares the host's root read-only. This module fetches what is missing (the
kernel package, virtme-ng), boots the guest once, and hands back each guest
scenario's outcome (JSON lines written as the guest runs).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "tests" / "vm" / ".work"  # git-ignored cache: kernel, guest output
GUEST_DIR = ROOT / "tests" / "vm" / "guest"
VENV_BIN = Path(sys.executable).parent
MODULES = ("loop", "raid1", "dm-mod", "dm-crypt", "btrfs", "dm-flakey")
# Seconds for boot + every scenario under software emulation (COLDVAULT_VM_TIMEOUT overrides).
BOOT_TIMEOUT = float(os.environ.get("COLDVAULT_VM_TIMEOUT", "3000"))


class HarnessError(Exception):
    """The guest could not be prepared or booted."""


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def kernel_package() -> str:
    """The versioned package ``linux-image-amd64`` depends on (linux-image-6.1.0-NN-amd64)."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    for line in out.splitlines():
        name = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and name.startswith("linux-image-"):
            return name
    raise HarnessError(f"cannot find the kernel package in `apt-cache depends`: {out!r}")


def ensure_kernel() -> Path:
    """The guest kernel image; downloaded and unpacked into tests/vm/.work/kernel if missing.

    virtme-ng links ``/lib/modules/<version>`` in the guest to the modules next to
    the kernel image, so they only need ``depmod`` there (nothing is installed
    on the host).
    """
    found = sorted((WORK / "kernel" / "boot").glob("vmlinuz-*"))
    if found and (WORK / "kernel" / ".ready").exists():
        return found[-1]
    WORK.mkdir(parents=True, exist_ok=True)
    package = kernel_package()
    for old in WORK.glob("linux-image-*.deb"):
        old.unlink()
    _run(["apt-get", "download", package], cwd=WORK)
    debs = list(WORK.glob(f"{package}_*.deb"))
    if not debs:
        raise HarnessError(f"`apt-get download {package}` left no .deb in {WORK}")
    shutil.rmtree(WORK / "kernel", ignore_errors=True)
    _run(["dpkg", "-x", str(debs[0]), str(WORK / "kernel")])
    found = sorted((WORK / "kernel" / "boot").glob("vmlinuz-*"))
    if not found:
        raise HarnessError(f"{debs[0].name} holds no boot/vmlinuz-*")
    version = found[-1].name.removeprefix("vmlinuz-")
    _run(["depmod", "-b", str(WORK / "kernel"), version])
    (WORK / "kernel" / ".ready").write_text(version + "\n")
    debs[0].unlink()
    return found[-1]


def ensure_vng() -> Path:
    """The ``vng`` program of this venv; pip-installs virtme-ng when it is missing."""
    vng = VENV_BIN / "vng"
    if not vng.exists():
        _run([sys.executable, "-m", "pip", "install", "-q", "virtme-ng"])
    if not vng.exists():
        raise HarnessError("pip installed virtme-ng but there is no vng in the venv")
    if shutil.which("busybox") is None:
        raise HarnessError(
            "virtme-ng needs busybox for the initramfs: apt-get install busybox-static"
        )
    return vng


def scenarios() -> list[str]:
    """Every guest scenario as ``file.py::test_name``, read from the sources (not run)."""
    found = []
    for path in sorted(GUEST_DIR.glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                found.append(f"{path.name}::{node.name}")
    return found


@dataclass(frozen=True)
class ScenarioResult:
    """One guest test's outcome."""

    outcome: str  # passed, failed, error, skipped
    message: str


@dataclass(frozen=True)
class GuestRun:
    """The outcome of the one guest boot."""

    returncode: int | None
    console: str  # the guest's console output (tail)
    results: dict[str, list[ScenarioResult]]  # "file.py::test" -> one per parametrization
    seconds: float


def parse_results(path: Path) -> dict[str, list[ScenarioResult]]:
    """Results by ``file.py::test_name`` from the guest's JSON lines (one per test phase
    that ran; parametrized ids folded into their function; a failed setup or teardown
    counts against the scenario)."""
    results: dict[str, list[ScenarioResult]] = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut off when the guest was killed
        file, _, name = entry["nodeid"].rpartition("::")
        key = f"{Path(file).name}::{name.split('[')[0]}"
        outcome = (
            entry["outcome"] if entry["when"] == "call" else f"{entry['when']} {entry['outcome']}"
        )
        results.setdefault(key, []).append(ScenarioResult(outcome, entry.get("message", "")))
    return results


def guest_command(out: Path, pytest_args: list[str]) -> str:
    """The shell command the guest runs: load modules, run pytest over tests/vm/guest."""
    env = {
        "COLDVAULT_IN_GUEST": "1",
        "COLDVAULT_VM_RESULTS": str(out / "results.jsonl"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CI": os.environ.get("CI", ""),
        "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    pytest = [
        str(VENV_BIN / "python"),
        "-m",
        "pytest",
        str(GUEST_DIR.relative_to(ROOT)),
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-rA",
        "--durations=25",
        *pytest_args,
    ]
    return " ; ".join(
        [
            f"cd {shlex.quote(str(ROOT))}",
            "modprobe -a " + " ".join(MODULES),
            " ".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
            " ".join(shlex.quote(a) for a in pytest) + f" > {out}/pytest.log 2>&1",
            f"echo $? > {out}/rc",
        ]
    )


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def boot(pytest_args: list[str] | None = None, *, timeout: float = BOOT_TIMEOUT) -> GuestRun:
    """Boot the guest once, run every guest scenario, return the results."""
    import time

    vmlinuz = ensure_kernel()
    vng = ensure_vng()
    WORK.mkdir(parents=True, exist_ok=True)
    # A folder of its own: another engineer's guest may run at the same time.
    out = Path(tempfile.mkdtemp(prefix="out-", dir=WORK))
    argv = [str(vng), "-r", str(vmlinuz), "--memory", "2G", "--cpus", "2"]
    if os.environ.get("COLDVAULT_VM_KVM") != "1":
        argv.append("--disable-kvm")  # KVM guests hang or abort on these machines
    argv += ["--rwdir", f"{out}={out}", "--", guest_command(out, pytest_args or [])]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', os.defpath)}"}
    start = time.monotonic()
    # Own session, so a timeout (or ^C) kills vng, virtme-run and QEMU together.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    returncode: int | None
    try:
        console, _ = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        console, _ = proc.communicate()
        console += f"\n[harness] guest killed after {timeout:.0f}s"
        returncode = None
    except BaseException:
        _kill_group(proc)
        raise
    seconds = time.monotonic() - start
    log = out / "pytest.log"
    if log.exists():
        console += "\n--- guest pytest ---\n" + log.read_text(errors="replace")
    found = out / "results.jsonl"
    results = parse_results(found) if found.exists() else {}
    (WORK / "last-console.log").write_text(console)  # kept for a look after the run
    shutil.rmtree(out, ignore_errors=True)
    return GuestRun(returncode, console[-20000:], results, seconds)


if __name__ == "__main__":
    # Run the tier by hand: python -m tests.vm.harness [pytest args for the guest]
    run = boot(sys.argv[1:])
    print(run.console)
    print(f"guest run: {run.seconds:.0f}s, {sum(len(v) for v in run.results.values())} results")
