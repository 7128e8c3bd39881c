"""Every kind of bad configuration: a clear, positioned message and exit status 78.

Each case is checked twice: in-process (the exact message: file:line:col, key
path, what was expected) and through the real CLI (exit 78, no traceback, one
paragraph on stderr).
"""

from __future__ import annotations

import os
import re
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
    # Issue 12: tracebacks, hangs and silent acceptance, each now a positioned error.
    Bad(
        "duration-days-overflow",
        job(GOOD_JOB + "    every: 99999999999d\n"),
        "5:12",
        "jobs[0].every",
        "at most 100 years (36525d)",
    ),
    Bad(
        "duration-seconds-overflow",
        job(GOOD_JOB + "    every: 100000000000000000000s\n"),
        "5:12",
        "jobs[0].every",
        "at most 100 years",
    ),
    Bad(
        "poll-overflow",
        "settings: {poll_seconds: 99999999999999999999d}\njobs:\n" + GOOD_JOB,
        "1:26",
        "settings.poll_seconds",
        "at most 100 years",
    ),
    Bad(
        "poll-above-a-day",
        "settings: {poll_seconds: 90000}\njobs:\n" + GOOD_JOB,
        "1:26",
        "settings.poll_seconds",
        "at most 86400 seconds",
    ),
    Bad(
        "snapshots-5000-digits",
        job(GOOD_JOB + "    snapshots: " + "9" * 5000 + "\n"),
        "5:16",
        "jobs[0].snapshots",
        "a number up to 100000",
    ),
    Bad(
        "retention-5000-digits",
        job(GOOD_JOB + "    retention: {daily: " + "7" * 5000 + "}\n"),
        "5:24",
        "jobs[0].retention.daily",
        "a number up to 100000",
    ),
    Bad(
        "part-size-5000-digits",
        job(GOOD_JOB + "    part_size: " + "1" * 5000 + "\n"),
        "5:16",
        "jobs[0].part_size",
        "at most 24 digits",
    ),
    Bad(
        "nested-1200-flow",
        "x: " + "{a: " * 1200 + "1" + "}" * 1200 + "\n" + job(GOOD_JOB),
        "1:200",
        "",
        "nested more than 50 levels deep",
    ),
    Bad(
        "nested-5000-block",
        job(GOOD_JOB + "    before:\n    " + "- " * 5000 + "x\n"),
        "6:99",
        "",
        "nested more than 50 levels deep",
    ),
    Bad(
        "self-merge",
        "disk: &d {<<: *d}\njobs:\n" + GOOD_JOB,
        "1:7",
        "disk.<<",
        "a merge of a mapping into itself",
    ),
    Bad(
        "merge-a-scalar",
        "disk: {<<: 5}\njobs:\n" + GOOD_JOB,
        "1:12",
        "disk.<<",
        "expected a mapping to merge",
    ),
    Bad(
        "block-size-1024T",
        job(GOOD_JOB + "    block_size: 1024T\n"),
        "5:17",
        "jobs[0].block_size",
        "at most 64M (67108864 bytes)",
    ),
    Bad(
        "part-size-above-64G",
        job(GOOD_JOB + "    part_size: 65G\n"),
        "5:16",
        "jobs[0].part_size",
        "at most 64G (68719476736 bytes)",
    ),
    Bad(
        "nul-in-target",
        job(GOOD_JOB + '    target: "a\\0b"\n'),
        "5:13",
        "jobs[0].target",
        "control character U+0000",
    ),
    Bad(
        "nul-in-mount-point",
        'disk:\n  mount: {point: "/m\\0x"}\njobs:\n' + GOOD_JOB,
        "2:18",
        "disk.mount.point",
        "control character U+0000",
    ),
    Bad(
        "nul-in-state-file",
        'settings: {state_file: "/s\\0x"}\njobs:\n' + GOOD_JOB,
        "1:24",
        "settings.state_file",
        "control character U+0000",
    ),
    Bad(
        "escape-in-source",
        job('  - name: r\n    type: image\n    source: "/dev/\\esda"\n'),
        "4:13",
        "jobs[0].source",
        "control character U+001B",
    ),
    Bad(
        "nul-in-hook",
        job(GOOD_JOB + '    before: ["echo", "a\\0b"]\n'),
        "5:13",
        "jobs[0].before",
        "NUL byte",
    ),
    Bad(
        "hook-is-a-number",
        job(GOOD_JOB + "    before: 5\n"),
        "5:13",
        "jobs[0].before",
        "expected a command",
    ),
    Bad(
        "mount-options-number",
        "disk:\n  mount: {options: 5}\njobs:\n" + GOOD_JOB,
        "2:20",
        "disk.mount.options",
        "expected mount options",
    ),
    Bad(
        "unknown-tag",
        job(GOOD_JOB + "    hash: !foo blake3\n"),
        "5:11",
        "",
        "found the tag !foo, expected no tag",
    ),
    Bad(
        "python-tag",
        job(GOOD_JOB + "    hash: !!python/object/apply:os.system [echo]\n"),
        "5:11",
        "",
        "found the tag !!python/object/apply:os.system",
    ),
    Bad(
        "state-file-is-folder",
        "settings: {state_file: .}\njobs:\n" + GOOD_JOB,
        "1:24",
        "settings.state_file",
        "a folder, expected the path of a file",
    ),
    Bad(
        "undefined-alias",
        "disk: *nowhere\njobs:\n" + GOOD_JOB,
        "1:7",
        "",
        "found the alias *nowhere",
    ),
    # Issue 11, point 3: job folders that overlap.
    Bad(
        "target-is-root",
        job(GOOD_JOB + "    target: .\n"),
        "5:13",
        "jobs[0].target",
        "the backup root itself",
    ),
    Bad(
        "target-is-root-slash",
        job(GOOD_JOB + "    target: ./\n"),
        "5:13",
        "jobs[0].target",
        "the backup root itself",
    ),
    Bad(
        "target-inside-snapshot",
        job(
            GOOD_JOB
            + "  - {name: b, type: image, source: /x, target: root/snapshot-2020-01-01-000000}\n"
        ),
        "5:5",
        "jobs[1].target",
        "inside the folder 'root' of job 'root'",
    ),
    Bad(
        "target-inside-inprogress",
        job(
            GOOD_JOB + "  - {name: b, type: image, source: /x, target: root/snapshot-inprogress}\n"
        ),
        "5:5",
        "jobs[1].target",
        "inside the folder 'root' of job 'root'",
    ),
    Bad(
        "target-holds-other",
        job(
            "  - {name: a, type: image, source: /x, target: d/a}\n"
            "  - {name: b, type: image, source: /y, target: d}\n"
        ),
        "3:5",
        "jobs[1].target",
        "which holds the folder of job 'a'",
    ),
    Bad(
        "target-is-token",
        job(GOOD_JOB + "    target: .token\n"),
        "2:5",
        "jobs[0].target",
        "the disk's token file '.token'",
    ),
    Bad(
        "target-holds-custom-token",
        "disk:\n  token: {hash_file: t.sha512, file: keys/tok}\njobs:\n"
        "  - {name: a, type: image, source: /x, target: keys}\n",
        "4:5",
        "jobs[0].target",
        "the disk's token file 'keys/tok'",
    ),
    Bad(
        "btrfs-sources-same-name",
        job("  - name: h\n    type: btrfs\n    sources: [/x/data, /y/data]\n"),
        "4:24",
        "jobs[0].sources[1]",
        "stored in the folder 'data' like '/x/data'",
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
    "nested-5000-block",
    "self-merge",
    "python-tag",
    "block-size-1024T",
    "nul-in-target",
    "target-inside-snapshot",
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
        f.truncate(2 << 20)
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
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


def merge_bomb(levels: int, width: int) -> str:
    """``levels`` of ``width``-way ``<<:`` merges (9 and 9: 387 million paths to a key)."""
    inner = "&a0 {poll_seconds: 7, inhibit_sleep: false}"
    for i in range(1, levels + 1):
        inner = f"&a{i} {{<<: [{inner}" + f", *a{i - 1}" * (width - 1) + "]}"
    return f"settings: {{<<: {inner}}}\njobs:\n{GOOD_JOB}"


def test_merge_bomb_is_read_once_per_mapping(tmp_path: Path) -> None:
    """Each merged mapping is read once, so the bomb is a small valid configuration."""
    text = merge_bomb(9, 9)
    assert len(text) < 1024
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    config = load(path)
    assert config.settings.poll_seconds == 7
    assert config.settings.inhibit_sleep is False


def test_aliases_used_too_often_are_refused(tmp_path: Path) -> None:
    """A job of 200 keys used 1,000 times through an alias: over the work bound, exit 78."""
    keys = ", ".join(f"k{i}: 1" for i in range(200))
    text = f"jobs: [&j {{name: a, type: image, source: /x, {keys}}}" + ", *j" * 1000 + "]\n"
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert "found more than 50000 keys and list items" in info.value.message.splitlines()[0]
    assert "anchors, aliases" in (info.value.hint or "")


def test_too_many_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("x: [" + ",".join(["1"] * 60_000) + "]\n")
    with pytest.raises(ConfigError, match=r":1:\d+: found more than 50000 values"):
        load(path)


def test_many_errors_are_collected_in_linear_time(tmp_path: Path) -> None:
    """40,000 list items that are not jobs: every one found, 20 shown (20,000 took 10 s)."""
    path = tmp_path / "c.yaml"
    path.write_text("jobs:\n" + "  - x\n" * 40_000)
    with pytest.raises(ConfigError) as info:
        load(path)
    lines = info.value.message.splitlines()
    assert lines[0].endswith("jobs[0]: found 'x', expected a job (a mapping with name and type)")
    assert lines[-1].endswith("... and 39980 more errors")


def test_merge_chain_longer_than_the_recursion_limit(tmp_path: Path) -> None:
    """Each mapping merges the one before: 5,000 links, read without recursion."""
    chain = "".join(f"  - &a{i} {{<<: *a{i - 1}}}\n" for i in range(1, 5000))
    text = f"x:\n  - &a0 {{poll_seconds: 3}}\n{chain}settings: *a4999\njobs:\n{GOOD_JOB}"
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.message.splitlines() == [
        f"{path}:1:1: x: unknown key, expected one of: disk, disks, jobs, offsite, settings"
    ]


@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev"])
def test_validate_refuses_non_regular_files_without_blocking(
    tmp_path: Path, kind: str, coldvault_cmd: list[str]
) -> None:
    """A FIFO with no writer would block a plain open() forever: refused before reading."""
    import socket

    path = tmp_path / kind
    expected = {"fifo": "a FIFO (named pipe)", "socket": "a socket", "chardev": ""}[kind]
    holder = None
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        holder = socket.socket(socket.AF_UNIX)
        holder.bind(str(path))
    else:
        path = Path("/dev/null")
        expected = "a character device"
    try:
        done = subprocess.run(
            [*coldvault_cmd, "config", "validate", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,  # a hang fails the test instead of the suite
        )
        with pytest.raises(ConfigError, match=re.escape(f"{path}: is {expected}")):
            load(path)
    finally:
        if holder is not None:
            holder.close()
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert f"coldvault: error: {path}: is {expected}, expected a YAML configuration file" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
