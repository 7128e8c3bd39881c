"""The ``coldvault(1)`` man page, generated from the argument parser.

    python3 -m coldvault.cli.manpage > coldvault.1

The Debian package runs this at build time, so the page lists exactly the
commands and options the parser has, with the parser's help texts. The date is
``SOURCE_DATE_EPOCH`` (set by dpkg-buildpackage from the changelog) when given,
so the page is reproducible.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

from coldvault import __version__
from coldvault.cli.parser_tree import Argument, Command, read_parser
from coldvault.config.model import DEFAULT_CONFIG_PATH, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_FILE

SEE_ALSO = r"""\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBcryptsetup\fR(8), \fBmdadm\fR(8),
\fBbtrfs\fR(8); the full manual: \fI/usr/share/doc/coldvault/README.md.gz\fR"""


def escape(text: str) -> str:
    """``text`` as roff: backslashes and hyphen-minus escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each on one line (argparse rewraps them too)."""
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def text_block(text: str, raw: bool) -> list[str]:
    """Paragraphs as roff; with ``raw`` (RawDescriptionHelpFormatter) lines stay as written."""
    if not raw:
        return [line for p in paragraphs(text) for line in (".PP", escape(p))]
    blocks = [b.strip("\n") for b in text.split("\n\n") if b.strip()]
    return [line for b in blocks for line in (".PP", ".nf", escape(b), ".fi")]


def argument_tag(argument: Argument) -> str:
    """The .TP tag: ``\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIPATH\\fR``."""
    metavar = escape(argument.metavar)
    if not argument.is_option:
        return f"\\fI{metavar}\\fR"
    names = ", ".join(f"\\fB{escape(name)}\\fR" for name in argument.option_strings)
    if not argument.metavar:
        return names
    value = f"[\\fI{metavar}\\fR]" if argument.optional_value else f"\\fI{metavar}\\fR"
    return f"{names} {value}"


def argument_list(arguments: tuple[Argument, ...]) -> list[str]:
    out: list[str] = []
    for argument in arguments:
        out += [".TP", argument_tag(argument), escape(argument.help) or "\\&"]
    return out


def command_list(commands: tuple[Command, ...]) -> list[str]:
    out: list[str] = []
    for sub in commands:
        out += [".TP", f"\\fB{escape(sub.path[-1])}\\fR", escape(sub.summary) or "\\&"]
    return out


def command_section(command: Command) -> list[str]:
    out = [f'.SS "{escape(" ".join(("coldvault", *command.path)))}"']
    out += [".PP", f"\\fBusage:\\fR {escape(command.usage)}"]
    if command.summary:
        out += [".PP", escape(command.summary)]
    out += text_block(command.description, command.raw_text)
    out += text_block(command.epilog, command.raw_text) if command.path else []
    out += command_list(command.commands)
    arguments = tuple(a for a in command.arguments if a.option_strings != ("-h", "--help"))
    return out + argument_list(arguments)


def name_line(program: Command) -> str:
    """NAME: ``coldvault \\- what it does`` (the parser's description, as a phrase)."""
    what = paragraphs(program.description)[0] if program.description else "backup daemon"
    what = what.split(". ")[0].rstrip(".")  # whatis(1) wants one short phrase
    return f"coldvault \\- {escape(what[0].lower() + what[1:])}"


def build_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return when.strftime("%Y-%m-%d")


def render(program: Command, date: str | None = None) -> str:
    """The whole page (man(7) macros) for the parser tree ``program``."""
    date = date or build_date()
    out = [
        f'.TH COLDVAULT 1 "{date}" "coldvault {escape(__version__)}" "User Commands"',
        ".nh",  # no hyphenation: option names must stay whole
        ".ad l",
        ".SH NAME",
        name_line(program),
        ".SH SYNOPSIS",
        f"\\fBcoldvault\\fR {escape(program.usage.removeprefix('coldvault').strip())}",
        ".SH DESCRIPTION",
    ]
    out += text_block(program.description, program.raw_text)
    out += [
        ".PP",
        "Commands (each has its own \\fB\\-\\-help\\fR):",
        *command_list(program.commands),
    ]
    out += [".SH OPTIONS", *argument_list(program.arguments), ".SH COMMANDS"]
    for command in program.walk()[1:]:
        out += command_section(command)
    if program.epilog:
        out += [".SH EXIT STATUS", *text_block(program.epilog, program.raw_text)]
    out += [
        ".SH FILES",
        ".TP",
        f"\\fI{escape(str(DEFAULT_CONFIG_PATH))}\\fR",
        "The configuration (\\fBcoldvault config example\\fR prints a commented one).",
        ".TP",
        f"\\fI{escape(str(DEFAULT_STATE_FILE))}\\fR",
        "Per job: last attempt, last success, result (settings.state_file).",
        ".TP",
        f"\\fI{escape(str(DEFAULT_RUNTIME_DIR))}/\\fR",
        "The running daemon's status and lock (settings.runtime_dir).",
        ".SH SEE ALSO",
        SEE_ALSO,
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    """Print the page for ``coldvault.cli.main.build_parser()`` on standard output."""
    from coldvault.cli.main import build_parser

    sys.stdout.write(render(read_parser(build_parser())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
