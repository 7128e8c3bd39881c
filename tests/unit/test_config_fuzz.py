"""Generated configurations: every one is answered with a Config or a positioned exit 78.

Hypothesis writes configurations three ways: the schema's own keys with random
scalars in every one (valid structure), random YAML trees and mutated copies of
the example (broken structure), and random bytes. Each must load to a Config or
raise ConfigError (exit 78) whose every line names FILE:LINE:COL, never another
exception. Time is bounded by Hypothesis' per-example deadline (2 s), not by an
assertion of this machine's speed. A few examples also go through a real
`coldvault config validate` process.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from coldvault.cli.config_cmd import example_text
from coldvault.config.loader import load
from coldvault.config.model import JOB_CLASSES, Config, DiskConfig, Settings, key_of
from coldvault.errors import EXIT_CONFIG, ConfigError

# COLDVAULT_FUZZ_EXAMPLES=3000 runs a longer campaign by hand; the suite keeps to 100.
EXAMPLES = int(os.environ.get("COLDVAULT_FUZZ_EXAMPLES", "100"))
FAST = settings(
    deadline=timedelta(seconds=2),
    max_examples=EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROCESS = settings(
    FAST,
    max_examples=4,
    deadline=None,
    suppress_health_check=[*FAST.suppress_health_check, HealthCheck.function_scoped_fixture],
)

# -- scalars ------------------------------------------------------------------

_UNITS = ["", "s", "m", "h", "d", "w", "k", "M", "G", "T", "KiB", "GB", "b", "c", "x"]
digits = st.integers(1, 6000).map(lambda n: "9" * n)
numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.tuples(st.integers(0, 10**20), st.sampled_from(_UNITS)).map(lambda t: f"{t[0]}{t[1]}"),
    st.tuples(digits, st.sampled_from(_UNITS)).map(lambda t: t[0] + t[1]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["0x" + "f" * 40, "1h30m", "03:00", "25:61", "-1d", "1e999", ".5", "never"]),
)
words = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["true", "false", "yes", "on", "null", "~", "", " ", ".", "..", "<<", "-"]),
    st.sampled_from(["image", "btrfs", "blake3", "sha256", "uuid:", "label:x", "uid:1"]),
)
paths = st.one_of(
    st.text(max_size=30).map(lambda t: "/" + t),
    st.text(max_size=30),
    st.sampled_from(["/", "/tmp", ".", "./", "~nosuchuser/x", "a/../b", "/dev/null", "/" * 5000]),
)
scalars = st.one_of(numbers, words, paths, st.none(), st.booleans(), st.integers())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)

# -- the schema's structure with random values in every key -----------------------------


GOOD: dict[str, list[Any]] = {
    "name": ["a", "b", "root", "x.y_z-1"],
    "source": ["/dev/sda2", "uuid:1234-abcd", "label:data", "./disk.img"],
    "relative_folder": ["a", "b/c", "img", "x"],
    "size": ["1M", 512, "4k", "100M", "1G"],
    "count": [0, 1, 3, 30],
    "boolean": [True, False],
    "disk_names": [["default"], "default"],
    "duration": ["1d", "30s", "1h30m", "1w"],
    "duration_or_never": ["never", "30d", "12h"],
    "times": [["03:00"], "23:59", ["00:00", "12:30"]],
    "hooks": ["true", ["echo", "x"], [["sync"], ["echo", "done"]]],
    "absolute_path": ["/x/y", "/dev/md/backup", "/media/backup"],
    "absolute_paths": [["/home"], "/srv", ["/a/x", "/b/y"]],
    "file_path": ["state", "/tmp/coldvault-fuzz/x"],
    "file_not_folder": ["state.json", "/tmp/coldvault-fuzz/lock"],
    "key_file": ["/etc/passwd"],
    "md_uuid": ["3f9a1c2e:8b7d6a54:0e1f2a3b:4c5d6e7f"],
    "mount_options": ["noatime", ["noatime", "compress=zstd"]],
    "plain_text": ["btrfs", "ext4"],
    "seconds": [5, 0.5, "10s"],
    "ping_url": ["https://hc-ping.com/abc", "http://127.0.0.1:9/p/{job}"],
    "apprise_url": ["json://127.0.0.1:9/", "ntfys://ntfy.example.org/backups"],
    "notify_events": [["failure"], "disk_done", ["failure", "overdue"]],
    "job_names": [[]],
    "data_subset": ["5%", "1/10", None],
    "restic_repository": ["/srv/restic", "sftp:u@h:/r", "rest:http://127.0.0.1:8000/r"],
}


GOOD_BY_KEY: dict[str, list[Any]] = {
    "part_size": ["4M", "64M", "1G"],  # multiples of every block_size below
    "block_size": [512, "4k", "1M"],
}


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] | None
) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten (always without ``bad``)."""
    if bad is None:
        return good
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else good)


