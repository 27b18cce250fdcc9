"""``li``'s output formats: default (rich on a terminal, plain otherwise), simple, json."""

from __future__ import annotations

import io
import json
from datetime import datetime

from libervia.cli.cmd_info import disco_dict
from libervia.cli.cmd_message import message_dict
from libervia.cli.cmd_roster import contact_dict, subscription_text
from libervia.cli.output import Output, as_text, message_text

ROWS = [{"jid": "bob@example.org", "name": "Bob", "groups": ["friends", "work"]}]
COLUMNS = [("jid", "JID"), ("name", "name"), ("groups", "groups")]
TS = datetime(2026, 11, 23, 21, 5, 3).timestamp()
HISTORY_ROW = (
    "uid1", TS, "alice@example.org/res", "bob@example.org", {"": "hello\nsecond line"},
    {}, "chat", '{"origin_id": "o1"}',
)  # fmt: skip


def make(mode: str, terminal: bool = False, quiet: bool = False) -> tuple[Output, io.StringIO]:
    stream = io.StringIO()
    return Output(mode, stream, terminal=terminal, quiet=quiet, width=100), stream


def test_json_prints_the_data_whatever_the_terminal() -> None:
    for terminal in (False, True):
        out, stream = make("json", terminal)
        out.show(ROWS, lambda: stream.write("not this"))  # noqa: B023
        assert json.loads(stream.getvalue()) == ROWS
        assert "\x1b" not in stream.getvalue()


def test_simple_table_is_tab_separated_without_header() -> None:
    out, stream = make("simple")
    out.table(ROWS, COLUMNS)
    assert stream.getvalue() == "bob@example.org\tBob\tfriends, work\n"


def test_default_is_plain_when_not_a_terminal() -> None:
    out, stream = make("default", terminal=False)
    assert not out.rich
    out.table(ROWS, COLUMNS)
    out.mapping({"jid": "alice@example.org", "connected": True})
    assert stream.getvalue() == (
        "bob@example.org\tBob\tfriends, work\njid: alice@example.org\nconnected: yes\n"
    )


def test_default_on_a_terminal_draws_tables_in_colour() -> None:
    out, stream = make("default", terminal=True)
    assert out.rich
    out.table(ROWS, COLUMNS)
    text = stream.getvalue()
    assert "\x1b[" in text  # colours
    assert "JID" in text and "bob@example.org" in text and "┃" in text  # header and box


def test_rich_escapes_markup_in_data() -> None:
    out, stream = make("default", terminal=True)
    out.items(["[bold]not markup[/bold]"])
    assert "[bold]not markup[/bold]" in stream.getvalue()


def test_auto_chooses_by_shape() -> None:
    out, stream = make("simple")
    out.show("a string")
    out.show(["one", "two"])
    out.show({"key": ["v1", "v2"]})
    out.show([{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    assert stream.getvalue() == "a string\none\ntwo\nkey: v1, v2\n1\t2\t\n3\t\t4\n"


def test_info_lines_are_not_data() -> None:
    for mode, quiet in (("json", False), ("simple", True), ("default", True)):
        out, stream = make(mode, quiet=quiet)
        out.info("profile created")
        assert stream.getvalue() == ""
    out, stream = make("simple")
    out.info("profile created")
    assert stream.getvalue() == "profile created\n"


def test_history_messages() -> None:
    msg = message_dict(HISTORY_ROW)
    assert msg == {
        "uid": "uid1",
        "timestamp": TS,
        "from": "alice@example.org/res",
        "to": "bob@example.org",
        "message": {"": "hello\nsecond line"},
        "subject": {},
        "type": "chat",
        "extra": {"origin_id": "o1"},
    }
    out, stream = make("simple")
    out.messages([msg, {**msg, "subject": {"": "news"}, "message": {"en": "hi", "fr": "salut"}}])
    assert stream.getvalue() == (
        "[2026-11-23 21:05:03] alice@example.org/res > bob@example.org: hello\n"
        "    second line\n"
        "[2026-11-23 21:05:03] alice@example.org/res > bob@example.org [news]: [en] hi\n"
        "    [fr] salut\n"
    )
    out, stream = make("default", terminal=True)
    out.messages([msg])
    assert "alice@example.org/res" in stream.getvalue() and "second line" in stream.getvalue()
    assert message_dict((*HISTORY_ROW[:7], "not json"))["extra"] == {"raw": "not json"}


def test_contacts_and_disco() -> None:
    contact = contact_dict(
        ("bob@example.org", {"name": "Bob", "to": "true", "from": "false", "ask": ""}, ["f"])
    )
    assert contact == {
        "jid": "bob@example.org", "name": "Bob", "to": True, "from": False, "ask": "",
        "groups": ["f"],
    }  # fmt: skip
    assert subscription_text(contact) == "to"
    assert subscription_text({**contact, "to": False, "ask": "subscribe"}) == "none (asked)"
    data = disco_dict(
        (["b", "a"], [("server", "im", "Prosody")], {"urn:x": [({"f": "v"}, ["v"])]}),
        [("pubsub.example.org", "", "Pubsub")],
    )
    assert data == {
        "features": ["a", "b"],
        "identities": [{"category": "server", "type": "im", "name": "Prosody"}],
        "extensions": {"urn:x": [{"fields": {"f": "v"}, "values": ["v"]}]},
        "items": [{"jid": "pubsub.example.org", "node": "", "name": "Pubsub"}],
    }
    assert disco_dict(None, []) == {"items": []}


def test_as_text_and_message_text() -> None:
    assert as_text(None) == "" and as_text(True) == "yes" and as_text([1, "a"]) == "1, a"
    assert as_text({"a": 1}) == "a=1"
    assert message_text({}) == "" and message_text({"": "x", "en": "y"}) == "x"
