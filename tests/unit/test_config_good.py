"""Valid configurations: what the loader understands, and the shipped example."""

from __future__ import annotations

import re
import subprocess
from datetime import time, timedelta
from pathlib import Path

import pytest
from tests.conftest import ROOT

from coldvault.cli.config_cmd import example_text
from coldvault.config.loader import load, load_text
from coldvault.config.model import BtrfsJob, ImageJob, Retention, SourceRef

MINIMAL = "jobs:\n  - {name: root, type: image, source: /dev/sda2}\n"


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load(path)


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_text(MINIMAL, "x.yaml", tmp_path)
    job = config.jobs[0]
    assert isinstance(job, ImageJob)
    assert job == ImageJob(name="root", source=SourceRef("path", "/dev/sda2"), target="root")
    assert config.disk.mount.point == Path("/media/backup")
    assert config.disk.luks is None and config.disk.token is None
    assert config.job_dir(job) == Path("/media/backup/root")


def test_load_records_the_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.yaml").write_text(MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert load("c.yaml").path == tmp_path / "c.yaml"


def test_full_image_job(tmp_path: Path) -> None:
    text = """
jobs:
  - name: root
    type: image
    source: partuuid:0a1b-02
    target: hosts/root
    part_size: 0x4000000
    block_size: 4KiB
    keep_null_parts: true
    snapshots: 0
    retention: {keep_last: 2, daily: 7, weekly: 4}
    allow_mounted: TRUE
    hash: sha256
    every: 1h30m
    at: [3:00, "15:30"]
    on_plug: true
    before: "fsfreeze -f '/srv/my data'"
    after: [fsfreeze, -u, /srv/my data]
    on_success: [[logger, ok], "touch /tmp/x"]
    on_failure: null
"""
    job = load_text(text, "c.yaml", tmp_path).jobs[0]
    assert isinstance(job, ImageJob)
    assert job.source == SourceRef("partuuid", "0a1b-02")
    assert job.target == "hosts/root"
    assert (job.part_size, job.block_size) == (64 << 20, 4096)
    assert job.keep_null_parts and job.allow_mounted
    assert job.snapshots == 0
    assert job.retention == Retention(keep_last=2, daily=7, weekly=4)
    assert job.hash == "sha256"
    assert job.when.every == timedelta(hours=1, minutes=30)
    # YAML 1.1 would read the unquoted 3:00 as the number 180.
    assert job.when.at == (time(3, 0), time(15, 30))
    assert job.when.on_plug
    assert job.hooks.before == (("fsfreeze", "-f", "/srv/my data"),)
    assert job.hooks.after == (("fsfreeze", "-u", "/srv/my data"),)
    assert job.hooks.on_success == (("logger", "ok"), ("touch", "/tmp/x"))
    assert job.hooks.on_failure == ()


def test_full_btrfs_job(tmp_path: Path) -> None:
    text = """
jobs:
  - name: home
    type: btrfs
    sources: /home
    snapshot_dir: /home/.snaps/
    source_retention: {keep_last: 1}
    target_retention: {daily: 14, monthly: 12, keep_last: null}
    compressed_data: true
"""
    job = load_text(text, "c.yaml", tmp_path).jobs[0]
    assert isinstance(job, BtrfsJob)
    assert job.sources == (Path("/home"),)
    assert job.snapshot_dir == Path("/home/.snaps")
    assert job.source_retention == Retention(keep_last=1)
    assert job.target_retention == Retention(daily=14, monthly=12)
    assert job.compressed_data
    assert job.target == "home"


def test_btrfs_defaults(tmp_path: Path) -> None:
    text = "jobs:\n  - {name: h, type: btrfs, sources: [/a, /b]}\n"
    job = load_text(text, "c.yaml", tmp_path).jobs[0]
    assert isinstance(job, BtrfsJob)
    assert job.sources == (Path("/a"), Path("/b"))
    assert job.source_retention == Retention(keep_last=3)
    assert job.target_retention == Retention(keep_last=30)


