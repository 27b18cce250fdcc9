"""The command reference of doc/cli.rst is generated from li's argument parser."""

from __future__ import annotations

from libervia.cli import constants as C
from libervia.cli.base import Command, iter_commands
from libervia.cli.docgen import exit_codes_rst, reference_rst


def test_reference_lists_every_command_with_its_options_and_examples() -> None:
    text = reference_rst()
    for path, cls in iter_commands():
        title = "li " + " ".join(path)
        assert f"\n{title}\n" in f"\n{text}", title
        if issubclass(cls, Command):
            for line, _what in cls.examples:
                assert f"      {line}\n" in text
    assert "``-x, --xmpp-password PASSWORD``" in text
    assert "``--no-check-certificate``" in text
    # the global options are described once by the page, not under every command
    assert "``-p, --profile PROFILE``" not in text
    assert "Common options: ``-v/--verbose``" in text


def test_exit_codes_table() -> None:
    text = exit_codes_rst()
    for code, _meaning in C.EXIT_CODES:
        assert f"   * - {code}\n" in text
