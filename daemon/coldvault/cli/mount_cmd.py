"""``coldvault mount JOB DIR`` and ``coldvault umount DIR``: browse an image backup."""

from __future__ import annotations

import argparse
from pathlib import Path

from coldvault.cli.common import add_disk_option, choose_disk, jobs_named, load_config
from coldvault.config.model import Config, ImageJob
from coldvault.errors import EXIT_OK, ColdvaultError, JobError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mount`` and ``umount``."""
    p = sub.add_parser(
        "mount",
        help="browse an image snapshot read-only at DIR, without restoring it",
        description="Open the backup disk if needed and expose the snapshot read-only: a "
        "FUSE file serves its parts as one image file (each part checked against the "
        "manifest the first time it is read; a part that fails reads as an I/O error), "
        "a read-only loop device carries it, and the file system inside is mounted "
        "read-only at DIR, or each partition at DIR/p1, DIR/p2, ... A file system that "
        "was not cleanly unmounted is mounted without replaying its journal (ext4 "
        "noload, xfs norecovery, btrfs rescue=nologreplay), and that is said. While "
        "mounted, the daemon neither backs up to nor closes the disk. "
        "Undo with `coldvault umount DIR`.",
    )
    p.add_argument("job", metavar="JOB", help="an image job")
    p.add_argument("dir", metavar="DIR", type=Path, help="an empty folder (made if missing)")
    p.add_argument(
        "--snapshot",
        default="latest",
        metavar="NAME",
        help="snapshot-YYYY-MM-DD-HHMMSS, or latest (default); see `coldvault list JOB`",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="expose only the image file, DIR/JOB.img (for a VM, kpartx or fsck -n)",
    )
    add_disk_option(p)
    p.set_defaults(func=cmd_mount)

    p = sub.add_parser(
        "umount",
        help="undo `coldvault mount DIR`",
        description="Unmount, detach the loop device, stop the FUSE server and close the "
        "backup disk if `coldvault mount` opened it: in reverse, also after the FUSE "
        "server died. A busy mount is reported with the processes using it; run the "
        "command again once they are gone.",
    )
    p.add_argument("dir", metavar="DIR", type=Path, help="where `coldvault mount` mounted")
    add_disk_option(p)
    p.set_defaults(func=cmd_umount)


def _image_job(args: argparse.Namespace) -> tuple[Config, ImageJob]:
    config = choose_disk(load_config(args), args)
    [job] = jobs_named(config, [args.job])
    if not isinstance(job, ImageJob):
        raise JobError(
            f"job {job.name} is a {job.type} job: only image jobs can be mounted",
            hint="a btrfs backup is a read-only subvolume on the disk: browse it after "
            "`coldvault open`",
        )
    return config, job


def _binding() -> None:
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        raise ColdvaultError(
            "coldvault mount needs the pyfuse3 module, which is not installed",
            hint="apt-get install python3-pyfuse3 fuse3 (or pip install pyfuse3)",
        ) from None


def cmd_mount(args: argparse.Namespace) -> int:
    """Mount a snapshot; print what is where."""
    from coldvault.mount.setup import MountRequest, mount

    _binding()
    config, job = _image_job(args)
    rec = mount(config, MountRequest(job, args.dir, args.snapshot, args.raw))
    print(f"{job.name} {rec.snapshot} mounted read-only:")
    if rec.raw:
        print(f"  image file: {rec.image}")
    else:
        print(f"  image file: {rec.image} on {', '.join(rec.loops)}")
        for point in rec.mounts:
            print(f"  file system: {point}")
    for note in rec.notes:
        print(f"  note: {note}")
    if not rec.checked:
        print(
            "  note: this snapshot has no manifest (made by the original script): "
            "its parts are not checked against hashes"
        )
    print(f"undo with: coldvault umount {rec.dir}")
    return EXIT_OK


def cmd_umount(args: argparse.Namespace) -> int:
    """Undo a mount."""
    from coldvault.mount import record
    from coldvault.mount.teardown import teardown

    config = choose_disk(load_config(args), args)
    target = args.dir.resolve()
    rec = record.load(config.settings.runtime_dir, target)
    if rec is None:
        raise JobError(
            f"coldvault has nothing mounted at {target}",
            hint="`coldvault status` lists coldvault's mounts",
        )
    for step in teardown(config, rec):
        print(step)
    print(f"{target}: unmounted")
    return EXIT_OK