def test_relative_paths_start_at_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "backup.key").write_bytes(b"k" * 64)
    text = """
disk:
  luks: {key_file: keys/backup.key}
  token: {hash_file: token.sha512}
settings:
  state_file: state/state.json
jobs:
  - {name: img, type: image, source: disk.img}
"""
    config = _load(tmp_path, text)
    assert config.disk.luks is not None  # type: ignore[attr-defined]
    assert config.disk.luks.key_file == tmp_path / "keys" / "backup.key"  # type: ignore[attr-defined]
    assert config.disk.token.hash_file == tmp_path / "token.sha512"  # type: ignore[attr-defined]
    assert config.settings.state_file == tmp_path / "state" / "state.json"  # type: ignore[attr-defined]
    assert config.jobs[0].source == SourceRef("path", str(tmp_path / "disk.img"))  # type: ignore[attr-defined]


def test_whole_disk_stack(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"secret")
    text = f"""
disk:
  device: /dev/disk/by-partlabel/backup
  array: {{device: /dev/md/bk, uuid: "3F9A1C2E-8B7D6A54-0E1F2A3B-4C5D6E7F", allow_degraded: false}}
  luks: {{key_file: {key}, name: enc-bk, device: /dev/md/bk}}
  lvm: {{vg: bk, lv: host1}}
  mount: {{point: /mnt/bk/, fstype: btrfs, options: "noatime,compress=zstd", require_mount: false}}
  token: {{hash_file: /etc/coldvault/token.sha512, file: .id/token}}
settings: {{poll_seconds: 0.5, inhibit_sleep: false, on_failure: "mail -s failed root"}}
{MINIMAL}"""
    config = load_text(text, "c.yaml", tmp_path)
    disk = config.disk
    assert disk.device == Path("/dev/disk/by-partlabel/backup")
    assert disk.array is not None and disk.array.device == Path("/dev/md/bk")
    assert disk.array.uuid == "3f9a1c2e:8b7d6a54:0e1f2a3b:4c5d6e7f"
    assert not disk.array.allow_degraded
    assert disk.luks is not None and disk.luks.name == "enc-bk"
    assert disk.luks.device == Path("/dev/md/bk")
    assert disk.lvm is not None and (disk.lvm.vg, disk.lvm.lv) == ("bk", "host1")
    assert disk.mount.point == Path("/mnt/bk")
    assert disk.mount.options == ("noatime", "compress=zstd")
    assert disk.mount.fstype == "btrfs" and not disk.mount.require_mount
    assert disk.token is not None and disk.token.file == ".id/token"
    assert config.settings.poll_seconds == 0.5
    assert not config.settings.inhibit_sleep
    assert config.settings.hooks.on_failure == (("mail", "-s", "failed", "root"),)


def test_empty_layer_mappings_take_defaults(tmp_path: Path) -> None:
    config = load_text("disk:\n  array: {}\n  lvm: {}\n" + MINIMAL, "c.yaml", tmp_path)
    assert config.disk.array is not None
    assert config.disk.array.device == Path("/dev/md/backup")
    assert config.disk.lvm is not None and config.disk.lvm.vg == "backup"


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = """
common: &common
  type: image
  part_size: 64M
jobs:
  - {<<: *common, name: a, source: /dev/sda1}
  - {<<: *common, name: b, source: /dev/sda2, part_size: 32M}
"""
    # `common` is not a key of ours: anchors must live inside a known key.
    with pytest.raises(Exception, match="common: unknown key"):
        load_text(text, "c.yaml", tmp_path)
    text = text.replace("common: &common\n  type: image\n  part_size: 64M\n", "").replace(
        "  - {<<: *common, name: a",
        "  - &common {type: image, part_size: 64M, name: a",
    )
    jobs = load_text(text, "c.yaml", tmp_path).jobs
    assert [(j.name, j.part_size) for j in jobs] == [("a", 64 << 20), ("b", 32 << 20)]  # type: ignore[union-attr]


# -- the shipped example -------------------------------------------------------------


def test_package_example_is_the_repository_example() -> None:
    assert example_text() == (ROOT / "config" / "example.yaml").read_text()


def test_example_validates_and_explains_every_key(tmp_path: Path) -> None:
    text = example_text()
    config = load_text(text, "example.yaml", tmp_path)
    assert [j.type for j in config.jobs] == ["image", "btrfs"]
    assert config.disk.token is not None
    from coldvault.config.model import schema_keys

    every_key = schema_keys()
    assert {"block_size", "every", "max_per_session", "on_failure", "keep_last"} <= every_key
    missing = {k for k in every_key if not re.search(rf"\b{k}\b", text)}
    assert not missing


