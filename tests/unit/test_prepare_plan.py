"""The ``disk init`` / ``add-mirror`` plans as data, and the parts of them the host can run."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.prepare_loops import loop_device, require_loop_tools, sh

from coldvault.config.loader import load
from coldvault.config.model import TokenConfig
from coldvault.disk import token
from coldvault.disk.prepare import config_text
from coldvault.disk.prepare.execute import (
    Executor,
    init_actions,
    wait_for_block_device,
    write_private_file,
)
from coldvault.disk.prepare.mirror import geometry
from coldvault.disk.prepare.plan import (
    InitOptions,
    Plan,
    Step,
    init_plan,
    mirror_plan,
    partition_path,
    partition_steps,
)
from coldvault.errors import Cancelled, ConfigError, DiskError, TokenRejected
from coldvault.system.cancel import CancelToken
from coldvault.system.mounts import mount_at

SECRET = b"correct horse battery staple"


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Path]:
    require_loop_tools()
    with loop_device(tmp_path) as dev:
        yield dev


def _argvs(plan: Plan) -> list[tuple[str, ...]]:
    return [s.argv for s in plan.steps if s.argv]


def test_partition_names_follow_the_kernel() -> None:
    assert partition_path(Path("/dev/sdb")) == Path("/dev/sdb1")
    assert partition_path(Path("/dev/loop7")) == Path("/dev/loop7p1")
    assert partition_path(Path("/dev/nvme0n1"), 2) == Path("/dev/nvme0n1p2")


def test_init_plan_has_the_design_stack_in_order() -> None:
    opts = InitOptions(lv="host1")
    plan = init_plan(opts, Path("/dev/sdx"), [Path("/dev/sdx1"), Path("/dev/sdx2")])
    programs = [a[0] for a in _argvs(plan)]
    assert programs == [
        "wipefs", "wipefs", "wipefs", "sgdisk", "partx", "wipefs", "mdadm", "cryptsetup",
        "cryptsetup", "cryptsetup", "pvcreate", "vgcreate", "lvcreate", "mkfs.btrfs", "mount",
    ]  # fmt: skip
    argvs = _argvs(plan)
    assert argvs[0] == ("wipefs", "--all", "/dev/sdx1")  # old partitions first
    sgdisk = argvs[3]
    assert "--typecode=1:FD00" in sgdisk and "--change-name=1:backup" in sgdisk
    mdadm = argvs[6]
    assert mdadm[:3] == ("mdadm", "--create", "/dev/md/backup")
    assert mdadm[-2:] == ("/dev/sdx1", "missing")
    assert "--level=1" in mdadm and "--metadata=1.2" in mdadm
    vgcreate = ("vgcreate", "--setautoactivation", "n", "backup", "/dev/mapper/enc-backup")
    assert vgcreate in argvs  # udev must not activate it behind coldvault's back
    assert ("mkfs.btrfs", "--quiet", "--label=backup", "/dev/backup/host1") in argvs
    actions = [s.action for s in plan.steps if s.action]
    assert actions == ["wait-partition", "write-key", "mkdir", "verify-mount", "write-token"]
    # The key file exists before luksAddKey uses it; the token is written after the mount check.
    order = [s.action or s.argv[1] for s in plan.steps]
    assert order.index("write-key") < order.index("luksAddKey")
    assert order.index("verify-mount") < order.index("write-token")


def test_passphrase_goes_on_stdin_never_on_argv() -> None:
    plan = init_plan(InitOptions(lv="h"), Path("/dev/sdx"))
    luks = [s for s in plan.steps if s.argv[:2] in {("cryptsetup", "luksFormat"),
                                                    ("cryptsetup", "luksAddKey")}]  # fmt: skip
    assert len(luks) == 2
    for step in luks:
        assert step.stdin == "passphrase"
        assert "--key-file=-" in step.argv
        assert "--type=luks2" in step.argv or step.argv[1] == "luksAddKey"
    assert "(the passphrase on stdin)" in plan.show()


def test_cost_options_reach_both_key_slots_and_default_to_cryptsetup() -> None:
    cheap = InitOptions(lv="h", pbkdf="pbkdf2", pbkdf_iterations=1000, iter_time_ms=10)
    for opts, expected in ((cheap, 3), (InitOptions(lv="h"), 0)):
        for step in init_plan(opts, Path("/dev/sdx")).steps:
            if step.argv[:2] in {("cryptsetup", "luksFormat"), ("cryptsetup", "luksAddKey")}:
                found = [a for a in step.argv if a.startswith(("--pbkdf", "--iter-time"))]
                assert len(found) == expected
                if expected:
                    assert "--pbkdf=pbkdf2" in found
                    assert "--pbkdf-force-iterations=1000" in found


def test_every_name_can_be_overridden() -> None:
    opts = InitOptions(
        part_label="vault",
        array=Path("/dev/md/vault"),
        luks_name="enc-vault",
        key_file=Path("/root/vault.key"),
        vg="vg0",
        lv="lv0",
        lv_size="10G",
        fs_label="vaultfs",
        mount_point=Path("/mnt/vault"),
    )
    text = init_plan(opts, Path("/dev/sdx")).show()
    for expected in (
        "--change-name=1:vault",
        "mdadm --create /dev/md/vault",
        "luksAddKey --batch-mode --key-file=- /dev/md/vault /root/vault.key",
        "cryptsetup open --key-file=/root/vault.key /dev/md/vault enc-vault",
        "vgcreate --setautoactivation n vg0 /dev/mapper/enc-vault",
        "--size=10G --name=lv0 vg0",
        "--label=vaultfs /dev/vg0/lv0",
        "mount -t btrfs /dev/vg0/lv0 /mnt/vault",
    ):
        assert expected in text


def test_teardown_closes_in_reverse_and_keep_open_skips_it() -> None:
    plan = init_plan(InitOptions(lv="h"), Path("/dev/sdx"))
    assert [s.argv for s in plan.teardown()] == [
        ("umount", "/media/backup"),
        ("lvchange", "--activate=n", "backup/h"),
        ("cryptsetup", "close", "enc-backup"),
        ("mdadm", "--stop", "/dev/md/backup"),
    ]
    assert "umount /media/backup" in plan.show()
    kept = init_plan(InitOptions(lv="h", keep_open=True), Path("/dev/sdx"))
    assert "umount" not in kept.show()


def test_mirror_plan_copies_the_geometry_and_grows_a_full_array() -> None:
    plan = mirror_plan(Path("/dev/md/backup"), Path("/dev/sdy"), [], "backup", 2048, 4095, None)
    argvs = _argvs(plan)
    assert "--new=1:2048:4095" in argvs[1]
    assert argvs[-1] == ("mdadm", "--add", "/dev/md/backup", "/dev/sdy1")
    grown = mirror_plan(Path("/dev/md/backup"), Path("/dev/sdy"), [], "backup", 2048, 4095, 3)
    assert _argvs(grown)[-1] == ("mdadm", "--grow", "/dev/md/backup", "--raid-devices=3")


def test_partition_steps_run_for_real_and_copy_exactly(loop: Path, tmp_path: Path) -> None:
    part = partition_path(loop)
    steps = partition_steps(loop, "backup")
    actions = {"wait-partition": lambda: wait_for_block_device(part)}
    log = io.StringIO()
    Executor(Plan(tuple(steps), close_at_end=False), out=log, actions=actions).run()
    assert f"[3/4] wait until {part} appears" in log.getvalue()
    geo = geometry(part.name)
    assert geo.disk == loop.name
    assert geo.label == "backup"
    assert geo.start == 2048
    assert sh("blkid", "-p", "-o", "value", "-s", "PART_ENTRY_TYPE", part).strip() == (
        "a19d880f-05fc-4d3b-a006-743f0f84911e"  # GPT "Linux RAID"
    )
    # add-mirror's partition on a second disk lands on the same sectors.
    with loop_device(tmp_path, name="second.img") as second:
        first, last = geo.start, geo.start + geo.size - 1
        steps2 = partition_steps(second, geo.label, str(first), str(last))
        part2 = partition_path(second)
        actions2 = {"wait-partition": lambda: wait_for_block_device(part2)}
        Executor(Plan(tuple(steps2), close_at_end=False), out=io.StringIO(), actions=actions2).run()
        assert geometry(part2.name) == geo.__class__(second.name, geo.start, geo.size, geo.label)


def test_failed_step_closes_what_was_opened(loop: Path, tmp_path: Path) -> None:
    sh("mkfs.btrfs", "-q", loop)
    point = tmp_path / "mnt"
    point.mkdir()
    plan = Plan(
        (
            Step("mount", argv=("mount", str(loop), str(point)), undo=("umount", str(point))),
            Step("fail", argv=("false",)),
        )
    )
    with pytest.raises(DiskError, match=r"step 2 of 2 \(fail\) failed") as caught:
        Executor(plan, out=io.StringIO()).run()
    assert "--yes-destroy" in (caught.value.hint or "")
    assert mount_at(point) is None


def test_stop_request_closes_what_was_opened(loop: Path, tmp_path: Path) -> None:
    sh("mkfs.btrfs", "-q", loop)
    point = tmp_path / "mnt"
    point.mkdir()
    cancel = CancelToken()
    plan = Plan(
        (
            Step("mount", argv=("mount", str(loop), str(point)), undo=("umount", str(point))),
            Step("the user presses Ctrl-C", action="stop"),
            Step("long step", argv=("sleep", "600")),
        )
    )
    executor = Executor(plan, out=io.StringIO(), actions={"stop": cancel.cancel}, cancel=cancel)
    with pytest.raises(Cancelled):
        executor.run()
    assert mount_at(point) is None


def test_secret_is_fed_on_stdin(tmp_path: Path) -> None:
    sink = tmp_path / "got"
    step = Step("read", argv=("dd", f"of={sink}", "status=none"), stdin="passphrase")
    Executor(Plan((step,)), out=io.StringIO(), secrets_={"passphrase": SECRET}).run()
    assert sink.read_bytes() == SECRET


def test_private_file_is_0600_and_never_silently_replaced(tmp_path: Path) -> None:
    key = tmp_path / "etc" / "backup.key"
    write_private_file(key, os.urandom(1024), overwrite=False)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_bytes()
    assert len(first) == 1024
    with pytest.raises(FileExistsError):
        write_private_file(key, b"other", overwrite=False)
    assert key.read_bytes() == first
    write_private_file(key, b"other", overwrite=True)
    assert key.read_bytes() == b"other"
    assert sorted(p.name for p in key.parent.iterdir()) == ["backup.key"]  # no temp left


def test_init_actions_check_the_mount_then_write_key_and_token(loop: Path, tmp_path: Path) -> None:
    sh("mkfs.btrfs", "-q", loop)
    etc = tmp_path / "etc"
    # vg "." makes the "logical volume" /dev/<loop>: the host has no device-mapper.
    opts = InitOptions(
        vg=".", lv=loop.name, mount_point=tmp_path / "media" / "backup",
        key_file=etc / "backup.key", hash_file=etc / "token.sha512",
    )  # fmt: skip
    assert opts.lv_path == loop
    actions = init_actions(opts, partition_path(loop), force=False)
    actions["mkdir"]()
    with pytest.raises(DiskError, match="not a mount point"):
        actions["verify-mount"]()
    sh("mount", loop, opts.mount_point)
    actions["verify-mount"]()
    actions["write-key"]()
    key = opts.key_file.read_bytes()
    assert len(key) == 1024 and stat.S_IMODE(opts.key_file.stat().st_mode) == 0o600
    with pytest.raises(DiskError, match="already exists"):
        actions["write-key"]()
    assert opts.key_file.read_bytes() == key
    actions["write-token"]()
    config = TokenConfig(opts.hash_file, opts.token_file)
    token.verify(opts.mount_point, config)  # what `coldvault open` checks
    (opts.mount_point / ".token").write_text("another disk\n")
    with pytest.raises(TokenRejected):
        token.verify(opts.mount_point, config)


def test_config_section_loads_and_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    key = tmp_path / "backup.key"
    key.write_bytes(b"k")
    opts = InitOptions(lv="host1", key_file=key, hash_file=tmp_path / "token.sha512")
    section = config_text.disk_section(
        opts, wait_device=Path("/dev/disk/by-partlabel/backup"),
        array_uuid="0123abcd:0123abcd:0123abcd:0123abcd",
    )  # fmt: skip
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "# my backups\ndisk:\n  mount:\n    point: /old\n"
        "# the jobs\njobs:\n  - name: home\n    type: btrfs\n    sources: [/home]\n"
    )
    with pytest.raises(ConfigError, match="already has a disk: section"):
        config_text.write_disk_section(cfg, section, force=False)
    assert "/old" in cfg.read_text()
    config_text.write_disk_section(cfg, section, force=True)
    text = cfg.read_text()
    assert text.startswith("# my backups\n") and "# the jobs\njobs:" in text
    loaded = load(cfg)
    assert [j.name for j in loaded.jobs] == ["home"]
    disk = loaded.disk
    assert disk.device == Path("/dev/disk/by-partlabel/backup")
    assert disk.array is not None and disk.array.uuid == "0123abcd:0123abcd:0123abcd:0123abcd"
    assert disk.luks is not None and disk.luks.key_file == key
    assert disk.luks.name == "enc-backup"
    assert disk.lvm is not None and (disk.lvm.vg, disk.lvm.lv) == ("backup", "host1")
    assert disk.mount.point == Path("/media/backup")
    assert disk.mount.device == Path("/dev/backup/host1")
    assert disk.token is not None and disk.token.hash_file == tmp_path / "token.sha512"


def test_config_section_is_appended_to_a_file_without_one(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("jobs: []\n")
    config_text.write_disk_section(cfg, "disk:\n  device: /dev/x\n", force=False)
    assert cfg.read_text() == "jobs: []\n\ndisk:\n  device: /dev/x\n"
