"""The command line frame: --version, --help on every subcommand, usage errors."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldvault import __version__
from coldvault.cli.main import build_parser, main
from coldvault.errors import EXIT_BROKEN_PIPE, EXIT_USAGE

pytestmark = pytest.mark.usefixtures("restore_coldvault_logger")


def subcommands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command path the parser knows, e.g. ("config", "validate")."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from subcommands(child, (*prefix, name))


COMMANDS = sorted(set(subcommands(build_parser())))


def test_known_commands_are_registered() -> None:
    assert ("config", "validate") in COMMANDS
    assert ("config", "example") in COMMANDS
    assert len(COMMANDS) >= 3


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_on_every_subcommand(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: coldvault " + " ".join(command))
    assert "Traceback" not in out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in {c[0] for c in COMMANDS}:
        assert command in out


def test_version(coldvault_cmd: list[str]) -> None:
    done = subprocess.run(
        [*coldvault_cmd, "--version"], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"coldvault {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["config"],
        ["config", "frobnicate"],
        ["config", "validate", "a", "b"],
        ["--no-such-option", "config", "example"],
    ],
    ids=["nothing", "unknown-command", "missing-action", "unknown-action", "extra-arg", "bad-opt"],
)
def test_bad_usage_exits_2(argv: list[str], coldvault_cmd: list[str]) -> None:
    done = subprocess.run([*coldvault_cmd, *argv], check=False, capture_output=True, text=True)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith("usage: coldvault")
    assert "Traceback" not in done.stderr


def test_quiet_hides_info_verbose_shows_debug(coldvault_cmd: list[str]) -> None:
    """-q/-v reach the logger: the example validation logs nothing at -q and debug at -vv."""
    quiet = subprocess.run(
        [*coldvault_cmd, "-q", "config", "example"], check=False, capture_output=True, text=True
    )
    assert quiet.returncode == 0 and quiet.stderr == ""

    from coldvault.log import setup_logging

    for verbosity, level in ((-1, logging.WARNING), (0, logging.INFO), (2, logging.DEBUG)):
        setup_logging(verbosity, journal=False)
        assert logging.getLogger("coldvault").level == level
    setup_logging(0, journal=False)


def _write_config(tmp_path: Path) -> Path:
    backups = tmp_path / "backups"
    backups.mkdir()
    source = tmp_path / "source.img"
    source.write_bytes(b"\0" * 4096)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"disk:\n  mount:\n    point: {backups}\n    require_mount: false\n"
        f"settings:\n  state_file: {tmp_path / 'state.json'}\n"
        f"  lock_file: {tmp_path / 'lock'}\n"
        f"jobs:\n  - name: alpha\n    type: image\n    source: {source}\n"
        f"  - name: beta\n    type: image\n    source: {source}\n"
    )
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "nosuchjob"],
        ["run", "alpha", "nosuchjob"],
        ["list", "nosuchjob"],
        ["verify", "nosuchjob"],
        ["restore", "nosuchjob", "/tmp/x"],
    ],
    ids=["run", "run-one-unknown", "list", "verify", "restore"],
)
def test_unknown_job_is_a_usage_error_listing_the_jobs(
    argv: list[str], tmp_path: Path, coldvault_cmd: list[str]
) -> None:
    config = _write_config(tmp_path)
    done = subprocess.run(
        [*coldvault_cmd, "-c", str(config), *argv], check=False, capture_output=True, text=True
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "no job named 'nosuchjob'" in done.stderr
    assert "jobs configured: alpha, beta" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state.json").exists()  # nothing ran


def test_output_into_a_closed_pipe_ends_quietly(coldvault_cmd: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before coldvault writes a byte
    try:
        done = subprocess.run(
            [*coldvault_cmd, "config", "example"],
            check=False,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE
    assert done.stderr == ""


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    def help_of(*command: str) -> str:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        return " ".join(capsys.readouterr().out.split())

    top = help_of()
    for code in ("0 ok", "1 failed", "2 bad command line", "3 disk absent", "78 config", "141"):
        assert code in top
    disk = help_of("disk")
    commands = {c[1] for c in COMMANDS if len(c) == 2 and c[0] == "disk"}
    assert "open" not in commands and "close" not in commands
    assert "open, close" not in disk and "open, close" not in top  # the old false promise
    assert "coldvault open" in disk  # points to the real commands
    token = help_of("token", "init")
    assert "SHA-512" in token and "--force" in token


def test_readme_exit_codes_match_the_help() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    epilog = build_parser().epilog or ""
    for code in (0, 1, 2, 3, 4, 5, 6, 7, 78, 130, 141):
        assert str(code) in rows
        assert f"{code} " in epilog
