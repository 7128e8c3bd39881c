"""``coldvault install-service``: put the systemd unit or launchd plist in place.

For people who installed coldvault with ``pip install .`` or ``pipx install .``
(the Debian package installs its unit itself). The service file shipped with
coldvault is copied with its program path rewritten to the ``coldvault`` that
runs this command, so the service runs exactly this installation.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from coldvault.errors import ColdvaultError
from coldvault.service.network import DROPIN, DROPIN_DIR, DROPIN_NAME, needs_network

UNIT_NAME = "coldvault.service"
CATALOG_NAME = "coldvault.catalog"
PLIST_NAME = "org.coldvault.daemon.plist"
PLIST_LABEL = "org.coldvault.daemon"
UNIT_DIR = Path("etc/systemd/system")
# journalctl --update-catalog reads this directory; /usr/lib/… belongs to packages.
CATALOG_DIR = Path("usr/local/lib/systemd/catalog")
PLIST_DIR = Path("Library/LaunchDaemons")
MAC_LOG_DIR = Path("Library/Logs/coldvault")
# Where the templates live in a source checkout (editable installs, tests).
_CHECKOUT = Path(__file__).resolve().parents[3]
_CHECKOUT_DIRS = {UNIT_NAME: "systemd", CATALOG_NAME: "systemd", PLIST_NAME: "launchd"}


@dataclass(frozen=True)
class ServiceFile:
    """One file ``install-service`` writes: its absolute target, content and mode."""

    path: Path
    content: bytes
    mode: int = 0o644


def template(name: str) -> bytes | None:
    """The shipped service file ``name`` (from the wheel or the checkout), or None."""
    packaged = resources.files("coldvault") / "_service" / name
    if packaged.is_file():
        return packaged.read_bytes()
    checkout = _CHECKOUT / _CHECKOUT_DIRS[name] / name
    if checkout.is_file():
        return checkout.read_bytes()
    return None


def _required_template(name: str) -> bytes:
    data = template(name)
    if data is None:
        raise ColdvaultError(
            f"the service file {name} is missing from this coldvault installation",
            hint="reinstall coldvault (pip install --force-reinstall .) from a full checkout",
        )
    return data


def installed_command() -> list[str]:
    """argv that starts the ``coldvault`` of this installation (absolute paths)."""
    # pip and pipx put the script beside the interpreter of their environment.
    script = Path(sys.executable).parent / "coldvault"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script.absolute())]
    found = shutil.which("coldvault")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "coldvault"]


def _systemd_quote(arg: str) -> str:
    """Quote one ExecStart= word; '%' and '$' are systemd specifiers, so escape them."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(text: str, command: list[str]) -> str:
    """The unit ``text`` with ExecStart= running ``command daemon``."""
    exec_start = "ExecStart=" + " ".join(_systemd_quote(a) for a in [*command, "daemon"])
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    if len(starts) != 1:
        raise ColdvaultError(f"the shipped {UNIT_NAME} has {len(starts)} ExecStart= lines, not 1")
    lines[starts[0]] = exec_start + "\n"
    return "".join(lines)


def render_plist(data: bytes, command: list[str]) -> bytes:
    """The plist ``data`` with ProgramArguments running ``command daemon``."""
    plist = plistlib.loads(data)
    plist["ProgramArguments"] = [*command, "daemon"]
    return plistlib.dumps(plist)


def service_files(
    kind: str, prefix: Path, command: list[str], *, network: bool = False
) -> list[ServiceFile]:
    """Everything ``install-service`` writes for ``kind`` ("systemd"/"launchd") under prefix.

    ``network``: the configuration needs IP, so the systemd unit gets its network drop-in.
    """
    if kind == "launchd":
        plist = render_plist(_required_template(PLIST_NAME), command)
        return [ServiceFile(prefix / PLIST_DIR / PLIST_NAME, plist)]
    unit = render_unit(_required_template(UNIT_NAME).decode(), command)
    files = [ServiceFile(prefix / UNIT_DIR / UNIT_NAME, unit.encode())]
    catalog = template(CATALOG_NAME)
    if catalog is not None:
        files.append(ServiceFile(prefix / CATALOG_DIR / CATALOG_NAME, catalog))
    if network:
        dropin = prefix / UNIT_DIR / DROPIN_DIR / DROPIN_NAME
        files.append(ServiceFile(dropin, DROPIN.encode()))
    return files