def test_example_with_every_layer_uncommented(tmp_path: Path) -> None:
    key = tmp_path / "backup.key"
    key.write_bytes(b"k" * 32)
    text = example_text().replace("/etc/coldvault/backup.key", str(key))
    lines = []
    for line in text.splitlines():
        # "  # array:" / "  #   device: ..." -> uncommented, keeping the indentation.
        match = re.fullmatch(
            r"  # (  )?((array|luks|lvm|device|uuid|allow_degraded|key_file|name|vg|lv)\b.*)", line
        )
        lines.append(f"  {match[1] or ''}{match[2]}" if match else line)
    config = load_text("\n".join(lines), "example.yaml", tmp_path)
    assert config.disk.array is not None and config.disk.array.device == Path("/dev/md/backup")
    assert config.disk.luks is not None and config.disk.luks.key_file == key
    assert config.disk.lvm is not None and config.disk.lvm.lv == "myhost"


def test_cli_example_pipes_into_validate(coldvault_cmd: list[str]) -> None:
    example = subprocess.run(
        [*coldvault_cmd, "config", "example"], capture_output=True, text=True, check=True
    )
    done = subprocess.run(
        [*coldvault_cmd, "config", "validate", "-"],
        input=example.stdout,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<stdin>: valid, 2 job(s)")
    assert "job root (image): /dev/sda2 -> /media/backup/root, parts of 100M" in done.stdout
    assert "job home (btrfs): /home -> /media/backup/home" in done.stdout


def test_cli_validate_uses_global_config_option(tmp_path: Path, coldvault_cmd: list[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    done = subprocess.run(
        [*coldvault_cmd, "--config", str(path), "config", "validate"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path}: valid, 1 job(s)")


def test_verify_schedule_defaults_and_overrides(tmp_path: Path) -> None:
    text = (
        "settings:\n  verify: {every: never}\n"
        "jobs:\n  - {name: a, type: image, source: /x}\n"
        "  - {name: b, type: btrfs, sources: [/h], verify: {every: 7d, max_per_session: 200G}}\n"
    )
    config = load_text(text, "c.yaml", tmp_path)
    a, b = config.jobs
    assert a.verify is None and config.verify_schedule(a).every is None
    assert config.verify_schedule(b).every == timedelta(days=7)
    assert config.verify_schedule(b).max_per_session == 200 << 30
    default = load_text(MINIMAL, "c.yaml", tmp_path)
    assert default.verify_schedule(default.jobs[0]).every == timedelta(days=30)


def test_every_schema_key_declares_a_known_converter_and_help(tmp_path: Path) -> None:
    """The schema is the one source of truth: each key's converter must exist in the loader."""
    from dataclasses import fields

    from coldvault.config.converters import Reader
    from coldvault.config.loader import converter
    from coldvault.config.model import JOB_CLASSES, Config, key_of

    reader = Reader("c.yaml", tmp_path)
    todo: list[type] = [Config, *JOB_CLASSES.values()]
    seen: set[type] = set()
    checked = 0
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for f in fields(cls):
            spec = key_of(f)
            if spec is None:
                continue
            assert spec.help, f"{cls.__name__}.{f.name} has no help"
            if spec.section is not None:
                todo.append(spec.section)
            elif spec.convert != "jobs":
                assert callable(converter(reader, spec)), f"{cls.__name__}.{f.name}"
            checked += 1
    assert checked >= 50


def test_disk_init_defaults_come_from_the_model() -> None:
    from coldvault.config.model import ArrayConfig, LuksConfig, LvmConfig, MountConfig, TokenConfig
    from coldvault.disk.prepare.plan import InitOptions

    opts = InitOptions()
    assert opts.array == ArrayConfig().device == Path("/dev/md/backup")
    assert opts.luks_name == LuksConfig(key_file=Path("/k")).name == "enc-backup"
    assert opts.vg == LvmConfig().vg == "backup"
    assert opts.mount_point == MountConfig().point == Path("/media/backup")
    assert opts.token_file == TokenConfig(hash_file=Path("/h")).file == ".token"
