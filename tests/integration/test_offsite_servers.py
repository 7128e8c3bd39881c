"""The real restic servers of tests/offsite_servers.py work: init, backup, dump each."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.offsite_servers import Server, rest_server, s3_server, sftp_server

__all__ = ["rest_server", "s3_server", "sftp_server"]  # fixtures used by name below


@pytest.mark.parametrize("fixture", ["rest_server", "sftp_server", "s3_server"])
def test_server_round_trip(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server: Server = request.getfixturevalue(fixture)
    password = tmp_path / "pass"
    password.write_text("test-password\n")
    source = tmp_path / "src"
    source.mkdir()
    payload = bytes(range(256)) * 4096
    (source / "part").write_bytes(payload)
    env = server.restic_env()

    def restic(*args: str) -> subprocess.CompletedProcess[bytes]:
        argv = server.restic(password, *args)
        return subprocess.run(argv, env=env, capture_output=True, check=True, timeout=120)

    restic("init")
    restic("backup", "--json", "--tag", "roundtrip", str(source))
    dumped = restic("dump", "latest", str(source / "part"))
    assert dumped.stdout == payload
