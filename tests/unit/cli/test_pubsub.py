"""``li pubsub`` against a fake bridge: the options, the exact bridge calls (the pubsub and
pubsub cache plugin methods), the output (text and JSON), the payload read from stdin, and the
bad input refused before anything is sent."""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from libervia.cli import base
from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, build_parser, iter_commands, main, parse_args
from libervia.cli.cmd_pubsub_cache import order_arg, parsed_filter, parsed_path, search_query
from libervia.cli.output import format_time
from libervia.cli.pubsub_common import check_payload, fields_dict, page_text
from libervia.frontends.bridge.client import BridgeError
from tests.conftest import aio
from tests.unit.cli.test_run import FakeBridge

ERROR = "org.libervia.Libervia.Error."
#: the calls every command acting on a connected profile makes first
PROLOGUE = ("wait_ready", "profile_name_get", "is_connected")

ITEMS = {
    "service": "pubsub.example.org",
    "node": "news",
    "items": [
        "<item id='a'><note xmlns='urn:example:note'>one</note></item>",
        "<item id='b'><note xmlns='urn:example:note'>two</note></item>",
    ],
    "rsm": {"first": "a", "last": "b", "index": 0, "count": 5},
    "complete": False,
    "cached": True,
}


class PubsubBridge(FakeBridge):
    """The daemon's answers to the pubsub methods (the rest of FakeBridge as for every
    command); ``answers`` overrides them by method name."""

    answers: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        for name, answer in self.answers.items():
            setattr(self, f"_{name}", lambda *args, answer=answer: answer)

    def _ps_node_create(self, service: str, node: str, options: Any, profile: str) -> str:
        return node or "instant-1"

    def _ps_node_configuration_get(self, service: str, node: str, profile: str) -> Any:
        return {"pubsub#access_model": "open", "pubsub#max_items": "max"}

    def _ps_node_metadata_get(self, service: str, node: str, profile: str) -> str:
        return json.dumps({"pubsub#title": "News", "pubsub#type": "urn:example:note"})

    def _ps_item_send(self, *args: Any) -> str:
        return args[3] or "generated-id"

    def _ps_items_get(self, *args: Any) -> str:
        return json.dumps(ITEMS)

    def _ps_cache_get(self, *args: Any) -> str:
        return json.dumps(ITEMS)

    def _ps_subscribe(self, *args: Any) -> str:
        return json.dumps({"subid": "s1", "state": "subscribed"})

    def _ps_subscriptions_get(self, *args: Any) -> str:
        return json.dumps(
            [
                {
                    "service": "pubsub.example.org",
                    "node": "news",
                    "subscriber": "alice@example.org",
                    "state": "subscribed",
                    "subid": "s1",
                }
            ]
        )

    def _ps_affiliations_get(self, *args: Any) -> Any:
        return {"news": "owner", "blog": "publisher"}

    def _ps_cache_purge(self, purge_data: str) -> int:
        return 7

    def _ps_cache_search(self, query: str) -> str:
        return json.dumps(
            [
                {
                    "profile": "alice",
                    "service": "pubsub.example.org",
                    "node": "news",
                    "item_id": "a",
                    "created": 1790000000.0,
                    "updated": 1790000000.0,
                    "item": "<item id='a'><note xmlns='urn:example:note'>one</note></item>",
                    "parsed": None,
                }
            ]
        )


@pytest.fixture(autouse=True)
def pubsub_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBridge.instances = []
    FakeBridge.fail_connect = None
    monkeypatch.setattr(PubsubBridge, "answers", {})
    monkeypatch.setattr(base, "BridgeClient", PubsubBridge)


