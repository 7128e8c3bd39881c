"""Image restore from a real restic repository's `restic dump` tar stream, part hashes checked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import require_programs, require_root
from tests.unit.image_env import KiB, make_job, run, snapshots, write_source

from coldvault.errors import IntegrityError, JobError
from coldvault.offsite.restore_stream import restore_tar_stream
from coldvault.system.cancel import CancelToken


def _restic(repo: Path, *args: str) -> list[str]:
    return ["restic", "--repo", str(repo), "--password-file", str(repo.parent / "pass"), *args]


def _backup(tmp_path: Path, folder: Path) -> Path:
    repo = tmp_path / "repo"
    (tmp_path / "pass").write_text("pw\n")
    subprocess.run(_restic(repo, "init"), check=True, capture_output=True)
    subprocess.run(_restic(repo, "backup", str(folder)), check=True, capture_output=True)
    return repo


def _restore(repo: Path, folder: Path, dest: Path) -> None:
    argv = _restic(repo, "dump", "latest", str(folder))
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            restore_tar_stream(proc.stdout, f"offsite:{folder.name}", dest, CancelToken())
        finally:
            proc.stdout.close()
            proc.wait()


@pytest.fixture
def snapshot(tmp_path: Path) -> tuple[Path, Path]:
    require_programs("restic")
    src = tmp_path / "src"
    write_source(src, [(3 * 256 * KiB + 100, True), (2 * 256 * KiB, False), (5000, True)])
    run(make_job(src), tmp_path / "b")
    return src, snapshots(tmp_path / "b")[-1]


def test_restore_from_dump_is_byte_identical(tmp_path: Path, snapshot: tuple[Path, Path]) -> None:
    src, folder = snapshot
    repo = _backup(tmp_path, folder)
    dest = tmp_path / "restored.img"
    _restore(repo, folder, dest)
    subprocess.run(["cmp", str(src), str(dest)], check=True)


def test_part_not_matching_its_manifest_is_refused(
    tmp_path: Path, snapshot: tuple[Path, Path]
) -> None:
    _src, folder = snapshot
    crafted = tmp_path / "crafted"
    shutil.copytree(folder, crafted)
    part = crafted / "part_00000001"
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    os.unlink(part)
    part.write_bytes(bytes(data))
    repo = _backup(tmp_path, crafted)
    with pytest.raises(IntegrityError, match="part_00000001 does not match its manifest"):
        _restore(repo, crafted, tmp_path / "restored.img")


def test_too_small_block_device_is_refused(tmp_path: Path, snapshot: tuple[Path, Path]) -> None:
    require_root()
    require_programs("losetup")
    _src, folder = snapshot
    repo = _backup(tmp_path, folder)
    backing = tmp_path / "small.img"
    backing.write_bytes(bytes(512 * KiB))
    find = ["losetup", "--find", "--show", str(backing)]
    dev = subprocess.run(find, check=True, capture_output=True, text=True).stdout.strip()
    try:
        with pytest.raises(JobError, match=f"restore destination {dev} has 524288 bytes"):
            _restore(repo, folder, Path(dev))
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("part_00000001", "part_00000002 is not the part the manifest expects"),
        ("part_00000005", "holds 5 of the 6 parts its manifest lists"),
        (".coldvault-manifest.json", "does not start with a coldvault manifest"),
    ],
)
def test_folder_not_matching_its_manifest_is_refused(
    tmp_path: Path, snapshot: tuple[Path, Path], remove: str, message: str
) -> None:
    _src, folder = snapshot
    crafted = tmp_path / "crafted"
    shutil.copytree(folder, crafted)
    os.unlink(crafted / remove)
    repo = _backup(tmp_path, crafted)
    with pytest.raises(IntegrityError, match=message):
        _restore(repo, crafted, tmp_path / "restored.img")