def section(
    cls: type[Any], depth: int = 0, bad: st.SearchStrategy[Any] | None = values
) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with any of ``cls``'s keys, each holding a plausible or a random value."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in fields(cls):
        spec = key_of(f)
        if spec is None or spec.convert == "jobs":
            continue
        if spec.flat is not None and spec.section is not None:
            # Merged into the parent mapping below (flat keys such as every, before).
            optional[f.name] = section(spec.section, depth + 1, bad).map(_only(spec.flat))
        elif spec.convert == "section_list" and spec.section is not None:
            items = st.lists(section(spec.section, depth + 1, bad), max_size=2)
            optional[f.name] = mostly(items, bad)
        elif spec.section is not None and depth < 3:
            optional[f.name] = mostly(section(spec.section, depth + 1, bad), bad)
        elif spec.convert == "choice":
            optional[f.name] = mostly(st.sampled_from(spec.choices), bad)
        else:
            good = GOOD_BY_KEY.get(f.name, GOOD[spec.convert])
            optional[f.name] = mostly(st.sampled_from(good), bad)
    flats = {f.name for f in fields(cls) if (k := key_of(f)) and k.flat is not None}
    required = {}
    if bad is None:  # plausible files: the required keys are always there
        required = {n: optional.pop(n) for n in list(optional) if _required(cls, n)}
    return st.fixed_dictionaries(required, optional=optional).map(lambda d: _flatten(d, flats))


def _required(cls: type[Any], name: str) -> bool:
    spec = key_of(cls.__dataclass_fields__[name])
    return spec is not None and spec.required