@dataclass
class Result:
    code: int
    out: str
    err: str
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for method, args in self.calls if method == name]

    @property
    def plugin_calls(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The calls after the prologue (connection, profile)."""
        return [c for c in self.calls if c[0] not in PROLOGUE]


async def li(
    *argv: str,
    stdin: str = "",
    errors: dict[str, BaseException] | None = None,
    bridge: type[FakeBridge] = PubsubBridge,
) -> Result:
    """Run ``li ARGV`` against the fake bridge, ``stdin`` as standard input."""
    args = parse_args(build_parser(), argv)
    stdout, stderr = io.StringIO(), io.StringIO()
    cli = Cli(args, stdout=stdout, stderr=stderr)
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    original_open = bridge.open

    async def open_with_errors(bus_address: str | None = None) -> FakeBridge:
        instance = await original_open(bus_address)
        instance.errors.update(errors or {})
        return instance

    bridge.open = open_with_errors  # type: ignore[method-assign,assignment]
    try:
        code = await cli.run()
    finally:
        sys.stdin = saved_stdin
        bridge.open = original_open  # type: ignore[method-assign]
    calls = FakeBridge.instances[-1].calls if FakeBridge.instances else []
    return Result(code, stdout.getvalue(), stderr.getvalue(), calls)


def parse(*argv: str) -> argparse.Namespace:
    return parse_args(build_parser(), argv)


# --- parsing -------------------------------------------------------------------------------


def test_fields_get_the_pubsub_prefix() -> None:
    """-f NAME VALUE: names without '#' get pubsub#, the others are kept."""
    args = parse("pubsub", "node", "create", "-n", "x", "-f", "max_items", "max", "-f",
                 "FORM#x", "1", "-f", "pubsub#title", "T")  # fmt: skip
    assert fields_dict(args.fields) == {
        "pubsub#max_items": "max",
        "FORM#x": "1",
        "pubsub#title": "T",
    }


def test_paths_values_and_orders() -> None:
    """--parsed and --order-by of a cache search turn into the query's filters and sort keys."""
    assert parsed_path("author.name") == ["author", "name"]
    assert parsed_path("tags.0") == ["tags", 0]
    with pytest.raises(ValueError):
        parsed_path("author..name")
    assert parsed_filter("n", "gt", "3") == {"path": ["n"], "op": "gt", "value": 3}
    assert parsed_filter("t", "in", '["a", "b"]')["value"] == ["a", "b"]
    assert parsed_filter("a.name", "eq", "Alice")["value"] == "Alice"  # not JSON: a string
    assert parsed_filter("a", "eq", '"3"')["value"] == "3"
    assert parsed_filter("a", "eq", "NaN")["value"] == "NaN"
    with pytest.raises(ValueError, match="not null"):
        parsed_filter("a", "eq", "null")
    assert parsed_filter("c", "exists", "true") == {"path": ["c"], "op": "exists"}
    assert parsed_filter("c", "exists", "false") == {"path": ["c"], "op": "not_exists"}
    assert parsed_filter("c", "not_exists", "true") == {"path": ["c"], "op": "not_exists"}
    with pytest.raises(ValueError, match="true or false"):
        parsed_filter("c", "exists", "")
    with pytest.raises(ValueError, match="unknown operator 'equals'"):
        parsed_filter("c", "equals", "1")
    assert order_arg("creation") == {"order": "creation", "direction": "asc"}
    assert order_arg("rank:desc") == {"order": "rank", "direction": "desc"}
    assert order_arg("parsed.author.name:desc") == {
        "path": ["author", "name"],
        "direction": "desc",
    }
    for bad in ("size", "author.name", "creation:up", "parsed."):
        with pytest.raises(argparse.ArgumentTypeError):
            order_arg(bad)


def test_search_query_from_the_options() -> None:
    """Every option of li pubsub cache search lands in the query, with its default limit."""
    args = parse(
        "pubsub", "cache", "search", "--fts", "hello world", "-t", "blog", "--subtype",
        "comments", "-n", "urn:xmpp:microblog:0", "-s", "a@x", "-s", "b@x", "--profile",
        "alice", "-i", "id1", "--parsed", "author.name", "eq", "Alice", "--parsed",
        "tags", "contains", "xmpp", "--parsed", "published", "between", "[1, 2]",
        "--parsed", "comments", "exists", "false", "--order-by", "parsed.published:desc",
        "--order-by", "item_id", "--index", "40", "--limit", "10",
    )  # fmt: skip
    assert search_query(args) == {
        "profiles": ["alice"],
        "services": ["a@x", "b@x"],
        "nodes": ["urn:xmpp:microblog:0"],
        "types": ["blog"],
        "subtypes": ["comments"],
        "names": ["id1"],
        "fts": "hello world",
        "parsed": [
            {"path": ["author", "name"], "op": "eq", "value": "Alice"},
            {"path": ["tags"], "op": "contains", "value": "xmpp"},
            {"path": ["published"], "op": "between", "value": [1, 2]},
            {"path": ["comments"], "op": "not_exists"},
        ],
        "order-by": [
            {"path": ["published"], "direction": "desc"},
            {"order": "item_id", "direction": "asc"},
        ],
        "index": 40,
        "limit": 10,
    }
    assert search_query(parse("pubsub", "cache", "search")) == {"limit": 20}
    assert search_query(parse("pubsub", "cache", "search", "--limit", "0")) == {}


@pytest.mark.parametrize(
    "argv",
    [
        ("pubsub", "get"),  # -n is required
        ("pubsub", "get", "-n", "x", "--before=a", "--after=b"),
        ("pubsub", "get", "-n", "x", "--index", "1", "--after=b"),
        ("pubsub", "get", "-n", "x", "-m", "-1"),
        ("pubsub", "get", "-n", "x", "--order-by", "size"),
        ("pubsub", "delete", "-n", "x"),  # -i is required
        ("pubsub", "node", "create", "-f", "max_items"),  # NAME VALUE
        ("pubsub", "cache", "search", "--parsed", "a", "eq"),
        ("pubsub", "cache", "search", "--order-by", "size"),
        ("pubsub", "cache", "purge", "--updated-before", "yesterday"),
        ("pubsub", "cache", "reset", "-p", "alice"),  # the cache is not per profile
    ],
)
def test_usage_errors(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options are usage errors (exit code 2, the usage printed)."""
    assert main(list(argv)) == C.EXIT_USAGE
    assert "usage: li" in capsys.readouterr().err


def test_unknown_parsed_operator_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --parsed operator is refused by the parser, naming the known ones."""
    assert main(["pubsub", "cache", "search", "--parsed", "author.name", "is", "x"]) == 2
    err = capsys.readouterr().err
    assert "argument --parsed: unknown operator 'is' (known: eq, ne" in err
    assert main(["pubsub", "cache", "search", "--parsed", "x", "exists", "maybe"]) == 2
    assert "exists takes true or false as VALUE" in capsys.readouterr().err


def test_examples_parse() -> None:
    """Every example of li pubsub and li blog is a valid command line."""
    """Every example of li pubsub and li blog is a valid command line."""
    seen = 0
    for path, cls in iter_commands():
        if path[0] not in ("pubsub", "blog") or not issubclass(cls, Command):
            continue
        for line, _what in cls.examples:
            command = line.split("| ")[-1].split(" < ")[0]
            words = shlex.split(command)
            assert words[0] == "li", line
            args = parse(*words[1:])
            assert isinstance(args._command, cls), line
            seen += 1
    assert seen >= 30


def test_check_payload() -> None:
    """The payload of li pubsub set must be one well-formed XML element."""
    note = "<note xmlns='urn:example:note'>hi</note>"
    assert check_payload(f"\n{note}\n") == note
    assert check_payload(f"<?xml version='1.0' encoding='utf-8'?>\n{note}") == note
    for bad in ("", "  \n", "hello", "<a><b></a>", f"{note}{note}", "<a>&nope;</a>"):
        with pytest.raises(base.CommandError) as raised:
            check_payload(bad)
        assert raised.value.exit_code == C.EXIT_USAGE


def test_page_text() -> None:
    """The line after the items tells the count, the index, the cache and the paging options."""
    assert page_text(ITEMS) == (
        "2 items of 5 from index 0 (from the cache); pages: --before=a --after=b"
    )
    assert page_text({"items": ["<item id='a'/>"], "complete": True}) == "1 item"
    assert page_text({"items": [], "rsm": {"count": 0}}) == "0 items of 0"


# --- li pubsub node ------------------------------------------------------------------------


@aio
async def test_node_create() -> None:
    """node create: the fields as an a{ss} form; the node's name (maybe the service's) printed."""
    r = await li("pubsub", "node", "create", "-n", "notes", "-f", "access_model", "open")
    assert (r.code, r.err) == (0, "")
    assert r.calls[:3] == [
        ("wait_ready", ()),
        ("profile_name_get", ("@DEFAULT@",)),
        ("is_connected", ("alice",)),
    ]
    assert r.plugin_calls == [
        ("ps_node_create", ("", "notes", {"pubsub#access_model": "open"}, "alice"))
    ]
    assert r.out == "node 'notes' on your PEP service created\nnotes\n"
    r = await li("pubsub", "node", "create", "-s", "pubsub.example.org", "-q", "-p", "bob", "-c")
    assert r.code == 0 and r.out == "instant-1\n"
    assert r.called("ps_node_create") == [("pubsub.example.org", "", {}, "bob")]
    r = await li("pubsub", "node", "create", "-s", "ps.x", "-n", "n", "-O", "json")
    assert json.loads(r.out) == {"service": "ps.x", "node": "n"}


@aio
async def test_node_delete_and_purge_ask_first() -> None:
    """node delete and purge ask for confirmation, then call the daemon."""
    for command, method in (("delete", "ps_node_delete"), ("purge", "ps_node_purge")):
        r = await li("pubsub", "node", command, "-n", "notes")
        assert r.code == C.EXIT_CANCELLED and "add -f" in r.err
        assert not r.called(method)
        r = await li("pubsub", "node", command, "-s", "ps.x", "-n", "notes", "-f")
        assert r.code == 0 and r.plugin_calls == [(method, ("ps.x", "notes", "alice"))]
        assert r.out.startswith("node 'notes' on ps.x ")


@aio
async def test_node_info() -> None:
    """node info: configuration and metadata, as text and JSON, or one of them."""
    r = await li("pubsub", "node", "info", "-n", "news", "-O", "simple")
    assert r.code == 0
    assert r.plugin_calls == [
        ("ps_node_configuration_get", ("", "news", "alice")),
        ("ps_node_metadata_get", ("", "news", "alice")),
    ]
    assert r.out.splitlines() == [
        "configuration:",
        "  pubsub#access_model: open",
        "  pubsub#max_items: max",
        "metadata:",
        "  pubsub#title: News",
        "  pubsub#type: urn:example:note",
    ]
    r = await li("pubsub", "node", "info", "-n", "news", "-O", "json")
    assert json.loads(r.out) == {
        "configuration": {"pubsub#access_model": "open", "pubsub#max_items": "max"},
        "metadata": {"pubsub#title": "News", "pubsub#type": "urn:example:note"},
    }
    r = await li("pubsub", "node", "info", "-n", "news", "-t", "metadata", "-O", "json")
    assert [c[0] for c in r.plugin_calls] == ["ps_node_metadata_get"]
    assert list(json.loads(r.out)) == ["metadata"]


# --- li pubsub set/get/delete ---------------------------------------------------------------


NOTE = "<note xmlns='urn:example:note'>hi</note>"


@aio
async def test_set_reads_the_payload_from_stdin() -> None:
    """pubsub set sends the payload read from stdin, the id and the publish options."""
    r = await li("pubsub", "set", "-n", "notes", stdin=NOTE + "\n")
    assert (r.code, r.err) == (0, "")
    assert r.plugin_calls == [("ps_item_send", ("", "notes", NOTE, "", "{}", "alice"))]
    assert r.out == "item published on the node 'notes' on your PEP service\ngenerated-id\n"
    r = await li(
        "pubsub", "set", "-s", "ps.x", "-n", "news", "-i", "first", "-f", "max_items", "max",
        "-O", "json", stdin=NOTE,
    )  # fmt: skip
    (call,) = r.called("ps_item_send")
    assert call[:4] == ("ps.x", "news", NOTE, "first") and call[5] == "alice"
    assert json.loads(call[4]) == {"publish_options": {"pubsub#max_items": "max"}}
    assert json.loads(r.out) == {"service": "ps.x", "node": "news", "item_id": "first"}


@pytest.mark.parametrize("payload", ["", "just text", "<note>unclosed", f"{NOTE}<b/>"])
@aio
async def test_set_refuses_bad_xml_before_calling_the_daemon(payload: str) -> None:
    """A payload that is not one XML element is a usage error, and nothing is sent."""
    r = await li("pubsub", "set", "-n", "notes", stdin=payload)
    assert r.code == C.EXIT_USAGE and r.out == ""
    assert r.err.startswith("li: error: ") and r.err.count("\n") == 1
    assert "XML" in r.err
    assert not r.called("ps_item_send")


@aio
async def test_get_requests() -> None:
    """pubsub get: max_items, item ids and the extra dict (RSM, order, cache) as declared."""
    r = await li("pubsub", "get", "-n", "news")
    assert r.plugin_calls == [("ps_items_get", ("", "news", 10, [], "", "{}", "alice"))]
    r = await li("pubsub", "get", "-n", "news", "-m", "0", "--order-by", "creation", "--no-cache")
    (call,) = r.called("ps_items_get")
    assert call[2] == -1
    assert json.loads(call[5]) == {"order_by": "creation", "use_cache": False}
    # paging: the page size goes in the RSM request
    for options, rsm in (
        (("--before",), {"before": "", "max": 20}),
        (("--before=-x1",), {"before": "-x1", "max": 20}),
        (("--after", "b"), {"after": "b", "max": 20}),
        (("--index", "40"), {"index": 40, "max": 20}),
    ):
        r = await li("pubsub", "get", "-s", "ps.x", "-n", "news", "-m", "20", *options)
        (call,) = r.called("ps_items_get")
        assert call[:5] == ("ps.x", "news", -1, [], ""), options
        assert json.loads(call[5]) == {"rsm": rsm}, options
    r = await li("pubsub", "get", "-n", "news", "-i", "a", "-i", "b")
    assert r.called("ps_items_get") == [("", "news", -1, ["a", "b"], "", "{}", "alice")]
    r = await li("pubsub", "get", "-n", "news", "-i", "a", "--after", "b")
    assert r.code == C.EXIT_USAGE and "-i cannot be combined" in r.err
    assert not r.called("ps_items_get")


@aio
async def test_get_prints_the_items_and_the_page() -> None:
    """pubsub get prints the items' XML and the paging line (not with -q), or the JSON dict."""
    r = await li("pubsub", "get", "-n", "news")
    assert r.code == 0
    assert r.out.splitlines() == [
        *ITEMS["items"],
        "2 items of 5 from index 0 (from the cache); pages: --before=a --after=b",
    ]
    r = await li("pubsub", "get", "-n", "news", "-q")
    assert r.out.splitlines() == ITEMS["items"]
    r = await li("pubsub", "get", "-n", "news", "-O", "json")
    assert json.loads(r.out) == ITEMS


@aio
async def test_delete_retracts_the_item() -> None:
    """pubsub delete asks first, then retracts the item (--notify passed on)."""
    r = await li("pubsub", "delete", "-n", "news", "-i", "a")
    assert r.code == C.EXIT_CANCELLED and not r.called("ps_item_retract")
    r = await li("pubsub", "delete", "-n", "news", "-i", "a", "-f")
    assert r.plugin_calls == [("ps_item_retract", ("", "news", "a", False, "alice"))]
    assert r.out == "item 'a' deleted\n"
    r = await li("pubsub", "delete", "-s", "ps.x", "-n", "news", "-i", "a", "--notify", "-f")
    assert r.called("ps_item_retract") == [("ps.x", "news", "a", True, "alice")]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("NotFound", C.EXIT_NOT_FOUND),
        ("XMPPError", C.EXIT_BRIDGE_ERROR),
        ("PermissionDenied", C.EXIT_CANCELLED),
        ("Timeout", C.EXIT_TIMEOUT),
        ("InvalidInput", C.EXIT_BRIDGE_ERROR),
    ],
)
@aio
async def test_bridge_errors_map_to_the_exit_codes(error: str, code: int) -> None:
    """Daemon errors are one line with their code, and the usual exit codes."""
    failure = BridgeError(ERROR + error, "item-not-found\non the node")
    r = await li("pubsub", "get", "-n", "news", errors={"ps_items_get": failure})
    assert r.code == code and r.out == ""
    assert r.err == f"li: error: item-not-found on the node [{error}]\n"


