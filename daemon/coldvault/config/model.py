"""The configuration as frozen dataclasses: what ``config.yaml`` means once validated.

This is the schema's one source of truth: every YAML key is a field here that
declares its converter, default and help once (:func:`key`, in the manner of
mkosi's settings table). The loader (:mod:`coldvault.config.loader`) builds
these from YAML with one generic builder and is the only place that validates;
everything else may trust their values. ``disk init`` takes its defaults from
here too. Sizes are in bytes, durations are ``timedelta``, paths are absolute
``Path``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from datetime import time, timedelta
from pathlib import Path
from typing import Any

MiB = 1 << 20
GiB = 1 << 30

DEFAULT_CONFIG_PATH = Path("/etc/coldvault/config.yaml")
DEFAULT_STATE_FILE = Path("/var/lib/coldvault/state.json")
DEFAULT_RUNTIME_DIR = Path("/run/coldvault")
DEFAULT_LOCK_FILE = Path("/run/coldvault/lock")
DEFAULT_NAME = "backup"  # the design's name for the disk's partition, VG and file system
DEFAULT_KEY_FILE = Path("/etc/coldvault/backup.key")
DEFAULT_HASH_FILE = Path("/etc/coldvault/token.sha512")
DEFAULT_DISK = "default"  # the name of the one disk of a `disk:` mapping

MAX_BLOCK_SIZE = 64 * MiB  # one block is held in memory per read
MAX_PART_SIZE = 64 * GiB
HASHES = ("blake3", "sha256")
JOB_TYPES = ("image", "btrfs")
OFFSITE_FROM = ("disk", "source")


def default_lv_name() -> str:
    """The design's default logical volume name: this machine's short host name."""
    return socket.gethostname().split(".")[0] or DEFAULT_NAME


@dataclass(frozen=True)
class Key:
    """How one YAML key is read: the schema entry of a dataclass field.

    ``convert`` names a converter of the loader's Reader (``size``, ``duration``,
    ``section``...). ``section`` is the dataclass a ``section`` key holds; with
    ``flat`` its keys sit on the enclosing mapping instead (only those listed).
    """

    convert: str
    help: str
    required: bool = False
    section: type[Any] | None = None
    flat: tuple[str, ...] | None = None
    choices: tuple[str, ...] = ()
    limit: int | None = None  # upper bound of a size
    default_from: str | None = None  # another field whose value is the default


def key(
    convert: str,
    help: str,
    default: Any = MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    **spec: Any,
) -> Any:
    """A dataclass field that is a configuration key (see :class:`Key`)."""
    metadata = {"key": Key(convert, help, **spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def key_of(f: Field[Any]) -> Key | None:
    """The schema entry of a field; None for fields that are not read from YAML."""
    found = f.metadata.get("key")
    return found if isinstance(found, Key) else None


def default_of(f: Field[Any]) -> Any:
    """The default value of a field (MISSING when it has none)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def yaml_keys(cls: type[Any]) -> tuple[str, ...]:
    """The YAML keys of a schema class, flat sub-sections' keys included, in order."""
    out: list[str] = []
    for f in fields(cls):
        spec = key_of(f)
        if spec is None:
            continue
        out.extend(spec.flat if spec.flat is not None else (f.name,))
    return tuple(out)


Argv = tuple[str, ...]
_HOOK = "a command: a string split like a shell would, an argv list, or a list of those"


@dataclass(frozen=True)
class Hooks:
    """Commands run around a job (argv lists; a YAML string is split like a shell would)."""

    before: tuple[Argv, ...] = key("hooks", f"{_HOOK}; failure aborts the job", ())
    after: tuple[Argv, ...] = key("hooks", f"{_HOOK}; always run after `before` ran", ())
    on_success: tuple[Argv, ...] = key("hooks", f"{_HOOK}; failure logged, never fatal", ())
    on_failure: tuple[Argv, ...] = key(
        "hooks", f"{_HOOK}; env COLDVAULT_JOB, COLDVAULT_ERROR, COLDVAULT_LOG", ()
    )


HOOK_KEYS = yaml_keys(Hooks)


