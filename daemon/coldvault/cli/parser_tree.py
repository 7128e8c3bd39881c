"""The command line as data: every command, its arguments and help, read from argparse.

The man page and the bash completion are generated from this tree at package
build time, so they always say what the parser says. argparse has no public API
to enumerate a parser's arguments; ``_actions`` and ``_choices_actions`` have been
stable since Python 3.2 and are what argparse's own help formatter reads.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Argument:
    """One option (``option_strings`` non-empty) or positional argument."""

    option_strings: tuple[str, ...]
    metavar: str  # "" for a flag that takes no value
    help: str
    optional_value: bool = False  # nargs "?" / "*": the value may be left out

    @property
    def is_option(self) -> bool:
        return bool(self.option_strings)


@dataclass(frozen=True)
class Command:
    """A parser: the program itself or one (sub)command, with its subcommands."""

    path: tuple[str, ...]  # () for the program, ("disk", "init") for `coldvault disk init`
    summary: str  # the one-line help shown in the parent's command list
    description: str
    epilog: str
    usage: str
    raw_text: bool  # RawDescriptionHelpFormatter: description and epilog keep their lines
    arguments: tuple[Argument, ...]
    commands: tuple[Command, ...]

    def walk(self) -> list[Command]:
        """This command and every command beneath it, depth first, in parser order."""
        return [self, *(c for sub in self.commands for c in sub.walk())]


def read_parser(parser: argparse.ArgumentParser) -> Command:
    """The tree of ``parser`` (normally ``coldvault.cli.main.build_parser()``)."""
    return _command(parser, (), "")


def _command(parser: argparse.ArgumentParser, path: tuple[str, ...], summary: str) -> Command:
    arguments: list[Argument] = []
    commands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands += _subcommands(action, path)
        elif action.help != argparse.SUPPRESS:
            arguments.append(_argument(parser, action))
    usage = " ".join(parser.format_usage().removeprefix("usage:").split())
    return Command(
        path=path,
        summary=summary,
        description=parser.description or "",
        epilog=parser.epilog or "",
        raw_text=isinstance(kind := parser.formatter_class, type)
        and issubclass(kind, argparse.RawDescriptionHelpFormatter),
        usage=usage,
        arguments=tuple(arguments),
        commands=tuple(commands),
    )


def _subcommands(
    action: argparse._SubParsersAction[argparse.ArgumentParser], path: tuple[str, ...]
) -> list[Command]:
    summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
    return [
        _command(sub, (*path, name), summaries.get(name, ""))
        for name, sub in action.choices.items()
        if summaries.get(name) != argparse.SUPPRESS
    ]


def _argument(parser: argparse.ArgumentParser, action: argparse.Action) -> Argument:
    return Argument(
        option_strings=tuple(action.option_strings),
        metavar=_metavar(action),
        help=_expand_help(parser, action),
        optional_value=action.nargs in ("?", "*"),
    )


def _metavar(action: argparse.Action) -> str:
    if action.option_strings and action.nargs == 0:
        return ""
    if isinstance(action.metavar, str):
        return action.metavar
    if isinstance(action.metavar, tuple):
        return " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper() if action.option_strings else action.dest


def _expand_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as ``--help`` prints it: ``%(default)s`` and ``%%`` expanded."""
    text = action.help or ""
    if "%" not in text:
        return text
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = parser.prog
    if action.choices is not None:
        params["choices"] = ", ".join(str(c) for c in action.choices)
    return text % params
