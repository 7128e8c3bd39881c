"""``coldvault demo``: the image job end to end on a sample file, no backup disk needed.

It builds a sample "partition" image with zero regions, backs it up twice
through the real image job (changing a little in between), shows that the
second run rewrote only the changed parts, then verifies, restores and
compares. Everything lives under one work folder (``--dir``) and the demo can
be run again and again.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from coldvault.cli.progress_bar import end_open_line, progress_printer
from coldvault.config.model import (
    Config,
    DiskConfig,
    ImageJob,
    MiB,
    MountConfig,
    Settings,
    SourceRef,
)
from coldvault.errors import EXIT_CORRUPT, EXIT_FAILURE, EXIT_OK, JobError
from coldvault.jobs import runner_for
from coldvault.jobs.base import JobResult, RestoreRequest
from coldvault.service.session import disk_session
from coldvault.system import proc
from coldvault.system.cancel import CancelToken

DEFAULT_DIR = Path("/var/tmp/coldvault-demo")
MARKER = ".coldvault-demo"
PART_SIZE = 4 * MiB
BLOCK_SIZE = 1 * MiB
# (length in MiB, random data?) — 40 MiB + 123 KiB of sample "partition", with zero regions.
LAYOUT = ((6, True), (10, False), (9, True), (8, False), (7, True))
TAIL_BYTES = 123 * 1024  # an odd size: the last part is short


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", help="run an image backup on a sample file (no backup disk needed)")
    p.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"work folder (default {DEFAULT_DIR}); its demo files are replaced on each run",
    )
    p.set_defaults(func=cmd_demo)


def demo_config(work: Path) -> Config:
    """The demo's configuration: a plain backup folder and one image job (see config/demo.yaml)."""
    job = ImageJob(
        name="demo",
        source=SourceRef("path", str(work / "source.img")),
        target="demo",
        part_size=PART_SIZE,
        block_size=BLOCK_SIZE,
        snapshots=3,
    )
    return Config(
        path=None,
        disk=DiskConfig(mount=MountConfig(point=work / "backup", require_mount=False)),
        jobs=(job,),
        settings=Settings(
            state_file=work / "state.json", runtime_dir=work, lock_file=work / "lock"
        ),
    )


def prepare(work: Path) -> None:
    """Create (or reset) the work folder; refuse a non-empty folder the demo did not make."""
    if work.exists() and any(work.iterdir()) and not (work / MARKER).exists():
        raise JobError(
            f"{work} is not empty and was not made by `coldvault demo`",
            hint="pass --dir with an empty or new folder",
        )
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("made by `coldvault demo`; safe to delete\n")
    for name in ("backup", "source.img", "restored.img"):
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (work / "backup").mkdir()


def write_sample(path: Path) -> int:
    """A deterministic sample image: random regions and zero regions, odd total size."""
    rng = random.Random(20240601)
    size = 0
    with path.open("wb") as f:
        for mib, data in LAYOUT:
            n = mib * MiB
            f.write(rng.randbytes(n) if data else bytes(n))
            size += n
        f.write(rng.randbytes(TAIL_BYTES))
        size += TAIL_BYTES
    return size


def change_a_little(path: Path) -> None:
    """Change one byte in part 0 and write 5 bytes into a zero region (part 3)."""
    with path.open("r+b") as f:
        f.seek(1000)
        old = f.read(1)
        f.seek(1000)
        f.write(bytes([old[0] ^ 0xFF]))
        f.seek(3 * PART_SIZE + 4096)
        f.write(b"hello")


def _report(label: str, result: JobResult) -> None:
    end_open_line()
    print(f"  {label}: {result.summary} ({result.duration:.1f} s)")


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when the restored image is byte-identical."""
    work: Path = args.dir.resolve()
    prepare(work)
    config = demo_config(work)
    job = config.jobs[0]
    source = work / "source.img"
    size = write_sample(source)
    print(f"coldvault demo in {work}")
    print(
        f"  sample partition image {source}: {size} bytes, "
        f"{-(-size // PART_SIZE)} parts of {PART_SIZE // MiB} MiB, with zero regions"
    )
    cancel = CancelToken()
    bar = progress_printer()
    runner = runner_for(job)
    with disk_session(config, cancel=cancel) as root:
        job_dir = root / job.target
        _report("first backup ", runner.run(job_dir, bar, cancel))
        change_a_little(source)
        print("  changed 1 byte in part 0 and 5 bytes in part 3 (a zero region)")
        second = runner.run(job_dir, bar, cancel)
        _report("second backup", second)
        print()
        print(runner.list(job_dir))
        print()
        report = runner.verify(job_dir, None, True, bar, cancel)
        end_open_line()
        for problem in report.problems:
            print(f"  PROBLEM: {problem}")
        print(
            f"  verify: {report.items_checked} parts in {len(report.snapshots)} snapshots, "
            + ("all good" if report.ok else f"{len(report.problems)} problem(s)")
        )
        if not report.ok:
            return EXIT_CORRUPT
        restored = work / "restored.img"
        request = RestoreRequest(snapshot="latest", dest=restored)
        restored_msg = runner.restore(job_dir, request, bar, cancel)
        end_open_line()
        print(f"  restore: {restored_msg}")
    same = proc.run(["cmp", str(source), str(restored)], check=False).returncode == 0
    print(f"  cmp source.img restored.img: {'identical' if same else 'DIFFERENT'}")
    print(f"  try it yourself: ls -li {work / 'backup' / job.target}/snapshot-*")
    return EXIT_OK if same else EXIT_FAILURE