# --- subscriptions, affiliations -----------------------------------------------------------


@aio
async def test_subscribe_and_unsubscribe() -> None:
    """subscribe sends the serialised options and tells the state; unsubscribe."""
    r = await li("pubsub", "subscribe", "-s", "ps.x", "-n", "news", "-f", "deliver", "false")
    assert r.code == 0
    (call,) = r.called("ps_subscribe")
    assert call[:2] == ("ps.x", "news") and call[3] == "alice"
    assert json.loads(call[2]) == {"pubsub#deliver": "false"}
    assert r.out == "subscribed to the node 'news' on ps.x (subscription id s1)\n"
    r = await li("pubsub", "subscribe", "-s", "ps.x", "-n", "news", "-O", "json")
    assert r.called("ps_subscribe") == [("ps.x", "news", "{}", "alice")]
    assert json.loads(r.out) == {"subid": "s1", "state": "subscribed"}
    r = await li("pubsub", "unsubscribe", "-s", "ps.x", "-n", "news")
    assert r.plugin_calls == [("ps_unsubscribe", ("ps.x", "news", "alice"))]
    assert r.out == "unsubscribed from the node 'news' on ps.x\n"


@aio
async def test_subscriptions_and_affiliations() -> None:
    """subscriptions and affiliations as tab-separated rows or JSON."""
    r = await li("pubsub", "subscriptions", "-s", "pubsub.example.org")
    assert r.plugin_calls == [("ps_subscriptions_get", ("pubsub.example.org", "", "alice"))]
    assert r.out == "pubsub.example.org\tnews\talice@example.org\tsubscribed\ts1\n"
    r = await li("pubsub", "subscriptions", "-n", "news", "-O", "json")
    assert r.called("ps_subscriptions_get") == [("", "news", "alice")]
    assert json.loads(r.out)[0]["subid"] == "s1"
    PubsubBridge.answers["ps_subscriptions_get"] = ""
    r = await li("pubsub", "subscriptions")
    assert (r.code, r.out) == (0, "no subscriptions\n")
    r = await li("pubsub", "affiliations", "-s", "ps.x")
    assert r.plugin_calls == [("ps_affiliations_get", ("ps.x", "", "alice"))]
    assert r.out == "blog\tpublisher\nnews\towner\n"
    r = await li("pubsub", "affiliations", "-O", "json")
    assert json.loads(r.out) == {"news": "owner", "blog": "publisher"}


