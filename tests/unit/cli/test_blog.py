"""``li blog`` against a fake bridge: the microblog plugin methods (``mb_send``, ``mb_get``,
``mb_retract``) called as the API declares them, and the entries printed for people and as
JSON."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from libervia.cli import base
from libervia.cli import constants as C
from libervia.cli.base import build_parser, parse_args
from libervia.cli.cmd_blog import print_entries
from libervia.cli.output import Output, format_time
from libervia.frontends.bridge.client import BridgeError
from tests.conftest import aio
from tests.unit.cli.test_pubsub import ERROR, Result, li
from tests.unit.cli.test_run import FakeBridge

PUBLISHED = 1790000000.0
ENTRIES = {
    "items": [
        {
            "id": "first-post",
            "title": "Hello",
            "content": "My first post.\nSecond line.",
            "author": {"name": "Alice", "jid": "alice@example.org", "uri": ""},
            "published": PUBLISHED,
            "updated": PUBLISHED,
            "tags": ["xmpp", "libervia"],
            "links": [],
            "comments": ["xmpp:alice@example.org?;node=comments-1"],
            "language": "en",
        },
        {
            "id": "second",
            "title": "",
            "content": "",
            "content_xhtml": "<p>rich</p>",
            "author": {"name": "", "jid": "alice@example.org", "uri": ""},
            "published": PUBLISHED,
            "updated": PUBLISHED + 3600,
            "tags": [],
            "links": [],
            "comments": [],
        },
    ],
    "rsm": {"first": "first-post", "last": "second", "index": 3, "count": 10},
    "complete": False,
    "cached": False,
}


class BlogBridge(FakeBridge):
    entries: dict[str, Any] = ENTRIES

    def _mb_send(self, service: str, node: str, data: str, profile: str) -> str:
        return json.loads(data).get("id", "new-id")

    def _mb_get(self, *args: Any) -> str:
        return json.dumps(self.entries)


@pytest.fixture(autouse=True)
def blog_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBridge.instances = []
    FakeBridge.fail_connect = None
    monkeypatch.setattr(BlogBridge, "entries", ENTRIES)
    monkeypatch.setattr(base, "BridgeClient", BlogBridge)


async def blog(*argv: str, **kwargs: Any) -> Result:
    return await li("blog", *argv, bridge=BlogBridge, **kwargs)


def sent(r: Result) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of the one mb_send call, and its data decoded."""
    (call,) = r.called("mb_send")
    return call, json.loads(call[2])


# --- li blog post --------------------------------------------------------------------------


@aio
async def test_post_from_arguments() -> None:
    """blog post: the words, title, tags, language and comments in mb_send's data."""
    r = await blog("post", "-t", "Hello", "--tag", "xmpp", "--tag", "libervia", "-l", "en",
                   "-C", "My", "first", "post")  # fmt: skip
    assert (r.code, r.err) == (0, "")
    call, data = sent(r)
    assert call[0:2] == ("", "") and call[3] == "alice"
    assert data == {
        "title": "Hello",
        "content": "My first post",
        "tags": ["xmpp", "libervia"],
        "language": "en",
        "comments": True,
    }
    assert [c[0] for c in r.plugin_calls] == ["mb_send"]
    assert r.out == "blog entry published\nnew-id\n"


@aio
async def test_post_words_around_options_and_json() -> None:
    """Words after options are content; -s, -n, -i passed on; -O json."""
    r = await blog("post", "hello", "-t", "T", "big", "world", "-s", "pubsub.example.org",
                   "-n", "urn:example:blog", "-i", "my-id", "-O", "json")  # fmt: skip
    call, data = sent(r)
    assert call[0:2] == ("pubsub.example.org", "urn:example:blog")
    assert data == {"id": "my-id", "title": "T", "content": "hello big world"}
    assert json.loads(r.out) == {
        "service": "pubsub.example.org",
        "node": "urn:example:blog",
        "item_id": "my-id",
    }


@aio
async def test_post_from_stdin() -> None:
    """Without words, the content is stdin (XHTML with --xhtml); a title alone is a post."""
    r = await blog("post", "-q", stdin="Line one\nLine two\n")
    _call, data = sent(r)
    assert data == {"content": "Line one\nLine two"}
    assert r.out == "new-id\n"
    r = await blog("post", "--xhtml", stdin="<p>Some <em>rich</em> text</p>")
    assert sent(r)[1] == {"content_xhtml": "<p>Some <em>rich</em> text</p>"}
    r = await blog("post", "-t", "Only a title")
    assert sent(r)[1] == {"title": "Only a title"}