def _only(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: {k: v for k, v in data.items() if k in keys}


def _flatten(data: dict[str, Any], flats: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k in flats:
            out.update(v)
        else:
            out[k] = v
    return out


def job(bad: st.SearchStrategy[Any] | None) -> st.SearchStrategy[dict[str, Any]]:
    """A job of a random type with any of its keys."""
    kind = mostly(st.sampled_from(list(JOB_CLASSES)), None if bad is None else st.just("zfs"))
    return kind.flatmap(
        lambda k: st.fixed_dictionaries(
            {
                "name": mostly(
                    st.sampled_from(["a", "b", "c", "d"]), None if bad is None else words
                ),
                "type": st.just(k),
            }
        ).flatmap(
            lambda head: section(JOB_CLASSES.get(k, JOB_CLASSES["image"]), bad=bad).map(
                lambda body: {**body, **head}
            )
        )
    )


def configs(bad: st.SearchStrategy[Any] | None) -> st.SearchStrategy[dict[str, Any]]:
    """Whole files of the schema's keys; ``bad``: the random values mixed into them."""
    jobs = st.lists(job(bad), min_size=1, max_size=4, unique_by=lambda j: str(j["name"]))
    if bad is None:  # each job its own folder: targets named after the jobs
        jobs = jobs.map(lambda js: [{**j, "target": f"t-{j['name']}"} for j in js])
    optional = {"disk": section(DiskConfig, bad=bad), "settings": section(Settings, bad=bad)}
    if bad is not None:
        optional["extra"] = bad
    return st.fixed_dictionaries({"jobs": mostly(jobs, bad)}, optional=optional)


schema_configs = configs(values)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# -- checking one file -------------------------------------------------------------------

_POSITIONED = re.compile(r".+:\d+:\d+: ")


def check(folder: Path, data: str | bytes) -> ConfigError | Config:
    """Load ``data`` from a file: a Config, or a ConfigError whose lines are all positioned."""
    path = folder / "config.yaml"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    try:
        config = load(path)
    except ConfigError as exc:
        event("exit 78")
        assert exc.exit_code == EXIT_CONFIG
        lines = exc.message.splitlines()
        assert lines
        for line in lines:
            assert line.startswith(str(path)), line
            assert _POSITIONED.match(line) or re.fullmatch(r".+: \.\.\. and \d+ more errors", line)
        assert exc.hint
        return exc
    event("exit 0")
    return config


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FAST
@given(config=schema_configs)
def test_schema_keys_with_random_values(folder: Path, config: dict[str, Any]) -> None:
    check(folder, dump(config))


@settings(FAST, max_examples=max(40, EXAMPLES // 3))
@given(config=configs(None))
def test_schema_keys_with_plausible_values_load(folder: Path, config: dict[str, Any]) -> None:
    """Only values each key accepts: the file loads, job for job."""
    loaded = check(folder, dump(config))
    assert isinstance(loaded, Config), loaded
    assert [j.name for j in loaded.jobs] == [j["name"] for j in config["jobs"]]


@FAST
@given(
    tree=values, top=st.dictionaries(st.sampled_from(["disk", "disks", "settings", "jobs"]), values)
)
def test_random_yaml_trees(folder: Path, tree: Any, top: dict[str, Any]) -> None:
    check(folder, dump(tree))
    check(folder, dump(top))


@FAST
@given(data=st.binary(max_size=3000))
@example(b"\xef\xbb\xbfjobs: []")
@example(b"jobs:\n  - {name: a, type: image, source: /x}\n\x00")
def test_random_bytes(folder: Path, data: bytes) -> None:
    check(folder, data)


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    """The shipped example with a few random edits: bytes replaced, cut or inserted."""
    data = bytearray(example_text().encode())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["replace", "delete", "insert"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if edit == "replace":
            data[at : at + len(chunk)] = chunk
        elif edit == "delete":
            del data[at : at + len(chunk)]
        else:
            data[at:at] = draw(st.sampled_from([chunk, b"<<: *x\n", b"&a ", b"*a", b"!!", b"\t"]))
    return bytes(data)


@FAST
@given(data=mutated_example())
def test_mutated_example(folder: Path, data: bytes) -> None:
    check(folder, data)


@settings(FAST, max_examples=max(10, EXAMPLES // 10))
@given(
    snippet=st.one_of(
        st.builds(dump, values), st.binary(min_size=1, max_size=64).map(bytes.hex), st.just("- x\n")
    ),
    head=st.sampled_from(["", "jobs:\n", "x: [", "jobs: [", "settings: &s {<<: "]),
)
def test_files_near_one_megabyte(folder: Path, snippet: str, head: str) -> None:
    """A snippet repeated up to 1 MB: still one answer within the deadline."""
    line = snippet if snippet.endswith("\n") else snippet + "\n"
    indent = "  " if head == "jobs:\n" else ""
    body = "".join(indent + ln + "\n" for ln in line.splitlines())
    check(folder, head + body * max(1, (1_000_000 - len(head)) // len(body.encode())))


@PROCESS
@given(config=schema_configs)
def test_real_process_answers_0_or_78(
    folder: Path, config: dict[str, Any], coldvault_cmd: list[str]
) -> None:
    path = folder / "process.yaml"
    path.write_text(dump(config), encoding="utf-8", errors="surrogatepass")
    done = subprocess.run(
        [*coldvault_cmd, "config", "validate", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, EXIT_CONFIG), done.stderr
    assert "Traceback" not in done.stderr
    if done.returncode == EXIT_CONFIG:
        assert done.stderr.startswith(f"coldvault: error: {path}:")
    else:
        assert done.stdout.startswith(f"{path}: valid")
