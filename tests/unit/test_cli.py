"""The command line frame: --version, --help on every subcommand, usage errors."""

from __future__ import annotations

import argparse
import logging
import subprocess
from collections.abc import Iterator

import pytest

from coldvault import __version__
from coldvault.cli.main import build_parser, main
from coldvault.errors import EXIT_USAGE

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
