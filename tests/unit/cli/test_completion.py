"""``li completion``: the bash script completes commands, options and their choices."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest

from libervia.cli.base import Cli, build_parser, parse_args
from libervia.cli.cmd_completion import bash_script, completion_table
from tests.conftest import aio

BASH = shutil.which("bash") or "bash"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def complete(*words: str) -> list[str]:
    """What the completion function offers for the command line ``words`` (the last one is
    the word being completed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    script = (
        bash_script()
        + f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _li; "
        + 'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        [BASH, "--norc", "-c", script], capture_output=True, text=True, timeout=30,
        env={"PATH": "/nonexistent"},  # no li to ask for profile names
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_commands_options_and_choices() -> None:
    assert complete("li", "pro") == ["profile"]
    assert complete("li", "profile", "c") == ["connect", "create"]
    assert complete("li", "-p", "alice", "message", "h") == ["history"]
    assert complete("li", "message", "send", "--t") == ["--type"]
    assert complete("li", "message", "send", "-t", "") == [
        "auto", "chat", "normal", "headline", "groupchat"
    ]  # fmt: skip
    assert complete("li", "-O", "j") == ["json"]
    assert complete("li", "profile", "create", "a", "--no") == ["--no-check-certificate"]
    assert complete("li", "roster", "get", "-p", "") == []  # no daemon: no profile names


def test_table_marks_profile_options() -> None:
    _words, takes_value = completion_table(build_parser())
    assert takes_value["li roster get|-p"] == "@profile"
    assert takes_value["li profile create|-p"] == "-"  # there, -p is the new password


@aio
async def test_zsh_script_uses_bashcompinit() -> None:
    stdout = io.StringIO()
    cli = Cli(parse_args(build_parser(), ["completion", "zsh"]), stdout=stdout)
    assert await cli.run() == 0  # no daemon needed
    out = stdout.getvalue()
    assert out.startswith("# zsh completion") and "bashcompinit" in out and "_li()" in out
