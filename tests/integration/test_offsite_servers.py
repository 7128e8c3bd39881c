"""The real restic servers of tests/offsite_servers.py work: init, backup, dump each."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.offsite_servers import Server, free_port, rest_server, s3_server, sftp_server
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


def test_cli_copies_to_s3_with_credentials_from_env_file(s3_server: Server, tmp_path: Path) -> None:
    from tests.integration.offsite_env import OffsiteEnv

    env = OffsiteEnv(tmp_path)
    creds = tmp_path / "s3.env"
    creds.write_text("".join(f"{k}={v}\n" for k, v in s3_server.env.items()))
    creds.chmod(0o600)
    bucket = s3_server.repository.rsplit("/", 1)[0] + f"/{tmp_path.name.replace('_', '-').lower()}"
    env.add_target("s3", bucket, env_file=str(creds))
    env.ok("offsite", "init", "s3")
    env.ok("run")
    assert "17 new" in env.ok("offsite", "run", "s3")
    env.ok("restore", "root", str(tmp_path / "r.img"), "--from", "s3")
    assert (tmp_path / "r.img").read_bytes() == env.source.read_bytes()
    creds.chmod(0o644)
    done = env.cli("offsite", "run", "s3")
    assert done.returncode == 1 and "restic env_file" in done.stderr and "chmod 600" in done.stderr


def test_cli_skips_when_the_server_is_off(rest_server: Server, tmp_path: Path) -> None:
    from tests.integration.offsite_env import OffsiteEnv

    env = OffsiteEnv(tmp_path)
    env.add_target("rest", rest_server.repository.replace("/repo", f"/{tmp_path.name}"))
    env.ok("offsite", "init", "rest")
    env.ok("run")
    assert "17 new" in env.ok("offsite", "run", "rest")
    port = rest_server.repository.rsplit(":", 1)[1].split("/")[0]
    env.targets[0]["repository"] = f"rest:http://127.0.0.1:{free_port()}/x"  # nothing listens
    env.write()
    env.change_source(0, 16)
    env.ok("run")  # a new backup: the next offsite run has something to send
    done = env.cli("offsite", "run", "rest")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "skipped" in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert f"127.0.0.1:{port}" not in done.stderr
    job = env.offsite_state()["disks"]["rest"]["jobs"]["root"]
    assert job["result"] == "success" and job["error"]  # the last success stands
