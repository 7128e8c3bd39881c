"""Every kind of bad configuration: a clear, positioned message and exit status 78.

Each case is checked twice: in-process (the exact message: file:line:col, key
path, what was expected) and through the real CLI (exit 78, no traceback, one
paragraph on stderr).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from coldvault.cli.main import main
from coldvault.config.loader import load
from coldvault.errors import EXIT_CONFIG, ConfigError

GOOD_JOB = "  - name: root\n    type: image\n    source: /dev/sda2\n"


pytestmark = pytest.mark.usefixtures("restore_coldvault_logger")


@dataclass(frozen=True)
class Bad:
    """A bad configuration and what its error must say."""

    id: str
    text: str | bytes
    where: str  # "LINE:COL" the first error must point at
    path: str  # key path named in the message ("" for whole-file errors)
    expect: str  # fragment of the "expected"/explanation part


def job(body: str) -> str:
    """A config with one job whose keys are ``body`` (indented for a list item)."""
    return "jobs:\n" + body


CASES = [
    Bad("empty", "", "1:1", "", "the file is empty"),
    Bad("only-comments", "# nothing here\n\n", "1:1", "", "the file is empty"),
    Bad("top-level-list", "- a\n- b\n", "1:1", "", "expected a mapping with disk: and jobs:"),
    Bad("top-level-scalar", "hello\n", "1:1", "", "found 'hello', expected a mapping"),
    Bad("binary-garbage", b"jobs:\n  \xff\xfe\x00\x01garbage", "2:3", "", "expected UTF-8 text"),
    Bad("control-char", "jobs:\n  - name: a\x00b\n", "2:12", "", "control character U+0000"),
    Bad("tab-indent", "jobs:\n\t- name: a\n", "2:1", "", "found a tab character"),
    Bad("syntax-unclosed", "jobs: [\n  {name: a\n", "3:1", "", "invalid YAML"),
    Bad(
        "two-documents",
        GOOD_JOB.join(["jobs:\n", "---\njobs: []\n"]),
        "5:1",
        "",
        "expected a single document",
    ),
    Bad("unknown-top-key", "job:\n" + GOOD_JOB, "1:1", "job", "did you mean `jobs`?"),
    Bad("missing-jobs", "disk: {}\n", "1:1", "jobs", "missing, expected a list"),
    Bad("empty-jobs", "jobs: []\n", "1:7", "jobs", "expected a list with at least one job"),
    Bad("jobs-not-list", "jobs: {name: a}\n", "1:7", "jobs", "expected a list"),
    Bad("job-not-mapping", "jobs:\n  - root\n", "2:5", "jobs[0]", "expected a job"),
    Bad(
        "missing-name", job("  - type: image\n    source: /x\n"), "2:5", "jobs[0].name", "required"
    ),
    Bad("missing-type", job("  - name: a\n    source: /x\n"), "2:5", "jobs[0].type", "required"),
    Bad("bad-type", job("  - name: a\n    type: zfs\n"), "3:11", "jobs[0].type", "image, btrfs"),
    Bad(
        "missing-source", job("  - name: a\n    type: image\n"), "2:5", "jobs[0].source", "required"
    ),
    Bad(
        "missing-sources",
        job("  - name: a\n    type: btrfs\n"),
        "2:5",
        "jobs[0].sources",
        "required",
    ),
    Bad(
        "unknown-job-key",
        job(GOOD_JOB + "    part_sise: 1M\n"),
        "5:5",
        "jobs[0].part_sise",
        "did you mean `part_size`?",
    ),
    Bad(
        "key-of-other-type",
        job("  - name: h\n    type: btrfs\n    sources: [/h]\n    hash: sha256\n"),
        "5:5",
        "jobs[0].hash",
        "belongs to image jobs",
    ),
    Bad(
        "duplicate-key",
        job(GOOD_JOB + "    source: /dev/sdb1\n"),
        "5:5",
        "jobs[0].source",
        "duplicate key (first given on line 4)",
    ),
    Bad(
        "duplicate-job-names",
        "jobs:\n" + GOOD_JOB + GOOD_JOB,
        "5:5",
        "jobs[1].name",
        "expected unique job names",
    ),
    Bad(
        "duplicate-targets",
        job(GOOD_JOB + "  - {name: b, type: image, source: /x, target: root}\n"),
        "5:5",
        "jobs[1].target",
        "own target folder",
    ),
    Bad(
        "name-with-slash",
        job("  - name: a/b\n    type: image\n    source: /x\n"),
        "2:11",
        "jobs[0].name",
        "letters, digits",
    ),
    Bad(
        "target-escapes",
        job(GOOD_JOB + "    target: ../etc\n"),
        "5:13",
        "jobs[0].target",
        "without '..'",
    ),
    Bad(
        "negative-size",
        job(GOOD_JOB + "    part_size: -5M\n"),
        "5:16",
        "jobs[0].part_size",
        "not negative",
    ),
    Bad(
        "zero-size",
        job(GOOD_JOB + "    part_size: 0\n"),
        "5:16",
        "jobs[0].part_size",
        "above zero",
    ),
    Bad(
        "fraction-size",
        job(GOOD_JOB + "    part_size: 1.5M\n"),
        "5:16",
        "jobs[0].part_size",
        "no fractions",
    ),
    Bad(
        "garbage-size",
        job(GOOD_JOB + "    part_size: lots\n"),
        "5:16",
        "jobs[0].part_size",
        "expected a whole number of bytes with an optional unit",
    ),
    Bad(
        "unknown-unit",
        job(GOOD_JOB + "    part_size: 5 parsecs\n"),
        "5:16",
        "jobs[0].part_size",
        "unknown unit 'parsecs'",
    ),
    Bad(
        "part-not-multiple",
        job(GOOD_JOB + "    part_size: 100M\n    block_size: 3M\n"),
        "5:16",
        "jobs[0].part_size",
        "a multiple of block_size (3145728 bytes)",
    ),
    Bad(
        "block-not-512",
        job(GOOD_JOB + "    block_size: 1000\n"),
        "5:17",
        "jobs[0].block_size",
        "a multiple of 512",
    ),
    Bad(
        "bad-hash",
        job(GOOD_JOB + "    hash: md5\n"),
        "5:11",
        "jobs[0].hash",
        "one of: blake3, sha256",
    ),
    Bad(
        "yes-is-not-bool",
        job(GOOD_JOB + "    keep_null_parts: yes\n"),
        "5:22",
        "jobs[0].keep_null_parts",
        "expected true or false",
    ),
    Bad(
        "count-not-number",
        job(GOOD_JOB + "    snapshots: four\n"),
        "5:16",
        "jobs[0].snapshots",
        "expected a whole number",
    ),
    Bad(
        "negative-retention",
        job(GOOD_JOB + "    retention: {daily: -1}\n"),
        "5:24",
        "jobs[0].retention.daily",
        "not negative",
    ),
    Bad(
        "retention-typo",
        job(GOOD_JOB + "    retention: {dayly: 3}\n"),
        "5:17",
        "jobs[0].retention.dayly",
        "did you mean `daily`?",
    ),
    Bad(
        "bad-time",
        job(GOOD_JOB + '    at: ["25:00"]\n'),
        "5:10",
        "jobs[0].at[0]",
        "HH:MM between 00:00 and 23:59",
    ),
    Bad(
        "duration-without-unit",
        job(GOOD_JOB + "    every: 5\n"),
        "5:12",
        "jobs[0].every",
        "a duration with units",
    ),
    Bad(
        "negative-duration",
        job(GOOD_JOB + "    every: -1d\n"),
        "5:12",
        "jobs[0].every",
        "positive duration",
    ),
    Bad(
        "empty-hook",
        job(GOOD_JOB + "    before: []\n"),
        "5:13",
        "jobs[0].before",
        "a command with a program",
    ),
    Bad(
        "unbalanced-quote-hook",
        job(GOOD_JOB + '    before: "echo \'x"\n'),
        "5:13",
        "jobs[0].before",
        "No closing quotation",
    ),
    Bad(
        "relative-btrfs-source",
        job("  - name: h\n    type: btrfs\n    sources: [home]\n"),
        "4:15",
        "jobs[0].sources[0]",
        "an absolute path",
    ),
    Bad(
        "bad-source-kind",
        job("  - name: r\n    type: image\n    source: uid:1234\n"),
        "4:13",
        "jobs[0].source",
        "did you mean `uuid`?",
    ),
    Bad(
        "disk-not-mapping",
        "disk: /dev/sdb\n" + "jobs:\n" + GOOD_JOB,
        "1:7",
        "disk",
        "expected a mapping",
    ),
    Bad(
        "relative-mount-point",
        "disk:\n  mount: {point: media/backup}\njobs:\n" + GOOD_JOB,
        "2:18",
        "disk.mount.point",
        "absolute path",
    ),
    Bad(
        "bad-array-uuid",
        "disk:\n  array: {uuid: not-a-uuid}\njobs:\n" + GOOD_JOB,
        "2:17",
        "disk.array.uuid",
        "32 hex digits",
    ),
    Bad(
        "missing-key-file",
        "disk:\n  luks: {key_file: missing.key}\njobs:\n" + GOOD_JOB,
        "2:20",
        "disk.luks.key_file",
        "existing key file",
    ),
    Bad(
        "key-file-is-dir",
        "disk:\n  luks: {key_file: .}\njobs:\n" + GOOD_JOB,
        "2:20",
        "disk.luks.key_file",
        "a regular file",
    ),
    Bad(
        "token-without-hash-file",
        "disk:\n  token: {file: .token}\njobs:\n" + GOOD_JOB,
        "2:10",
        "disk.token.hash_file",
        "required",
    ),
    Bad(
        "zero-poll",
        "settings: {poll_seconds: 0}\njobs:\n" + GOOD_JOB,
        "1:26",
        "settings.poll_seconds",
        "above zero",
    ),
    Bad(
        "mount-options-mapping",
        "disk:\n  mount: {options: {a: 1}}\njobs:\n" + GOOD_JOB,
        "2:20",
        "disk.mount.options",
        "expected a single value",
    ),
]


def write(tmp_path: Path, case: Bad) -> Path:
    path = tmp_path / "config.yaml"
    data = case.text if isinstance(case.text, bytes) else case.text.encode()
    path.write_bytes(data)
    return path


def test_there_are_enough_distinct_cases() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 25
    assert len({c.text for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_message_names_position_key_and_expectation(tmp_path: Path, case: Bad) -> None:
    path = write(tmp_path, case)
    with pytest.raises(ConfigError) as info:
        load(path)
    first = info.value.message.splitlines()[0]
    prefix = f"{path}:{case.where}: " + (f"{case.path}: " if case.path else "")
    assert first.startswith(prefix), info.value.message
    assert case.expect in first, info.value.message
    assert info.value.hint
    assert info.value.exit_code == EXIT_CONFIG


def check_cli_output(code: int, out: str, err: str, path: Path, case: Bad) -> None:
    """Exit 78, nothing on stdout, one paragraph on stderr naming the position."""
    assert code == EXIT_CONFIG, err
    assert "Traceback" not in err
    assert out == ""
    assert err.startswith(f"coldvault: error: {path}:{case.where}: ")
    assert case.expect in err
    paragraph = err.strip("\n")
    assert "\n\n" not in paragraph  # one paragraph
    assert "\n  hint: " in paragraph


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_main_exits_78_without_traceback(
    tmp_path: Path, case: Bad, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every case through the CLI's entry point in this process (fast)."""
    path = write(tmp_path, case)
    code = main(["config", "validate", str(path)])
    captured = capsys.readouterr()
    check_cli_output(code, captured.out, captured.err, path, case)


