"""The image half of the crash campaign: a real ``coldvault run`` SIGKILLed at named points.

Each case backs up twice, changes the source, and runs ``coldvault run`` in a child
process with ``COLDVAULT_CRASH_AT=POINT:N``: the child kills itself with SIGKILL the
N-th time it reaches that point (see ``coldvault.system.crashpoint``), as a power cut
or the OOM killer would end it. Then, on the disk as the kill left it and again after
a completing run: ``verify --all`` passes and ``list`` shows no half-made or
half-deleted snapshot; and afterwards every snapshot restores byte-identical to the
source as it was when that snapshot was made. The newest equals an uninterrupted
backup of the same source.

The child is the real CLI entry point (``coldvault.cli.main``); only the interval of
in-progress manifest saves is set (every part, or never) so that the manifest kill
points are reached deterministically.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.conftest import ROOT
from tests.unit.image_env import KiB, load_manifest, patch, write_source

PART = 256 * KiB

CHILD = (
    "import sys\n"
    "from coldvault.jobs.image import backup\n"
    "backup.SAVE_EVERY_SECONDS = float(sys.argv.pop(1))\n"
    "from coldvault.cli.main import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)
EVERY_PART, NEVER = 0.0, 1e9


@dataclass(frozen=True)
class Kill:
    """One kill point: where, the how-many-th time, and what the killed run backs up."""

    point: str
    nth: int = 1
    change: str = "edit"  # edit: five parts change; shrink: the source loses 3 parts
    saves: float = NEVER  # in-progress manifest saves during the pass
    then: str | None = None  # a second kill point, in the run that resumes

    @property
    def id(self) -> str:
        extra = f"-{self.change}" if self.change != "edit" else ""
        again = f"-then-{self.then}" if self.then else ""
        return f"{self.point}:{self.nth}{extra}{again}"


KILLS = [
    Kill("image.link", 3),  # snapshot-inprogress only partly linked to the base
    Kill("image.part-written", 1),  # first new part written, not yet fsynced
    Kill("image.part-written", 4),  # a later one (the commit thread has more queued)
    Kill("image.part-synced", 2),  # fsynced under its temporary name, not renamed
    Kill("image.part-renamed", 1),  # renamed over the linked name, folder not fsynced
    Kill("image.part-renamed", 3, saves=EVERY_PART),  # ... with in-progress manifests
    Kill("image.manifest-save", 2, saves=EVERY_PART),  # before an in-progress manifest
    Kill("image.manifest-saved", 2, saves=EVERY_PART),  # after one
    Kill("image.manifest-save", 1),  # before the complete manifest (no periodic saves)
    Kill("image.before-finish"),  # complete manifest saved, not yet renamed
    Kill("image.snapshot-renamed"),  # renamed to snapshot-…, job folder not fsynced
    Kill("image.prune-hidden"),  # old snapshot renamed to .deleting-…, nothing deleted
    Kill("image.prune-unlinked", 2),  # old snapshot half deleted (hidden)
    Kill("image.drop-unneeded", 2, change="shrink"),  # parts past a shrunk source
    Kill("image.part-synced", 2, then="image.part-renamed"),  # killed twice in a row
]


class Env:
    """A backup root (a plain folder), one image job, and the real CLI as a child."""

    def __init__(self, tmp: Path, src: Path | None = None) -> None:
        self.tmp = tmp
        self.src = src or tmp / "src"
        self.backup = tmp / "backup"
        self.backup.mkdir(parents=True)
        (tmp / "disk").write_bytes(b"")
        self.config = tmp / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "disk": {
                        "device": str(tmp / "disk"),
                        "mount": {"point": str(self.backup), "require_mount": False},
                    },
                    "settings": {
                        "state_file": str(tmp / "state.json"),
                        "runtime_dir": str(tmp / "run"),
                        "lock_file": str(tmp / "lock"),
                    },
                    "jobs": [
                        {
                            "name": "img",
                            "type": "image",
                            "source": str(self.src),
                            "part_size": "256k",
                            "block_size": "64k",
                            "snapshots": 2,
                            "every": "1d",
                        }
                    ],
                }
            )
        )
        self.job_dir = self.backup / "img"

    def cli(
        self, *args: str, crash_at: str | None = None, saves: float = NEVER
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "COLDVAULT_CRASH_AT"}
        env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'daemon'}"
        if crash_at:
            env["COLDVAULT_CRASH_AT"] = crash_at
        return subprocess.run(
            [sys.executable, "-c", CHILD, str(saves), "--config", str(self.config), *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def snapshots(self) -> list[str]:
        return sorted(n for n in os.listdir(self.job_dir) if n.startswith("snapshot-2"))

    def restored(self, name: str) -> bytes:
        out = self.tmp / f"restore-{name}"
        out.unlink(missing_ok=True)
        self.ok("restore", "img", str(out), "--snapshot", name)
        return out.read_bytes()

    def check_consistent(self) -> None:
        """verify --all passes; list shows only complete snapshots (and the in-progress one)."""
        verify = self.cli("verify", "img", "--all")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        listed = self.ok("list", "img")
        assert ".deleting" not in listed
        for name in os.listdir(self.job_dir):
            if name.startswith("snapshot-2"):
                assert name in listed
                manifest = load_manifest(self.job_dir / name)
                assert manifest is not None and manifest.complete


def _mutate(env: Env, change: str) -> None:
    if change == "shrink":
        os.truncate(env.src, env.src.stat().st_size - 3 * PART)
        patch(env.src, 2, b"shrunk")
        return
    for offset in (PART + 1, 3 * PART + 2, 5 * PART + 3, 6 * PART + 4, 7 * PART + 5):
        patch(env.src, offset, b"third run")


@pytest.mark.parametrize("kill", KILLS, ids=[k.id for k in KILLS])
def test_killed_run_then_completing_run(tmp_path: Path, kill: Kill) -> None:
    env = Env(tmp_path)
    versions: dict[str, bytes] = {}
    write_source(env.src, [(3 * PART, True), (2 * PART, False), (3 * PART + 99, True)])
    env.ok("run", "img")
    versions[env.snapshots()[-1]] = env.src.read_bytes()
    patch(env.src, 10, b"second")
    env.ok("run", "img")
    versions[env.snapshots()[-1]] = env.src.read_bytes()
    _mutate(env, kill.change)
    wanted = env.src.read_bytes()

    killed = env.cli("run", "img", crash_at=f"{kill.point}:{kill.nth}", saves=kill.saves)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    env.check_consistent()
    for name in env.snapshots():  # pruning an old snapshot is allowed, changing it not
        if name in versions:
            assert env.restored(name) == versions[name]
    if kill.then:
        again = env.cli("run", "img", crash_at=f"{kill.then}:1", saves=kill.saves)
        assert again.returncode == -signal.SIGKILL, again.stdout + again.stderr
        env.check_consistent()

    env.ok("run", "img")
    env.check_consistent()
    assert not (env.job_dir / "snapshot-inprogress").exists()
    assert not [n for n in os.listdir(env.job_dir) if n.startswith(".")]
    names = env.snapshots()
    assert len(names) == 2
    assert env.restored(names[-1]) == wanted
    for name in names[:-1]:
        assert env.restored(name) == versions.get(name, wanted)
    for name in names:
        left = [n for n in os.listdir(env.job_dir / name) if n.endswith(".tmp")]
        assert not left, left
    # the newest holds what an uninterrupted backup of the same source holds
    reference = Env(tmp_path / "reference", src=env.src)
    reference.ok("run", "img")
    ours = load_manifest(env.job_dir / names[-1])
    theirs = load_manifest(reference.job_dir / reference.snapshots()[0])
    assert ours is not None and theirs is not None
    assert [(p.size, p.zero, p.hash) for p in ours.parts if p] == [
        (p.size, p.zero, p.hash) for p in theirs.parts if p
    ]
    assert len([p for p in ours.parts if p]) == len(ours.parts)