# --- li pubsub cache -----------------------------------------------------------------------


@aio
async def test_cache_get_and_sync() -> None:
    """cache get sends the RSM request apart from the extra dict; cache sync."""
    r = await li("pubsub", "cache", "get", "-n", "news", "--after", "a", "-m", "5",
                 "--order-by", "modification")  # fmt: skip
    assert r.code == 0
    assert [c[0] for c in r.plugin_calls] == ["ps_cache_get"]
    (call,) = r.called("ps_cache_get")
    assert call[:5] == ("", "news", -1, [], "") and call[7] == "alice"
    assert json.loads(call[5]) == {"after": "a", "max": 5}
    assert json.loads(call[6]) == {"order_by": "modification"}
    assert r.out.splitlines()[:2] == ITEMS["items"]
    r = await li("pubsub", "cache", "get", "-s", "ps.x", "-n", "news", "-O", "json")
    assert r.called("ps_cache_get") == [("ps.x", "news", 10, [], "", "", "{}", "alice")]
    assert json.loads(r.out) == ITEMS
    r = await li("pubsub", "cache", "sync", "-s", "ps.x", "-n", "news")
    assert r.plugin_calls == [("ps_cache_sync", ("ps.x", "news", "alice"))]
    assert r.out == "node 'news' on ps.x synchronised\n"