def _network_needed(args: argparse.Namespace) -> bool:
    """Whether the chosen configuration needs the network (False if it cannot be read)."""
    from coldvault.cli.common import config_path
    from coldvault.config.loader import load

    path = config_path(args)
    if not path.exists():
        print(f"no network drop-in: {path} does not exist yet (run install-service again later)")
        return False
    try:
        needed = needs_network(load(path))
    except ColdvaultError as exc:
        print(f"no network drop-in: {path} is not valid: {exc.message}", file=sys.stderr)
        return False
    if not needed:
        print(f"no network drop-in: nothing in {path} needs the network")
    return needed


def _write(item: ServiceFile) -> str:
    """Write one file atomically; say whether it was new, replaced or unchanged."""
    if item.path.exists() and item.path.read_bytes() == item.content:
        return "unchanged"
    verb = "replaced" if item.path.exists() else "installed"
    item.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = item.path.with_name(f".{item.path.name}.tmp")
    tmp.write_bytes(item.content)
    tmp.chmod(item.mode)
    tmp.replace(item.path)
    return verb


def _activate(kind: str) -> None:
    """Let the service manager see the new files (only when installing into /)."""
    from coldvault.system import proc

    if kind == "systemd":
        if Path("/run/systemd/system").is_dir() and proc.which("systemctl"):
            proc.run(["systemctl", "daemon-reload"])
            if proc.which("journalctl"):
                proc.run(["journalctl", "--update-catalog"], check=False)
        print("start it now and at every boot with: systemctl enable --now coldvault")
    else:
        print(
            "start it with: sudo launchctl bootstrap system "
            f"/{PLIST_DIR / PLIST_NAME}\n"
            "and give the coldvault command Full Disk Access (README.md, Installing on macOS)"
        )


def _default_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def install_service(args: argparse.Namespace) -> int:
    """Handler of ``coldvault install-service``."""
    kind: str = args.kind or _default_kind()
    prefix = Path(args.prefix)
    network = kind == "systemd" and _network_needed(args)
    files = service_files(kind, prefix, installed_command(), network=network)
    if args.network_only:  # the Debian package installs the unit; only the drop-in is ours
        files = [f for f in files if f.path.parent.name == DROPIN_DIR]
    if args.print:
        for item in files:
            print(f"# {item.path} (mode {item.mode:o})")
            print(item.content.decode(), end="" if item.content.endswith(b"\n") else "\n")
        return 0
    try:
        if kind == "launchd":
            # launchd opens StandardOutPath but does not create its folder.
            (prefix / MAC_LOG_DIR).mkdir(parents=True, exist_ok=True)
        for item in files:
            print(f"{_write(item)}: {item.path}")
    except OSError as exc:
        raise ColdvaultError(
            f"cannot write {exc.filename}: {exc.strerror}",
            hint="run it as root (sudo coldvault install-service)"
            if isinstance(exc, PermissionError)
            else "choose a --prefix that is a writable folder",
        ) from exc
    if prefix.resolve() == Path("/"):
        _activate(kind)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``install-service``."""
    p = sub.add_parser(
        "install-service",
        help="install the systemd unit (Linux) or launchd plist (macOS) for this installation",
        description="Install the service file for a pip/pipx installation, with its program "
        "path pointing at this coldvault. The Debian package does this itself. When the "
        "configuration (--config) sends pings, notifications or offsite copies, the systemd unit "
        "also gets "
        "the drop-in coldvault.service.d/network.conf that allows IP.",
    )
    p.add_argument(
        "--print", action="store_true", help="show the files and their content; write nothing"
    )
    p.add_argument(
        "--prefix",
        default="/",
        metavar="DIR",
        help="install under DIR instead of / (staging; no service manager is told)",
    )
    p.add_argument(
        "--network-only",
        action="store_true",
        help="write only the network drop-in, if the configuration needs it "
        "(for the Debian package, which installs the unit itself)",
    )
    p.add_argument(
        "--for",
        dest="kind",
        choices=("systemd", "launchd"),
        help="service manager (default: launchd on macOS, systemd elsewhere)",
    )
    p.set_defaults(func=install_service)
