"""coldvault(1) and the bash completion follow the argument parser.

Both are generated from the parser when the Debian package is built. These tests
walk the parser on their own (argparse's actions, as its help formatter does) and
check that every command and option, with its help, is in the rendered page and
in the completion, and that man(1) renders the page without a warning.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import require_programs

from coldvault.cli.main import build_parser
from coldvault.cli.manpage import escape

# What -Tutf8 may turn ASCII into.
TYPOGRAPHY = str.maketrans({"\u2010": "-", "\u2212": "-", "\u2019": "'", "\u2018": "`"})


@dataclass(frozen=True)
class Expected:
    path: tuple[str, ...]
    options: tuple[str, ...]
    helps: tuple[str, ...]


def expected(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Expected]:
    """Every parser in the tree with its visible option strings and help texts."""
    options: list[str] = []
    helps: list[str] = []
    below: list[Expected] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                helps.append(choice.help or "")
            for name, sub in action.choices.items():
                below += expected(sub, (*path, name))
        elif action.help != argparse.SUPPRESS:
            options += action.option_strings
            if action.help:
                helps.append(parser._get_formatter()._expand_help(action))
    return [Expected(path, tuple(options), tuple(h for h in helps if h)), *below]


def generate(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1764547200"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("man") / "coldvault.1"
    path.write_text(generate("coldvault.cli.manpage"))
    return path


def render(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    require_programs("man", "groff")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80"}
    return subprocess.run(
        ["man", *extra, "-E", "UTF-8", "-l", "-Tutf8", str(page)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def flat(text: str) -> str:
    """Rendered text without formatting, typography or line breaks."""
    text = re.sub(".\b", "", text).translate(TYPOGRAPHY)  # overstrike bold/underline
    return " ".join(text.split())


def sections(rendered: str) -> dict[tuple[str, ...], str]:
    """The COMMANDS section of the rendered page split at each "coldvault ..." heading."""
    commands = rendered.split("\nCOMMANDS\n", 1)[1].split("\nEXIT STATUS\n", 1)[0]
    parts = re.split(r"^   (coldvault(?: [\w-]+)*)\n", commands, flags=re.MULTILINE)
    return {tuple(parts[i].split()[1:]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_page_renders_without_warnings(page: Path) -> None:
    """What lintian's manpage-has-errors-from-man runs: no output on stderr."""
    done = render(page, "--warnings", "-Z")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_every_command_option_and_help_is_in_the_page(page: Path) -> None:
    rendered = re.sub(".\b", "", render(page).stdout)  # overstrike bold/underline
    found = sections(rendered)
    tree = expected(build_parser())
    program, commands = tree[0], tree[1:]
    top = flat(rendered.split("\nCOMMANDS\n", 1)[0])
    for option in program.options:
        assert option in top, f"global option {option} missing"
    for help_text in program.helps:
        assert " ".join(help_text.split()) in top, f"global help {help_text!r} missing"
    assert [c.path for c in commands] == list(found), "commands differ from the parser's"
    for command in commands:
        text = flat(found[command.path])
        assert f"usage: coldvault {' '.join(command.path)}" in text
        for option in command.options:
            if option not in ("-h", "--help"):
                # Listed as an entry of its own (an indented line starting with the
                # option names), not only mentioned in the usage line.
                entry = rf"^ {{7}}(\S+, )*{re.escape(option)}(,| |$)"
                assert re.search(entry, found[command.path], re.MULTILINE), (
                    f"{option} of {command.path} has no entry"
                )
        for help_text in command.helps:
            if help_text != "show this help message and exit":
                core = " ".join(help_text.split())
                assert core in text, f"help of {command.path}: {help_text!r} missing"


def test_exit_codes_and_header(page: Path) -> None:
    text = page.read_text()
    assert text.startswith('.TH COLDVAULT 1 "2025-12-01" "coldvault ')  # SOURCE_DATE_EPOCH
    epilog = build_parser().epilog or ""
    rendered = flat(render(page).stdout)
    assert "EXIT STATUS" in rendered
    assert " ".join(epilog.split()) in rendered


def test_escape_keeps_roff_requests_out_of_text() -> None:
    assert escape(".hidden and 'quoted") == "\\&.hidden and 'quoted"
    assert escape("a\nb\n'x") == "a\nb\n\\&'x"
    assert escape("--dry-run \\n") == "\\-\\-dry\\-run \\en"


@pytest.fixture(scope="module")
def completion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "coldvault"
    path.write_text(generate("coldvault.cli.completion"))
    return path


def complete(script: Path, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` after `coldvault`."""
    require_programs("bash")
    argv = ["coldvault", *words]
    body = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in argv)})\n"
        f"COMP_CWORD={len(argv) - 1}\n"
        '_coldvault; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", body], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [w for w in done.stdout.splitlines() if w]


def test_completion_offers_each_commands_commands_and_options(completion: Path) -> None:
    syntax = subprocess.run(
        ["bash", "-n", str(completion)], capture_output=True, text=True, check=False
    )
    assert syntax.returncode == 0, syntax.stderr
    parser = build_parser()
    for command in expected(parser):
        # A global option with a value in front: it must not be taken for a command.
        words = ["-c", "/etc/coldvault/config.yaml", *command.path]
        assert complete(completion, [*words, "-"]) == list(command.options), command.path
    top = complete(completion, [""])
    assert "disk" in top
    assert "init" in complete(completion, ["disk", ""])
    assert complete(completion, ["disk", "init", "--array", ""]) == []  # a value: files