@aio
async def test_cache_purge_and_reset() -> None:
    """cache purge serialises its filters (everything only after confirmation); cache reset
    asks first; neither resolves a profile."""
    r = await li(
        "pubsub", "cache", "purge", "--profile", "alice", "-t", "blog", "--subtype", "c",
        "-s", "ps.x", "-n", "news", "--created-before", "1700000000", "--updated-before",
        "1800000000",
    )  # fmt: skip
    assert r.code == 0
    # the cache is shared by the profiles: no profile is resolved
    assert [c[0] for c in r.calls] == ["wait_ready", "ps_cache_purge"]
    (call,) = r.called("ps_cache_purge")
    assert json.loads(call[0]) == {
        "profiles": ["alice"],
        "types": ["blog"],
        "subtypes": ["c"],
        "services": ["ps.x"],
        "nodes": ["news"],
        "created_before": 1700000000.0,
        "updated_before": 1800000000.0,
    }
    # everything: asked first
    r = await li("pubsub", "cache", "purge")
    assert r.code == C.EXIT_CANCELLED and not r.called("ps_cache_purge")
    r = await li("pubsub", "cache", "purge", "-f")
    assert r.called("ps_cache_purge") == [("{}",)]
    assert r.out == "7 cached items removed\n"
    r = await li("pubsub", "cache", "reset")
    assert r.code == C.EXIT_CANCELLED and "add -f" in r.err
    assert not r.called("ps_cache_reset")
    r = await li("pubsub", "cache", "reset", "--force")
    assert r.code == 0 and r.calls == [("wait_ready", ()), ("ps_cache_reset", ())]
    assert r.out == "pubsub cache reset\n"


@aio
async def test_cache_search() -> None:
    """cache search sends the query and prints a table, the XML (--xml) or JSON."""
    r = await li("pubsub", "cache", "search", "--fts", "one", "--parsed", "n", "gte", "2")
    assert r.code == 0 and [c[0] for c in r.calls] == ["wait_ready", "ps_cache_search"]
    (call,) = r.called("ps_cache_search")
    assert json.loads(call[0]) == {
        "fts": "one",
        "parsed": [{"path": ["n"], "op": "gte", "value": 2}],
        "limit": 20,
    }
    assert r.out == f"{format_time(1790000000.0)}\talice\tpubsub.example.org\tnews\ta\n"
    r = await li("pubsub", "cache", "search", "--xml")
    assert r.out == "<item id='a'><note xmlns='urn:example:note'>one</note></item>\n"
    r = await li("pubsub", "cache", "search", "-O", "json")
    assert json.loads(r.out)[0]["item_id"] == "a"
    PubsubBridge.answers["ps_cache_search"] = "[]"
    r = await li("pubsub", "cache", "search", "--fts", "nothing")
    assert (r.code, r.out) == (0, "no items found\n")
