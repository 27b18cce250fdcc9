"""The command reference of ``li`` in reStructuredText, made from its argument parser (the
documentation build writes it to ``doc/_generated/cli_reference.rst``; nothing generated is
checked in, so it never drifts from the code)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from libervia.cli import constants as C
from libervia.cli.base import Command, build_parser

_SECTION = "~^"
#: the global options (described once by doc/cli.rst, not under every command)
_COMMON = {"verbose", "quiet", "output", "profile", "pwd", "connect"}


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("li",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,))


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _literal(text: str) -> str:
    return f"``{text}``" if text else ""


def _option_line(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs == 0:
            return names
        metavar = action.metavar or (
            "{" + ",".join(action.choices) + "}" if action.choices else action.dest.upper()
        )
        if action.nargs == "?":
            metavar = f"[{metavar}]"
        return f"{names} {metavar}"
    metavar = action.metavar or action.dest
    return {"*": f"[{metavar} ...]", "+": f"{metavar} [...]", "?": f"[{metavar}]"}.get(
        str(action.nargs), str(metavar)
    )


def _help(action: argparse.Action) -> str:
    text = (action.help or "").replace("%(default)s", str(action.default))
    return " ".join(text.split())


def _escape(text: str) -> str:
    """Plain text as reST; `code` in help texts becomes a literal."""
    text = text.replace("\\", "\\\\").replace("*", "\\*")
    return re.sub(r"`([^`]+)`", r"``\1``", text)


def _parser_rst(path: tuple[str, ...], parser: argparse.ArgumentParser, level: int) -> list[str]:
    title = " ".join(path)
    lines = [title, _SECTION[min(level, len(_SECTION) - 1)] * len(title), ""]
    if parser.description:
        lines += [_escape(" ".join(parser.description.split())), ""]
    usage = parser.format_usage().strip().removeprefix("usage: ")
    usage_lines = [line.removeprefix(" " * len("usage: ")) for line in usage.splitlines()]
    lines += ["::", ""] + ["    " + line for line in usage_lines] + [""]
    sub = _subparsers(parser)
    if sub is not None:
        lines += ["Commands:", ""]
        for choice in sub._choices_actions:
            lines += [f"``{choice.dest}``", f"    {_escape(choice.help or '')}"]
        lines.append("")
    arguments = [
        a
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
        and a.help != argparse.SUPPRESS
        and a.dest not in _COMMON
    ]
    if arguments:
        lines += ["Arguments and options:", ""]
        for action in arguments:
            lines += [f"``{_option_line(action)}``", f"    {_escape(_help(action))}"]
        lines.append("")
    common = ["/".join(a.option_strings) for a in parser._actions if a.dest in _COMMON]
    if common:
        lines += [f"Common options: {', '.join(_literal(o) for o in common)}.", ""]
    command = parser.get_default("_command")
    if isinstance(command, Command) and command.examples:
        lines += ["Examples:", ""]
        for line, what in command.examples:
            lines += [f"- {_escape(what)}::", "", f"      {line}", ""]
    return lines


def exit_codes_rst() -> str:
    """The exit codes as a reST table."""
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 10 90", ""]
    lines += ["   * - code", "     - meaning"]
    for code, meaning in C.EXIT_CODES:
        lines += [f"   * - {code}", f"     - {_escape(meaning)}"]
    return "\n".join(lines) + "\n"


def reference_rst() -> str:
    """The reference: every command with its usage, arguments and examples."""
    lines: list[str] = []
    for path, parser in walk(build_parser()):
        if len(path) == 1:
            continue  # the global options are described by the page itself
        lines += _parser_rst(path, parser, len(path) - 2)
    return "\n".join(lines).rstrip() + "\n"