# A representative set through a real `coldvault` process (slower: one interpreter each).
SUBPROCESS_CASES = [
    "empty",
    "binary-garbage",
    "control-char",
    "tab-indent",
    "syntax-unclosed",
    "top-level-list",
    "unknown-job-key",
    "duplicate-key",
    "duplicate-job-names",
    "negative-size",
    "part-not-multiple",
    "yes-is-not-bool",
    "bad-time",
    "missing-key-file",
]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_cli_process_exits_78_without_traceback(
    tmp_path: Path, case_id: str, coldvault_cmd: list[str]
) -> None:
    case = next(c for c in CASES if c.id == case_id)
    path = write(tmp_path, case)
    done = subprocess.run(
        [*coldvault_cmd, "config", "validate", str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    check_cli_output(done.returncode, done.stdout, done.stderr, path, case)


def test_all_errors_are_reported_in_file_order(tmp_path: Path) -> None:
    text = job(
        "  - name: a\n    type: image\n    source: /x\n    hash: md5\n"
        "    snapshots: -1\n    every: soon\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    lines = info.value.message.splitlines()
    assert [ln.split(": ")[1] for ln in lines] == [
        "jobs[0].hash",
        "jobs[0].snapshots",
        "jobs[0].every",
    ]


def test_many_errors_are_capped(tmp_path: Path) -> None:
    body = "".join(f"  - {{name: j{i}, type: image, source: /x, hash: md{i}}}\n" for i in range(30))
    path = tmp_path / "c.yaml"
    path.write_text("jobs:\n" + body)
    with pytest.raises(ConfigError) as info:
        load(path)
    lines = info.value.message.splitlines()
    assert len(lines) == 21
    assert lines[-1].endswith("and 10 more errors")


def test_missing_file(tmp_path: Path, coldvault_cmd: list[str]) -> None:
    path = tmp_path / "absent.yaml"
    done = subprocess.run(
        [*coldvault_cmd, "--config", str(path), "config", "validate"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == EXIT_CONFIG
    assert f"{path}: no such file" in done.stderr
    assert "coldvault config example >" in done.stderr
    assert "Traceback" not in done.stderr


def test_directory_instead_of_file(tmp_path: Path, coldvault_cmd: list[str]) -> None:
    done = subprocess.run(
        [*coldvault_cmd, "config", "validate", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == EXIT_CONFIG
    assert f"{tmp_path}: is a directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreadable_file(tmp_path: Path, coldvault_cmd: list[str]) -> None:
    """Run the real CLI as `nobody` against a root-only file."""
    from tests.conftest import require, require_programs, require_root

    require_root()
    require_programs("setpriv")
    secret = tmp_path / "private"
    secret.mkdir()
    path = secret / "config.yaml"
    path.write_text("jobs:\n" + GOOD_JOB)
    path.chmod(0o600)
    tmp_path.chmod(0o755)
    secret.chmod(0o755)
    # `nobody` must be able to import this checkout: check before trusting the result.
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            *coldvault_cmd,
            "--version",
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": "/nonexistent"},
    )
    require(probe.returncode == 0, f"nobody cannot run the CLI here: {probe.stderr.strip()}")
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            *coldvault_cmd,
            "config",
            "validate",
            str(path),
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": "/nonexistent"},
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert f"{path}: permission denied" in done.stderr
    assert "Traceback" not in done.stderr


def test_too_large_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(5 << 20)
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load(path)


def test_bad_stdin(coldvault_cmd: list[str]) -> None:
    done = subprocess.run(
        [*coldvault_cmd, "config", "validate", "-"],
        input="jobs:\n  - {name: a, type: image, source: /x, part_size: 3 bananas}\n",
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == EXIT_CONFIG
    assert "<stdin>:2:51: jobs[0].part_size: found '3 bananas'" in done.stderr