@dataclass(frozen=True)
class When:
    """When a job is due: an interval since the last success and/or wall-clock times."""

    every: timedelta | None = key("duration", "due when the last success is older than this", None)
    at: tuple[time, ...] = key("times", "due when one of these local times HH:MM passed", ())
    on_plug: bool = key("boolean", "run whenever the disk appears, due or not", False)


@dataclass(frozen=True)
class Retention:
    """Which snapshots to keep: the newest ``keep_last`` plus calendar buckets."""

    keep_last: int | None = key("count", "the newest N (null: no count limit)", None)
    hourly: int = key("count", "the oldest snapshot of each of the last N hours", 0)
    daily: int = key("count", "the oldest snapshot of each of the last N days", 0)
    weekly: int = key("count", "the oldest snapshot of each of the last N weeks", 0)
    monthly: int = key("count", "the oldest snapshot of each of the last N months", 0)
    yearly: int = key("count", "the oldest snapshot of each of the last N years", 0)

    @property
    def keeps_everything(self) -> bool:
        """True when no rule is set: nothing is ever deleted."""
        return self.keep_last is None and not any(
            (self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        )


@dataclass(frozen=True)
class VerifySchedule:
    """When the daemon verifies a job's backups by itself, inside a disk session."""

    every: timedelta | None = key(
        "duration_or_never",
        "verify when the last verification is older than this; never: only by hand",
        timedelta(days=30),
    )
    max_per_session: int | None = key(
        "size", "bytes read at most per session (null: no limit)", None
    )


@dataclass(frozen=True)
class SourceRef:
    """An image source: a path, or ``uuid:``/``partuuid:``/``label:`` resolved at run time."""

    kind: str  # "path" | "uuid" | "partuuid" | "label"
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == "path" else f"{self.kind}:{self.value}"


_PING_HELP = "dead-man's-switch URL (healthchecks.io or Uptime Kuma push); null: settings.ping"
_NAME_HELP = "unique job name: letters, digits, '.', '_' and '-'"
_TARGET_HELP = "folder under the backup root (default: the job name)"
_WHEN_HELP = "when the job is due: every, at, on_plug"
_HOOKS_HELP = "commands around the job: before, after, on_success, on_failure"
_VERIFY_HELP = "this job's own verification schedule (null: settings.verify)"
_DISKS_HELP = "names of the disks this job backs up to (default: every disk)"


@dataclass(frozen=True)
class ImageJob:
    """``type: image``: a partition, block device or file kept as fixed-size parts."""

    name: str = key("name", _NAME_HELP, required=True)
    source: SourceRef = key(
        "source", "a path, or uuid:, partuuid:, label: resolved at run time", required=True
    )
    target: str = key("relative_folder", _TARGET_HELP, default_from="name")
    part_size: int = key("size", "a multiple of block_size", 100 * MiB, limit=MAX_PART_SIZE)
    block_size: int = key(
        "size", "a multiple of 512 (device sector size)", 1 * MiB, limit=MAX_BLOCK_SIZE
    )
    keep_null_parts: bool = key("boolean", "false: all-zero parts are stored as empty files", False)
    snapshots: int = key("count", "snapshot folders kept; 0: parts directly in target", 4)
    retention: Retention | None = key(
        "section", "calendar buckets on top of snapshots", None, section=Retention
    )
    allow_mounted: bool = key("boolean", "image a mounted file system (read-only only)", False)
    hash: str = key("choice", "part checksums", "blake3", choices=HASHES)
    disks: tuple[str, ...] = key("disk_names", _DISKS_HELP, ())
    when: When = key("section", _WHEN_HELP, factory=When, section=When, flat=yaml_keys(When))
    hooks: Hooks = key("section", _HOOKS_HELP, factory=Hooks, section=Hooks, flat=HOOK_KEYS)
    verify: VerifySchedule | None = key("section", _VERIFY_HELP, None, section=VerifySchedule)
    ping: str | None = key("ping_url", _PING_HELP, None)
    type: str = key("choice", "the job type", "image", choices=JOB_TYPES, required=True)


@dataclass(frozen=True)
class BtrfsJob:
    """``type: btrfs``: subvolumes snapshotted and sent incrementally."""

    name: str = key("name", _NAME_HELP, required=True)
    sources: tuple[Path, ...] = key(
        "absolute_paths", "absolute subvolume paths (one string is fine too)", required=True
    )
    target: str = key("relative_folder", _TARGET_HELP, default_from="name")
    snapshot_dir: Path | None = key(
        "absolute_path", "default: <fs>/.coldvault-snapshots/<job>/", None
    )
    source_retention: Retention = key(
        "section",
        "snapshots kept on the source side",
        factory=lambda: Retention(keep_last=3),
        section=Retention,
    )
    target_retention: Retention = key(
        "section",
        "received snapshots kept on the backup disk",
        factory=lambda: Retention(keep_last=30),
        section=Retention,
    )
    compressed_data: bool = key(
        "boolean", "send compressed extents as they are (btrfs send --compressed-data)", False
    )
    offsite_from: str = key(
        "choice",
        "offsite copies from the disk's received snapshot, or from the source side's newest",
        "disk",
        choices=OFFSITE_FROM,
    )
    disks: tuple[str, ...] = key("disk_names", _DISKS_HELP, ())
    when: When = key("section", _WHEN_HELP, factory=When, section=When, flat=yaml_keys(When))
    hooks: Hooks = key("section", _HOOKS_HELP, factory=Hooks, section=Hooks, flat=HOOK_KEYS)
    verify: VerifySchedule | None = key("section", _VERIFY_HELP, None, section=VerifySchedule)
    ping: str | None = key("ping_url", _PING_HELP, None)
    type: str = key("choice", "the job type", "btrfs", choices=JOB_TYPES, required=True)


Job = ImageJob | BtrfsJob
JOB_CLASSES: dict[str, type[ImageJob] | type[BtrfsJob]] = {"image": ImageJob, "btrfs": BtrfsJob}


@dataclass(frozen=True)
class ArrayConfig:
    """mdadm layer: assemble the array by device name and/or UUID."""

    device: Path = key("absolute_path", "the md device", Path(f"/dev/md/{DEFAULT_NAME}"))
    uuid: str | None = key("md_uuid", "the array UUID as `mdadm --detail` prints it", None)
    allow_degraded: bool = key("boolean", "run on a degraded array (and log a warning)", True)


@dataclass(frozen=True)
class LuksConfig:
    """LUKS layer: ``cryptsetup open --key-file KEY DEVICE NAME``."""

    key_file: Path = key("key_file", "an existing key file", required=True)
    name: str = key("name", "the /dev/mapper name", f"enc-{DEFAULT_NAME}")
    device: Path | None = key("absolute_path", "default: the array device, else disk.device", None)


@dataclass(frozen=True)
class LvmConfig:
    """LVM layer: activate one logical volume of a volume group."""

    vg: str = key("name", "the volume group", DEFAULT_NAME)
    lv: str = key("name", "the logical volume (default: this host's name)", factory=default_lv_name)


@dataclass(frozen=True)
class MountConfig:
    """Mount layer; ``point`` is the backup root every job writes under."""

    point: Path = key("absolute_path", "the backup root", Path(f"/media/{DEFAULT_NAME}"))
    device: Path | None = key(
        "absolute_path", "default: the LV, else the LUKS mapping, else disk.device", None
    )
    fstype: str | None = key("plain_text", "e.g. btrfs, ext4; null lets mount detect it", None)
    options: tuple[str, ...] = key("mount_options", "a list, or one comma-separated string", ())
    require_mount: bool = key(
        "boolean", "false: point is a plain folder, not a mount (demo, or the OS mounts it)", True
    )


@dataclass(frozen=True)
class TokenConfig:
    """The disk's identity: SHA-512 of ``<mount>/<file>`` must match ``hash_file``."""

    hash_file: Path = key(
        "file_not_folder", "the token's SHA-512 (sha512sum format)", required=True
    )
    file: str = key("relative_folder", "the token file, relative to the mount point", ".token")


@dataclass(frozen=True)
class DiskConfig:
    """The storage stack; every layer is optional and opened in this order."""

    device: Path | None = key("absolute_path", "what to wait for (by-id, by-partlabel, ...)", None)
    array: ArrayConfig | None = key("section", "mdadm layer", None, section=ArrayConfig)
    luks: LuksConfig | None = key("section", "LUKS layer", None, section=LuksConfig)
    lvm: LvmConfig | None = key("section", "LVM layer", None, section=LvmConfig)
    mount: MountConfig = key(
        "section", "the backup file system", factory=MountConfig, section=MountConfig
    )
    token: TokenConfig | None = key("section", "the disk's identity", None, section=TokenConfig)


NOTIFY_EVENTS = (
    "failure",
    "success",
    "overdue",
    "disk_done",
    "verify_failed",
    "disk_rolled_back",
    "offsite_failed",
)
DEFAULT_NOTIFY_ON = ("failure", "overdue", "disk_done", "verify_failed")


@dataclass(frozen=True)
class NotifyTarget:
    """One Apprise URL and the events sent to it."""

    url: str = key(
        "apprise_url", "an Apprise URL, e.g. ntfys://ntfy.example.org/backups", required=True
    )
    on: tuple[str, ...] = key(
        "notify_events", "events sent: " + ", ".join(NOTIFY_EVENTS), DEFAULT_NOTIFY_ON
    )


@dataclass(frozen=True)
class OffsiteCheck:
    """When and how much ``restic check`` reads of an offsite repository."""

    every: timedelta | None = key(
        "duration_or_never",
        "check when the last check is older than this; never: only by hand",
        timedelta(days=30),
    )
    read_data_subset: str | None = key(
        "data_subset", "pack data read per check: 5%, 1/10 or a size (null: metadata only)", "5%"
    )


def _offsite_retention() -> Retention:
    return Retention(keep_last=7, daily=14, weekly=8, monthly=12)


@dataclass(frozen=True)
class OffsiteTarget:
    """``offsite:`` entry: a restic repository that receives each job's newest backup."""

    name: str = key("name", "unique name of this offsite copy", required=True)
    repository: str = key(
        "restic_repository",
        "any restic repository string (never shown: it may hold a secret)",
        required=True,
    )
    password_file: Path = key(
        "key_file", "the repository password; root's, mode 600, like the LUKS key", required=True
    )
    env_file: Path | None = key(
        "key_file", "optional NAME=value lines for the backend (AWS_..., B2_...); same rules", None
    )
    jobs: tuple[str, ...] = key("job_names", "the jobs copied (default: every job)", ())
    when: When = key(
        "section",
        "when copies are due: every, at (neither: after every disk session)",
        factory=When,
        section=When,
        flat=("every", "at"),
    )
    retention: Retention = key(
        "section",
        "restic forget rules per job (default keep_last 7, daily 14, weekly 8, monthly 12)",
        factory=_offsite_retention,
        section=Retention,
    )
    check: OffsiteCheck = key(
        "section",
        "restic check: every, read_data_subset",
        factory=OffsiteCheck,
        section=OffsiteCheck,
    )


@dataclass(frozen=True)
class Settings:
    """Where the daemon keeps its state, and global hooks."""

    state_file: Path = key("file_not_folder", "the daemon's state", DEFAULT_STATE_FILE)
    runtime_dir: Path = key("file_path", "the status socket's folder", DEFAULT_RUNTIME_DIR)
    lock_file: Path = key("file_not_folder", "one run at a time", DEFAULT_LOCK_FILE)
    poll_seconds: float = key(
        "seconds", "disk polling interval where udev events are unavailable", 5.0
    )
    inhibit_sleep: bool = key("boolean", "keep the machine awake while a backup runs", True)
    hooks: Hooks = key(
        "section",
        "on_success / on_failure for every job",
        factory=Hooks,
        section=Hooks,
        flat=("on_success", "on_failure"),
    )
    verify: VerifySchedule = key(
        "section",
        "the default verification schedule of every job",
        factory=VerifySchedule,
        section=VerifySchedule,
    )
    ping: str | None = key(
        "ping_url", "ping URL of every job without its own; {job} is replaced by the job name", None
    )
    notify: tuple[NotifyTarget, ...] = key(
        "section_list", "Apprise notifications: a list of {url, on}", (), section=NotifyTarget
    )
    metrics_file: Path | None = key(
        "file_not_folder",
        "Prometheus metrics written here (node-exporter's textfile collector folder)",
        None,
    )
    disk_absent_warning: timedelta | None = key(
        "duration_or_never",
        "warn when a disk was not seen for this long (never: no warning)",
        timedelta(days=30),
    )


@dataclass(frozen=True)
class Disk:
    """One backup disk: its name (the name the user and the state file know it by) and stack."""

    name: str
    config: DiskConfig


@dataclass(frozen=True)
class Config:
    """A whole validated configuration file."""

    path: Path | None
    disk: DiskConfig = key(
        "section",
        "the backup disk (one disk, named default)",
        factory=DiskConfig,
        section=DiskConfig,
    )
    disks: tuple[Disk, ...] = key(
        "disks", "several backup disks in rotation: each a disk mapping plus name", ()
    )
    jobs: tuple[Job, ...] = key("jobs", "the backup jobs", ())
    offsite: tuple[OffsiteTarget, ...] = key(
        "section_list",
        "offsite copies through restic: a list of targets",
        (),
        section=OffsiteTarget,
    )
    settings: Settings = key("section", "the daemon's settings", factory=Settings, section=Settings)
    # Not keys: which disk ``disk`` is (see for_disk), and what validation warned about.
    disk_name: str = DEFAULT_DISK
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A Config built without ``disks`` (tests, demo) has its one disk: ``disk``.
        if not self.disks:
            object.__setattr__(self, "disks", (Disk(DEFAULT_DISK, self.disk),))

    @property
    def disk_names(self) -> tuple[str, ...]:
        """The configured disks' names, in configuration order."""
        return tuple(d.name for d in self.disks)

    def for_disk(self, name: str) -> Config:
        """This configuration with ``disk`` (and ``backup_root``) being the disk ``name``.

        ``config.disk`` is always one disk: the only one, else the first one until
        a caller chose with this method. Raises KeyError for an unknown name.
        """
        for d in self.disks:
            if d.name == name:
                return replace(self, disk=d.config, disk_name=name)
        raise KeyError(name)

    def jobs_on(self, disk: str) -> tuple[Job, ...]:
        """The jobs that back up to the disk ``disk`` (a job without ``disks:`` uses all)."""
        return tuple(j for j in self.jobs if not j.disks or disk in j.disks)

    def disks_of(self, job: Job) -> tuple[str, ...]:
        """The names of the disks ``job`` backs up to, in configuration order."""
        return tuple(n for n in self.disk_names if not job.disks or n in job.disks)

    @property
    def backup_root(self) -> Path:
        """The folder all jobs write under (the mount point)."""
        return self.disk.mount.point

    def verify_schedule(self, job: Job) -> VerifySchedule:
        """When ``job`` is verified by the daemon: its own ``verify:`` or the default."""
        return job.verify if job.verify is not None else self.settings.verify

    def offsite_jobs(self, target: OffsiteTarget) -> tuple[Job, ...]:
        """The jobs copied to ``target`` (every job when it names none), in job order."""
        return tuple(j for j in self.jobs if not target.jobs or j.name in target.jobs)

    def offsite_target(self, name: str) -> OffsiteTarget:
        """The offsite target called ``name``; KeyError when there is none."""
        for target in self.offsite:
            if target.name == name:
                return target
        raise KeyError(name)

    def job_dir(self, job: Job) -> Path:
        """Where ``job`` keeps its backups."""
        return self.backup_root / job.target


def schema_keys(cls: type[Any] = Config) -> set[str]:
    """Every YAML key of the schema below ``cls`` (for documentation checks)."""
    found: set[str] = set()
    todo: list[type[Any]] = [cls, *JOB_CLASSES.values()]
    done: set[type[Any]] = set()
    while todo:
        current = todo.pop()
        if current in done:
            continue
        done.add(current)
        found.update(yaml_keys(current))
        todo.extend(k.section for f in fields(current) if (k := key_of(f)) and k.section)
    return found