@aio
async def test_empty_post_is_refused() -> None:
    """An empty entry is a usage error, and nothing is sent."""
    r = await blog("post", stdin=" \n")
    assert r.code == C.EXIT_USAGE and "nothing to post" in r.err
    assert not r.called("mb_send")


# --- li blog get ---------------------------------------------------------------------------


@aio
async def test_get_requests() -> None:
    """blog get: mb_get called with max_items, item ids and the extra dict."""
    r = await blog("get")
    assert r.code == 0
    assert r.plugin_calls == [("mb_get", ("", "", 10, [], "{}", "alice"))]
    r = await blog("get", "-s", "bob@example.org", "-n", "urn:example:blog", "-m", "5",
                   "--before")  # fmt: skip
    (call,) = r.called("mb_get")
    assert call[:4] == ("bob@example.org", "urn:example:blog", -1, [])
    assert json.loads(call[4]) == {"rsm": {"before": "", "max": 5}}
    r = await blog("get", "-i", "first-post", "--no-cache", "--order-by", "modification")
    (call,) = r.called("mb_get")
    assert call[2:4] == (-1, ["first-post"])
    assert json.loads(call[4]) == {"order_by": "modification", "use_cache": False}


@aio
async def test_get_prints_the_entries() -> None:
    """blog get prints each entry (title, date, author, tags, id, content), then the page."""
    r = await blog("get")
    assert r.out.splitlines() == [
        "# Hello",
        f"date: {format_time(PUBLISHED)}",
        "author: Alice <alice@example.org>",
        "tags: xmpp, libervia",
        "language: en",
        "comments: xmpp:alice@example.org?;node=comments-1",
        "id: first-post",
        "",
        "My first post.",
        "Second line.",
        "",
        f"date: {format_time(PUBLISHED)} (updated {format_time(PUBLISHED + 3600)})",
        "author: alice@example.org",
        "id: second",
        "",
        "<p>rich</p>",
        "2 items of 10 from index 3; pages: --before=first-post --after=second",
    ]
    r = await blog("get", "-O", "json")
    assert json.loads(r.out) == ENTRIES
    BlogBridge.entries = {"items": [], "complete": True}
    r = await blog("get")
    assert (r.code, r.out) == (0, "no blog entries\n")


@aio
async def test_get_on_a_terminal() -> None:
    """The rich output escapes the entries' text (no markup injection)."""
    stream = io.StringIO()
    out = Output("default", stream, terminal=True, width=100)
    entry = dict(ENTRIES["items"][0], title="[bold]not markup[/bold]")
    print_entries(out, [entry])
    text = stream.getvalue()
    assert "[bold]not markup[/bold]" in text and "alice@example.org" in text


# --- li blog delete ------------------------------------------------------------------------


@aio
async def test_delete() -> None:
    """blog delete asks first, then calls mb_retract."""
    r = await blog("delete", "first-post")
    assert r.code == C.EXIT_CANCELLED and not r.called("mb_retract")
    r = await blog("delete", "first-post", "-f")
    assert r.plugin_calls == [("mb_retract", ("", "", "first-post", "alice"))]
    assert r.out == "blog entry 'first-post' deleted\n"
    r = await blog("delete", "x", "-s", "bob@example.org", "-n", "urn:example:blog", "-f")
    assert r.called("mb_retract") == [("bob@example.org", "urn:example:blog", "x", "alice")]


@aio
async def test_errors() -> None:
    """Daemon errors keep their exit codes and hints."""
    r = await blog("get", errors={"mb_get": BridgeError(ERROR + "NotFound", "no such node")})
    assert (r.code, r.err) == (C.EXIT_NOT_FOUND, "li: error: no such node [NotFound]\n")
    r = await blog(
        "post", "hi", errors={"mb_send": BridgeError(ERROR + "NotConnected", "not connected")}
    )
    assert r.code == C.EXIT_BRIDGE_ERROR and "li profile connect" in r.err


def test_parsing() -> None:
    """Defaults, and content words starting with - after --."""
    args = parse_args(build_parser(), ["blog", "post", "-t", "T", "--", "-1", "and", "more"])
    assert args.content == ["-1", "and", "more"] and args.title == "T"
    args = parse_args(build_parser(), ["blog", "get"])
    assert (args.service, args.node, args.max, args.items) == ("", "", 10, [])
