"""The command tree of ``li``: options, defaults, usage errors (no daemon involved)."""

from __future__ import annotations

import argparse

import pytest

from libervia.cli import constants as C
from libervia.cli.base import (
    Command,
    Group,
    Options,
    build_parser,
    iter_commands,
    main,
    parse_args,
)
from libervia.cli.cmd_debug import convert_arg
from libervia.cli.cmd_message import split_messages, time_arg
from libervia.cli.cmd_profile import connection_params


def parse(*argv: str) -> argparse.Namespace:
    return parse_args(build_parser(), argv)


def test_global_options_before_or_after_the_command() -> None:
    for argv in (
        ("-p", "bob", "-O", "json", "-v", "message", "history", "x@y"),
        ("message", "history", "x@y", "-p", "bob", "-O", "json", "-v"),
    ):
        opts = Options(parse(*argv))
        assert (opts.profile, opts.output, opts.verbose) == ("bob", "json", 1), argv
    # a value given before the command survives the subcommand's parser
    opts = Options(parse("-p", "bob", "--pwd", "secret", "-c", "roster", "get"))
    assert (opts.profile, opts.pwd, opts.connect) == ("bob", "secret", True)


def test_defaults() -> None:
    opts = Options(parse("roster", "get"))
    assert opts.profile == "@DEFAULT@" and opts.pwd is None and opts.connect is False
    assert opts.output == "default" and opts.verbose == 0 and opts.quiet is False


def test_profile_create_options() -> None:
    args = parse(
        "profile", "create", "alice", "-j", "alice@example.org", "-x", "xp", "-p", "pp",
        "-A", "--server", "127.0.0.1", "--port", "5223", "--no-check-certificate", "-C",
    )  # fmt: skip
    assert args.name == "alice" and args.password == "pp" and args.xmpp_password == "xp"
    assert args.connect_now and Options(args).profile == "@DEFAULT@"  # -p is the password here
    assert connection_params(args) == [
        ("JabberID", "alice@example.org"),
        ("Force server", "127.0.0.1"),
        ("Force port", "5223"),
        ("check_certificate", "false"),
        ("autoconnect", "true"),
    ]
    assert parse("profile", "create", "a", "-A", "no").autoconnect == "false"
    assert connection_params(parse("profile", "create", "a")) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("profile", "create", "a", "--port", "99999"),
        ("profile", "create", "a", "-A", "maybe"),
        ("profile", "create", "a", "--check-certificate", "--no-check-certificate"),
        ("message", "send", "-t", "weird", "x@y", "hi"),
        ("message", "history"),
        ("message", "history", "x@y", "--before", "yesterday"),
        ("profile",),
        ("nothing",),
        ("-O", "xml", "profile", "list"),
        ("profile", "create", "a", "-O", "json"),  # create prints no data: no -O
    ],
)
def test_usage_errors_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(list(argv)) == C.EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: li" in err and "Traceback" not in err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text and "examples:" in text and "profile" in text
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("li ")


def test_every_command_documents_itself_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for path, cls in iter_commands():
        assert cls.help, path
        paths.append(path)
        if issubclass(cls, Command):
            assert cls.examples, f"li {' '.join(path)} has no examples"
            assert all("li " in line for line, _what in cls.examples)
            assert main([*path, "--help"]) == 0
            assert "examples:" in capsys.readouterr().out
        else:
            assert issubclass(cls, Group) and cls.subcommands
    for expected in (
        ("profile", "create"), ("profile", "list"), ("profile", "delete"),
        ("profile", "connect"), ("profile", "disconnect"), ("profile", "info"),
        ("profile", "default"), ("profile", "modify"), ("message", "send"),
        ("message", "history"), ("roster", "get"), ("roster", "add"), ("roster", "delete"),
        ("info", "disco"), ("info", "version"), ("param", "get"), ("param", "set"),
        ("debug", "bridge"), ("debug", "monitor"),
    ):  # fmt: skip
        assert expected in paths


def test_time_arg() -> None:
    assert time_arg("1700000000") == 1700000000.0
    assert time_arg("2026-11-23T10:00:00+00:00") == 1795428000.0
    assert isinstance(time_arg("2026-11-23"), float)
    with pytest.raises(argparse.ArgumentTypeError):
        time_arg("tomorrow")


def test_split_messages() -> None:
    assert split_messages("hello\nworld\n", False) == ["hello\nworld"]
    assert split_messages("hello\n\n  \nworld\n", True) == ["hello", "world"]
    assert split_messages(" \n", False) == [] and split_messages("", True) == []


def test_convert_arg() -> None:
    assert convert_arg("s", "42") == "42"
    assert convert_arg("i", "42") == 42 and convert_arg("d", "1.5") == 1.5
    assert convert_arg("b", "true") is True and convert_arg("b", "0") is False
    assert convert_arg("a{ss}", '{"": "hi"}') == {"": "hi"}
    assert convert_arg("(ss)", '["a", "b"]') == ("a", "b")
    with pytest.raises(Exception, match="invalid value"):
        convert_arg("i", "x")


def test_message_words_around_options() -> None:
    args = parse("message", "send", "bob@x", "hello", "-s", "Re", "big", "world", "-t", "chat")
    assert (args.jid, args.text, args.subject, args.type) == (
        "bob@x", ["hello", "big", "world"], "Re", "chat"
    )  # fmt: skip
    assert parse("message", "send", "bob@x", "-s", "Re", "--", "-1", "for", "me").text == [
        "-1", "for", "me"
    ]  # fmt: skip


def test_unknown_words_elsewhere_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["message", "send", "bob@x", "hi", "--bogus"]) == C.EXIT_USAGE
    assert main(["roster", "get", "extra"]) == C.EXIT_USAGE
    assert "unrecognized arguments" in capsys.readouterr().err
