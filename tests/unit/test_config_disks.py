"""``disks:``: several named disks, their conflicts, and jobs restricted to some of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldvault.config.loader import load_text
from coldvault.config.model import DEFAULT_DISK, Config
from coldvault.errors import ConfigError

JOBS = """
jobs:
  - {name: root, type: image, source: /dev/sda2}
  - {name: home, type: btrfs, sources: [/home], disks: [office]}
"""


def disk(name: str, point: str, hash_file: str, extra: str = "") -> str:
    return (
        f"  - name: {name}\n    mount: {{point: {point}}}\n"
        f"    token: {{hash_file: {hash_file}}}\n{extra}"
    )


TWO = "disks:\n" + disk("home", "/media/a", "home.sha512") + disk("office", "/media/b", "o.sha512")


def load(text: str, tmp: Path) -> Config:
    return load_text(text, "c.yaml", tmp)


def error(text: str, tmp: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, tmp)
    return info.value.message


def test_disk_alone_is_one_disk_named_default(tmp_path: Path) -> None:
    text = "disk: {mount: {point: /media/x}}\n" + JOBS.replace("office", "default")
    config = load(text, tmp_path)
    assert config.disk_names == (DEFAULT_DISK,)
    assert config.disk.mount.point == Path("/media/x")
    assert config.for_disk(DEFAULT_DISK).disk == config.disk


def test_two_named_disks(tmp_path: Path) -> None:
    config = load(TWO + JOBS, tmp_path)
    assert config.disk_names == ("home", "office")
    assert config.disk_name == "home" and config.backup_root == Path("/media/a")
    office = config.for_disk("office")
    assert office.disk_name == "office" and office.backup_root == Path("/media/b")
    assert office.job_dir(office.jobs[0]) == Path("/media/b/root")
    assert office.disks == config.disks  # choosing a disk keeps the others known
    with pytest.raises(KeyError):
        config.for_disk("nowhere")


def test_job_disks_restricts(tmp_path: Path) -> None:
    config = load(TWO + JOBS, tmp_path)
    root, home = config.jobs
    assert config.disks_of(root) == ("home", "office")
    assert config.disks_of(home) == ("office",)
    assert config.jobs_on("home") == (root,)
    assert config.jobs_on("office") == (root, home)


def test_job_naming_an_unknown_disk_is_refused(tmp_path: Path) -> None:
    message = error(TWO + JOBS.replace("[office]", "[attic]"), tmp_path)
    assert "jobs[1].disks: found 'attic', expected the name of a configured disk: home, office" in (
        message
    )


@pytest.mark.parametrize(
    ("second", "what"),
    [
        (disk("home", "/media/b", "o.sha512"), "disks[1].name: found 'home', the name"),
        (disk("office", "/media/a", "o.sha512"), "disks[1].mount.point: found '/media/a'"),
        (disk("office", "/media/b", "home.sha512"), "disks[1].token.hash_file"),
    ],
)
def test_disks_may_not_share_identity_or_place(tmp_path: Path, second: str, what: str) -> None:
    text = "disks:\n" + disk("home", "/media/a", "home.sha512") + second + JOBS
    message = error(text.replace("[office]", "[home]"), tmp_path)
    assert what in message and "expected each disk to have its own" in message


def test_disks_may_not_share_a_luks_mapping(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"k" * 32)
    luks = f"    luks: {{key_file: {key}, name: enc}}\n"
    text = (
        "disks:\n"
        + disk("home", "/media/a", "h.sha512", luks)
        + disk("office", "/media/b", "o.sha512", luks)
    )
    message = error(text + JOBS, tmp_path)
    assert "disks[1].luks.name: found 'enc', the LUKS mapping name of disk 'home' too" in message


def test_disk_and_disks_together_are_refused(tmp_path: Path) -> None:
    message = error("disk: {mount: {point: /m}}\n" + TWO + JOBS, tmp_path)
    assert "disks: found both disk: and disks:, expected one of them" in message


@pytest.mark.parametrize("value", ["[]", "home", "[1, 2]"])
def test_disks_must_be_a_list_of_mappings(tmp_path: Path, value: str) -> None:
    assert "disks" in error(f"disks: {value}\n" + JOBS, tmp_path)


def test_a_disk_needs_a_name_and_known_keys(tmp_path: Path) -> None:
    assert "disks[0].name: missing" in error("disks:\n  - mount: {point: /m}\n" + JOBS, tmp_path)
    text = "disks:\n  - {name: a, mount: {point: /m}, spin: fast}\n" + JOBS
    assert "disks[0].spin: unknown key" in error(text, tmp_path)


def test_token_without_luks_warns_once_per_disk(tmp_path: Path) -> None:
    config = load(TWO + JOBS, tmp_path)
    assert len(config.warnings) == 2
    assert config.warnings[0].startswith("disk home has a token but no LUKS layer")
    key = tmp_path / "k"
    key.write_bytes(b"k" * 32)
    luks = f"    luks: {{key_file: {key}, name: enc-a}}\n"
    text = "disks:\n" + disk("home", "/media/a", "h.sha512", luks)
    assert load(text + JOBS.replace("office", "home"), tmp_path).warnings == ()


def test_another_disks_token_file_is_not_a_job_folder(tmp_path: Path) -> None:
    text = (
        "disks:\n"
        + disk("home", "/media/a", "h.sha512")
        + "  - {name: office, mount: {point: /b}, token: {hash_file: o, file: id/tok}}\n"
        + "jobs:\n  - {name: x, type: image, source: /dev/sda2, target: id}\n"
    )
    assert "which is or holds the disk's token file 'id/tok'" in error(text, tmp_path)


def test_validate_summary_names_each_disk_and_the_warnings(tmp_path: Path) -> None:
    from coldvault.cli.config_cmd import summary

    text = summary(load(TWO + JOBS, tmp_path), "c.yaml")
    assert "\ndisk home: folder /media/a" in text or "\ndisk home: mount /media/a" in text
    assert "\ndisk office: " in text
    assert "\nwarning: disk office has a token but no LUKS layer" in text
