"""The real restic servers of tests/offsite_servers.py work: init, backup, dump each."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.offsite_servers import Server, rest_server, s3_server, sftp_server
from tests.unit.image_env import KiB, make_job, run, snapshots, write_source

from coldvault.offsite.restore_stream import restore_tar_stream
from coldvault.system.cancel import CancelToken

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

    server.ensure_repository(password)
    restic("backup", "--json", "--tag", "roundtrip", str(source))
    dumped = restic("dump", "--tag", "roundtrip", "latest", str(source / "part"))
    assert dumped.stdout == payload


@pytest.mark.parametrize("fixture", ["s3_server", "sftp_server"])
def test_image_restored_from_server_is_byte_identical(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: Server = request.getfixturevalue(fixture)
    password = tmp_path / "pass"
    password.write_text("test-password\n")
    src = tmp_path / "src"
    write_source(src, [(3 * 256 * KiB + 7, True), (256 * KiB, False), (4096, True)])
    run(make_job(src), tmp_path / "b")
    folder = snapshots(tmp_path / "b")[-1]
    server.ensure_repository(password)
    env = server.restic_env()
    tag = f"image-{tmp_path.name}"  # the module's server is shared: one snapshot per test
    backup = server.restic(password, "backup", "--tag", tag, str(folder))
    subprocess.run(backup, env=env, capture_output=True, check=True, timeout=120)
    dest = tmp_path / "restored.img"
    dump = server.restic(password, "dump", "--tag", tag, "latest", str(folder))
    with subprocess.Popen(dump, env=env, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            restore_tar_stream(proc.stdout, f"{fixture}:{folder.name}", dest, CancelToken())
        finally:
            proc.stdout.close()
            proc.wait()
    subprocess.run(["cmp", str(src), str(dest)], check=True)
