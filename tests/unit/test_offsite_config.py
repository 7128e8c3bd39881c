"""offsite: in the configuration, and the credentials files restic is given."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from coldvault.config.loader import load_text
from coldvault.config.model import OffsiteTarget, Retention
from coldvault.errors import ConfigError, OffsiteError
from coldvault.offsite.credentials import environment, mask, read_env_file

JOBS = """\
disk: {mount: {point: /media/b, require_mount: false}}
jobs:
  - {name: root, type: image, source: /dev/sda2}
  - {name: home, type: btrfs, sources: /home, offsite_from: source}
"""


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "restic.pass"
    path.write_text("pw\n")
    path.chmod(0o600)
    return path


def load(tmp_path: Path, offsite: str) -> object:
    return load_text(JOBS + "offsite:\n" + offsite, "c.yaml", tmp_path)


def problems(tmp_path: Path, offsite: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, offsite)
    return info.value.message


def test_defaults_and_every_key(tmp_path: Path, secret: Path) -> None:
    config = load_text(
        JOBS + f"offsite:\n  - {{name: usb, repository: /srv/r, password_file: {secret}}}\n"
        f"  - name: cloud\n    repository: sftp:u@nas:/srv\n    password_file: {secret}\n"
        f"    env_file: {secret}\n    jobs: [home]\n    every: 1d\n    at: ['03:00']\n"
        "    retention: {keep_last: 2}\n    check: {every: never, read_data_subset: 1/10}\n",
        "c.yaml",
        tmp_path,
    )
    usb, cloud = config.offsite
    assert usb == OffsiteTarget(name="usb", repository="/srv/r", password_file=secret)
    assert usb.retention == Retention(keep_last=7, daily=14, weekly=8, monthly=12)
    assert usb.check.every == timedelta(days=30) and usb.check.read_data_subset == "5%"
    assert [j.name for j in config.offsite_jobs(usb)] == ["root", "home"]
    assert [j.name for j in config.offsite_jobs(cloud)] == ["home"]
    assert cloud.when.every == timedelta(days=1) and cloud.check.every is None
    assert cloud.retention == Retention(keep_last=2)
    assert config.jobs[1].offsite_from == "source"  # type: ignore[union-attr]


def test_bad_entries_name_their_line(tmp_path: Path, secret: Path) -> None:
    text = problems(
        tmp_path,
        f"  - {{name: a, repository: /r, password_file: {secret}, jobs: [nope]}}\n"
        f"  - {{name: b, repository: 'ftp://user:hunter2@h/x', password_file: {secret}}}\n"
        f"  - {{name: c, repository: /r, password_file: {secret},"
        " check: {read_data_subset: 0%}}\n"
        f"  - {{name: c, repository: /r, password_file: {secret}}}\n"
        "  - {name: e, repository: /r, password_file: /no/such/file}\n",
    )
    assert re.search(r"c\.yaml:6:\d+: offsite\[0\]\.jobs: found 'nope', expected the name", text)
    assert "offsite[1].repository: found a repository that is neither" in text
    assert "hunter2" not in text  # a repository string is never shown
    assert "offsite[2].check.read_data_subset: found '0%'" in text
    assert "offsite[3].name: found 'c' again, expected unique offsite names" in text
    assert "offsite[4].password_file: found '/no/such/file', expected an existing key file" in text


def test_offsite_from_takes_disk_or_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(JOBS.replace("offsite_from: source", "offsite_from: cloud"), "c.yaml", tmp_path)
    assert "offsite_from: found 'cloud'" in info.value.message


def test_env_file_lines(tmp_path: Path) -> None:
    env = tmp_path / "restic.env"
    env.write_text("# S3\nAWS_ACCESS_KEY_ID=abc\n\nAWS_SECRET_ACCESS_KEY = s=e=c\n")
    env.chmod(0o600)
    assert read_env_file(env) == {"AWS_ACCESS_KEY_ID": "abc", "AWS_SECRET_ACCESS_KEY": "s=e=c"}
    for bad in ("export X=1\n", "RESTIC_PASSWORD=x\n", "just words\n"):
        env.write_text(bad)
        with pytest.raises(OffsiteError) as info:
            read_env_file(env)
        assert f"{env}:1: expected NAME=value" in info.value.message
        assert bad.strip() not in info.value.message


def test_secret_files_are_checked_on_the_open_file(tmp_path: Path, secret: Path) -> None:
    target = OffsiteTarget(name="t", repository="/r", password_file=secret)
    with environment(target) as env:
        assert env["RESTIC_REPOSITORY"] == "/r"
        assert Path(env["RESTIC_PASSWORD_FILE"]).read_text() == "pw\n"
    secret.chmod(0o640)
    with pytest.raises(OffsiteError, match="chmod 600"), environment(target):
        pass
    secret.unlink()
    os.mkfifo(secret, 0o600)
    with pytest.raises(OffsiteError, match="not a regular file"), environment(target):
        pass


def test_mask_hides_the_repository_and_its_password() -> None:
    target = OffsiteTarget(
        name="cloud", repository="rest:https://u:s3cret@h:8000/r", password_file=Path("/p")
    )
    text = "Fatal: unable to open rest:https://u:s3cret@h:8000/r; also https://u:s3cret@h"
    masked = mask(target, text)
    assert "s3cret" not in masked and "<cloud>" in masked


def test_validate_summary_names_targets_without_their_repository(
    tmp_path: Path, secret: Path
) -> None:
    from coldvault.cli.config_cmd import summary

    config = load_text(
        JOBS + "offsite:\n  - name: cloud\n    repository: rest:https://u:pw1234@h:8000/r\n"
        f"    password_file: {secret}\n    jobs: [root]\n    every: 1d\n",
        "c.yaml",
        tmp_path,
    )
    text = summary(config, "c.yaml")
    assert "offsite cloud: rest: repository (not shown), jobs root; every 1d" in text
    assert "pw1234" not in text and "h:8000" not in text
