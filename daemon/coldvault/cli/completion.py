"""A static bash completion for ``coldvault``, generated from the argument parser.

    python3 -m coldvault.cli.completion > /usr/share/bash-completion/completions/coldvault

The Debian package runs this at build time. The script completes command names
and options per command; after an option that takes a value, and for positional
arguments, bash falls back to file names (``complete -o default``).
"""

from __future__ import annotations

import sys

from coldvault.cli.parser_tree import Command, read_parser

TEMPLATE = """\
# bash completion for coldvault; generated from its argument parser
# (python3 -m coldvault.cli.completion). Do not edit.
_coldvault() {{
    local cur prev path word i
    cur=${{COMP_WORDS[COMP_CWORD]}}
    prev=${{COMP_WORDS[COMP_CWORD-1]}}
    path=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        case "$word" in
{value_options}) ((i++)) ;;
            -*) ;;
            *) case " $(_coldvault_commands "$path") " in
                   *" $word "*) path="${{path:+$path }}$word" ;;
               esac ;;
        esac
    done
    case "$prev" in
{value_options}) return 0 ;;
    esac
    local words
    if [[ "$cur" == -* ]]; then
        words=$(_coldvault_options "$path")
    else
        words=$(_coldvault_commands "$path")
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
_coldvault_commands() {{
    case "$1" in
{commands}
    esac
}}
_coldvault_options() {{
    case "$1" in
{options}
    esac
}}
complete -o default -F _coldvault coldvault
"""


def _case(path: tuple[str, ...], words: list[str]) -> str:
    return f'        "{" ".join(path)}") echo "{" ".join(words)}" ;;'


def render(program: Command) -> str:
    """The completion script for the parser tree ``program``."""
    commands = program.walk()
    value_options = sorted(
        {
            name
            for command in commands
            for argument in command.arguments
            if argument.is_option and argument.metavar and not argument.optional_value
            for name in argument.option_strings
        }
    )
    return TEMPLATE.format(
        value_options="            " + "|".join(value_options),
        commands="\n".join(
            _case(c.path, [sub.path[-1] for sub in c.commands]) for c in commands if c.commands
        ),
        options="\n".join(
            _case(c.path, [name for a in c.arguments for name in a.option_strings])
            for c in commands
        ),
    )


def main() -> int:
    """Print the script for ``coldvault.cli.main.build_parser()`` on standard output."""
    from coldvault.cli.main import build_parser

    sys.stdout.write(render(read_parser(build_parser())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
