"""The configuration as frozen dataclasses: what ``config.yaml`` means once validated.

The loader (:mod:`coldvault.config.loader`) builds these from YAML and is the
only place that validates; everything else may trust their values.
Sizes are in bytes, durations are ``timedelta``, paths are absolute ``Path``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path

MiB = 1 << 20

DEFAULT_CONFIG_PATH = Path("/etc/coldvault/config.yaml")
DEFAULT_STATE_FILE = Path("/var/lib/coldvault/state.json")
DEFAULT_RUNTIME_DIR = Path("/run/coldvault")
DEFAULT_LOCK_FILE = Path("/run/coldvault/lock")


def default_lv_name() -> str:
    """The design's default logical volume name: this machine's short host name."""
    return socket.gethostname().split(".")[0] or "backup"


Argv = tuple[str, ...]


@dataclass(frozen=True)
class Hooks:
    """Commands run around a job (argv lists; a YAML string is split like a shell would)."""

    before: tuple[Argv, ...] = ()  # e.g. freeze a filesystem; failure aborts the job
    after: tuple[Argv, ...] = ()  # always run after ``before`` ran, even on failure
    on_success: tuple[Argv, ...] = ()  # failure logged, never fatal
    on_failure: tuple[Argv, ...] = ()  # env: COLDVAULT_JOB, COLDVAULT_ERROR, COLDVAULT_LOG


@dataclass(frozen=True)
class When:
    """When a job is due: an interval since the last success and/or wall-clock times."""

    every: timedelta | None = None  # due when the last success is older than this
    at: tuple[time, ...] = ()  # due when one of these local times passed since then
    on_plug: bool = False  # run whenever the disk appears, due or not


@dataclass(frozen=True)
class Retention:
    """Which snapshots to keep: the newest ``keep_last`` plus calendar buckets."""

    keep_last: int | None = None  # None: no count limit (only the buckets decide)
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    @property
    def keeps_everything(self) -> bool:
        """True when no rule is set: nothing is ever deleted."""
        return self.keep_last is None and not any(
            (self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        )


@dataclass(frozen=True)
class VerifySchedule:
    """When the daemon verifies a job's backups by itself, inside a disk session."""

    every: timedelta | None = timedelta(days=30)  # None (``never``): only ``coldvault verify``
    max_per_session: int | None = None  # bytes read at most per session; None: no limit


@dataclass(frozen=True)
class SourceRef:
    """An image source: a path, or ``uuid:``/``partuuid:``/``label:`` resolved at run time."""

    kind: str  # "path" | "uuid" | "partuuid" | "label"
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == "path" else f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class ImageJob:
    """``type: image``: a partition, block device or file kept as fixed-size parts."""

    name: str
    source: SourceRef
    target: str  # folder under the backup root (default: the job name)
    part_size: int = 100 * MiB
    block_size: int = 1 * MiB
    keep_null_parts: bool = False
    snapshots: int = 4  # 0: parts live directly in the job folder
    retention: Retention | None = None  # calendar buckets on top of ``snapshots``
    allow_mounted: bool = False
    hash: str = "blake3"  # "blake3" | "sha256"
    compress: str | None = None  # reserved: "zstd"
    when: When = field(default_factory=When)
    hooks: Hooks = field(default_factory=Hooks)
    verify: VerifySchedule | None = None  # None: ``settings.verify``
    type: str = "image"


@dataclass(frozen=True)
class BtrfsJob:
    """``type: btrfs``: subvolumes snapshotted and sent incrementally."""

    name: str
    sources: tuple[Path, ...]
    target: str  # folder under the backup root (default: the job name)
    snapshot_dir: Path | None = None  # default: <fs>/.coldvault-snapshots/<job>/
    source_retention: Retention = field(default_factory=lambda: Retention(keep_last=3))
    target_retention: Retention = field(default_factory=lambda: Retention(keep_last=30))
    compressed_data: bool = False
    when: When = field(default_factory=When)
    hooks: Hooks = field(default_factory=Hooks)
    verify: VerifySchedule | None = None  # None: ``settings.verify``
    type: str = "btrfs"


Job = ImageJob | BtrfsJob


@dataclass(frozen=True)
class ArrayConfig:
    """mdadm layer: assemble the array by device name and/or UUID."""

    device: Path = Path("/dev/md/backup")
    uuid: str | None = None
    allow_degraded: bool = True


@dataclass(frozen=True)
class LuksConfig:
    """LUKS layer: ``cryptsetup open --key-file KEY DEVICE NAME``."""

    key_file: Path
    name: str = "enc-backup"
    device: Path | None = None  # default: the array device, else ``disk.device``


@dataclass(frozen=True)
class LvmConfig:
    """LVM layer: activate one logical volume of a volume group."""

    vg: str = "backup"
    lv: str = field(default_factory=default_lv_name)


@dataclass(frozen=True)
class MountConfig:
    """Mount layer; ``point`` is the backup root every job writes under."""

    point: Path = Path("/media/backup")
    device: Path | None = None  # default: the LV, else the LUKS mapping, else disk.device
    fstype: str | None = None
    options: tuple[str, ...] = ()
    # False: ``point`` is a plain folder, not a mount (demo, or a volume the OS mounts).
    require_mount: bool = True


@dataclass(frozen=True)
class TokenConfig:
    """The disk's identity: SHA-512 of ``<mount>/<file>`` must match ``hash_file``."""

    hash_file: Path
    file: str = ".token"


@dataclass(frozen=True)
class DiskConfig:
    """The storage stack; every layer is optional and opened in this order."""

    device: Path | None = None  # what to wait for (by-id, by-partlabel, ...)
    array: ArrayConfig | None = None
    luks: LuksConfig | None = None
    lvm: LvmConfig | None = None
    mount: MountConfig = field(default_factory=MountConfig)
    token: TokenConfig | None = None


@dataclass(frozen=True)
class Settings:
    """Where the daemon keeps its state, and global hooks."""

    state_file: Path = DEFAULT_STATE_FILE
    runtime_dir: Path = DEFAULT_RUNTIME_DIR
    lock_file: Path = DEFAULT_LOCK_FILE
    poll_seconds: float = 5.0  # disk polling interval where udev events are unavailable
    inhibit_sleep: bool = True
    hooks: Hooks = field(default_factory=Hooks)  # on_success / on_failure for every job
    verify: VerifySchedule = field(default_factory=VerifySchedule)  # default for every job


@dataclass(frozen=True)
class Config:
    """A whole validated configuration file."""

    path: Path | None
    disk: DiskConfig
    jobs: tuple[Job, ...]
    settings: Settings = field(default_factory=Settings)

    def job(self, name: str) -> Job:
        """The job called ``name``; raises KeyError if there is none."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    @property
    def backup_root(self) -> Path:
        """The folder all jobs write under (the mount point)."""
        return self.disk.mount.point

    def verify_schedule(self, job: Job) -> VerifySchedule:
        """When ``job`` is verified by the daemon: its own ``verify:`` or the default."""
        return job.verify if job.verify is not None else self.settings.verify

    def job_dir(self, job: Job) -> Path:
        """Where ``job`` keeps its backups."""
        return self.backup_root / job.target
