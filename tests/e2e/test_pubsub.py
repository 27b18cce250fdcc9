"""End to end: pubsub (XEP-0060), the pubsub cache and microblogging (XEP-0277) through the
bridge and ``li``, against a real Prosody: PEP for the blogs, the ``pubsub.localhost``
component for a generic node.

Prosody 0.12 facts these tests rely on (measured): items come oldest first and a republished
item moves to the end; RSM on pubsub items is ignored (the whole node is sent: pages are cut
by the client); explicit subscriptions work on PEP and on the component; only the admin
account may create nodes on the component.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from libervia.devserver import PUBSUB_ADMIN
from libervia.frontends.bridge.client import BridgeClient, BridgeError
from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.e2e.test_carbons_mam import RawClient
from tests.e2e.test_cli import li

pytestmark = pytest.mark.timeout(300)

BLOG = "urn:xmpp:microblog:0"
ATOM = "http://www.w3.org/2005/Atom"
COMPONENT = "pubsub.localhost"
POSTS = 30
PAGE = 7


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20) -> Any:
    """Await ``check()`` until it returns something true (BridgeError/AssertionError retry)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            result = await check()
        except (BridgeError, AssertionError):
            if loop.time() > end:
                raise
        else:
            if result:
                return result
            if loop.time() > end:
                raise AssertionError(f"still false after {timeout} s")
        await asyncio.sleep(0.05)


async def mb_get(b: BridgeClient, service: str, extra: dict[str, Any], max_items: int = -1):
    return json.loads(await b.mb_get(service, "", max_items, [], json.dumps(extra), "alice"))


async def cached_ids(b: BridgeClient, service: str, node: str = BLOG) -> list[str]:
    """The item ids in alice's cache (BridgeError NotFound when the node is not cached)."""
    got = json.loads(await b.ps_cache_get(service, node, -1, [], "", "", "", "alice"))
    assert got["cached"]
    return [item.split(" id='")[1].split("'")[0] for item in got["items"]]


def post(n: int) -> dict[str, Any]:
    return {
        "id": f"p{n:02}",
        "title": f"post {n}",
        "content": f"body of post {n}" + (" with a needle" if n == 7 else ""),
        "tags": ["even" if n % 2 == 0 else "odd"],
    }


async def setup_accounts(b: BridgeClient, prosody: Prosody) -> tuple[str, str]:
    await make_account(b, prosody, "adm", PUBSUB_ADMIN)
    alice = await make_account(b, prosody, "alice", unique("alice"))
    bob = await make_account(b, prosody, "bob", unique("bob"))
    for profile in ("adm", "alice", "bob"):
        await b.connect(profile, "", {})
    return alice, bob


@aio
async def test_blog_cached_followed_and_caught_up(
    prosody: Prosody, bus: DBusDaemon, tmp_path: Path
) -> None:
    daemon = Daemon(tmp_path, bus.address)
    daemon.start()
    raw: RawClient | None = None
    try:
        b = await daemon.bridge()
        alice, bob = await setup_accounts(b, prosody)
        await b.refresh()  # plugin signals
        events = Recorder(b, ["ps_event"])
        # bob's blog, readable by anyone (no roster needed)
        for n in range(POSTS):
            assert await b.mb_send("", "", json.dumps(post(n)), "bob") == f"p{n:02}"
        await b.ps_node_configuration_set("", BLOG, {"pubsub#access_model": "open"}, "bob")

        # a generic node on the component: no analyser, never cached
        generic = unique("generic")
        await b.ps_node_create(
            COMPONENT, generic, {"pubsub#max_items": "1000", "pubsub#access_model": "open"}, "adm"
        )
        for n in range(5):
            await b.ps_item_send(
                COMPONENT, generic, f"<n xmlns='urn:test'>{n}</n>", f"g{n}", "", "adm"
            )
        for _ in range(2):
            got = json.loads(await b.ps_items_get(COMPONENT, generic, 2, [], "", "", "alice"))
            assert not got["cached"] and len(got["items"]) == 2 and "g4" in got["items"][1]
        with pytest.raises(BridgeError) as failure:
            await cached_ids(b, COMPONENT, generic)
        assert failure.value.code == "NotFound"

        # first read: from the server; it starts the synchronisation of bob's blog
        first = await mb_get(b, bob, {}, 10)
        assert not first["cached"]
        assert [e["id"] for e in first["items"]] == [f"p{n:02}" for n in range(20, 30)]
        assert await until(lambda: cached_ids(b, bob)) == [f"p{n:02}" for n in range(POSTS)]
        # second read: from the database, even with the server frozen (no IQ can be answered)
        prosody.pause()
        try:
            second = await asyncio.wait_for(mb_get(b, bob, {}, 10), 5)
        finally:
            prosody.resume()
        assert second["cached"] and second["items"] == first["items"]

        # RSM paging from the cache equals paging from the server
        async def pages(use_cache: bool) -> list[Any]:
            seen, after = [], None
            while True:
                rsm: dict[str, Any] = {"max": PAGE, **({"after": after} if after else {})}
                page = await mb_get(b, bob, {"rsm": rsm, "use_cache": use_cache})
                assert page["cached"] is use_cache
                seen.append((page["items"], page["rsm"], page["complete"]))
                if page["complete"]:
                    return seen
                after = page["rsm"]["last"]

        assert await pages(True) == await pages(False)
        assert len(await pages(True)) == 5
        for rsm in ({"max": 4, "before": ""}, {"max": 3, "before": "p10"}, {"max": 5, "index": 9}):
            assert (await mb_get(b, bob, {"rsm": rsm}))["items"] == (
                await mb_get(b, bob, {"rsm": rsm, "use_cache": False})
            )["items"]

        # search: full text and parsed keys
        found = json.loads(
            await b.ps_cache_search(json.dumps({"fts": "needle", "profiles": ["alice"]}))
        )
        assert [(f["item_id"], f["node"], f["service"]) for f in found] == [("p07", BLOG, bob)]
        odd = json.loads(
            await b.ps_cache_search(
                json.dumps(
                    {
                        "types": ["blog"],
                        "limit": 100,
                        "parsed": [{"path": ["tags"], "op": "contains", "value": "odd"}],
                    }
                )
            )
        )
        assert sorted(f["item_id"] for f in odd) == [f"p{n:02}" for n in range(1, POSTS, 2)]
        titled = json.loads(
            await b.ps_cache_search(
                json.dumps({"parsed": [{"path": "title", "op": "eq", "value": "post 12"}]})
            )
        )
        assert [f["parsed"]["content"] for f in titled] == ["body of post 12"]

        # bob publishes and retracts: alice's cache follows the notifications
        await b.mb_send("", "", json.dumps(post(POSTS)), "bob")
        await events.wait("ps_event", lambda a: a[3] == "items" and a[1] == bob and a[5] == "alice")
        assert events.events[-1][1][0] == "blog"
        await b.mb_retract("", "", "p05", "bob")
        await until(lambda: _lacks(b, bob, "p05"))
        assert (await cached_ids(b, bob))[-1] == f"p{POSTS:02}"

        # the daemon stops; meanwhile bob (another device) publishes and retracts
        assert daemon.stop() == 0
        raw = await RawClient.login(prosody, bob, "xmpp-pass", "phone")
        await _raw_iq(
            raw,
            bob,
            f"<publish node='{BLOG}'><item id='offline'><entry xmlns='{ATOM}'>"
            "<title>written while alice was away</title><id>offline</id>"
            "<updated>2026-11-24T00:00:00Z</updated></entry></item></publish>",
        )
        await _raw_iq(raw, bob, f"<retract node='{BLOG}'><item id='p01'/></retract>")
        daemon.start()
        b = await daemon.bridge()
        await b.connect("alice", "", {})
        caught_up = await until(lambda: _has(b, bob, "offline"))
        assert "p01" not in caught_up and "p05" not in caught_up
        entries = (await mb_get(b, bob, {}, 1))["items"]
        assert entries[0]["title"] == "written while alice was away"

        # li reads the same cache
        shown = json.loads(
            li(bus.address, "blog", "get", "-s", bob, "-m", "2", "-p", "alice", "-O", "json").stdout
        )
        assert [e["id"] for e in shown["items"]] == [f"p{POSTS:02}", "offline"]
        searched = json.loads(
            li(bus.address, "pubsub", "cache", "search", "--fts", "needle", "-O", "json").stdout
        )
        assert [f["item_id"] for f in searched] == ["p07"]

        # purge, then deletion of the node
        await b.connect("bob", "", {})
        await b.ps_node_purge("", BLOG, "bob")
        await until(lambda: _empty(b, bob))
        await b.ps_node_delete("", BLOG, "bob")

        async def gone() -> bool:
            try:
                await cached_ids(b, bob)
            except BridgeError as e:
                return e.code == "NotFound"
            return False

        await until(gone)
    finally:
        if raw is not None:
            raw.close()
        assert daemon.stop() in (0, None), daemon.logs()


async def _lacks(b: BridgeClient, service: str, item_id: str) -> bool:
    return item_id not in await cached_ids(b, service)


async def _has(b: BridgeClient, service: str, item_id: str) -> list[str] | None:
    ids = await cached_ids(b, service)
    return ids if item_id in ids else None


async def _empty(b: BridgeClient, service: str) -> bool:
    return await cached_ids(b, service) == []


async def _raw_iq(raw: RawClient, to: str, inner: str) -> None:
    """Send a pubsub IQ set from a raw client and wait for its result."""
    from twisted.words.protocols.jabber.xmlstream import IQ

    from libervia.backend.tools import xml as xml_tools

    iq = IQ(raw.xs, "set")
    iq["to"] = to
    iq.addChild(
        xml_tools.parse(f"<pubsub xmlns='http://jabber.org/protocol/pubsub'>{inner}</pubsub>")
    )
    await asyncio.wait_for(iq.send().asFuture(asyncio.get_running_loop()), 10)


@aio
async def test_pubsub_errors_are_clear(prosody: Prosody, bus: DBusDaemon, tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, bus.address)
    daemon.start()
    try:
        b = await daemon.bridge()
        alice = await make_account(b, prosody, "alice", unique("alice"))
        await b.connect("alice", "", {})
        cases = [
            (b.ps_node_create(COMPONENT, "nope", {}, "alice"), "XMPPError", "forbidden"),
            (
                b.ps_items_get(COMPONENT, unique("missing"), -1, [], "", "", "alice"),
                "XMPPError",
                "item-not-found",
            ),
            (b.ps_item_send("", "n", "<unclosed>", "", "", "alice"), "InvalidInput", "payload"),
            (
                b.ps_items_get("", "n", -1, [], "", '{"rsm": {"max": "x"}}', "alice"),
                "InvalidInput",
                "rsm",
            ),
            (b.mb_send("", "", "{}", "alice"), "InvalidInput", ""),
            (b.ps_items_get("", "n", -1, [], "", "", "nobody"), "ProfileUnknown", ""),
        ]
        for call, code, text in cases:
            with pytest.raises(BridgeError) as failure:
                await call
            assert failure.value.code == code, failure.value
            assert text in failure.value.message
        # the daemon is still fine
        assert await b.is_connected("alice")
        await b.mb_send("", "", json.dumps({"title": "still here"}), "alice")
        own = json.loads(await b.mb_get(alice, "", -1, [], "", "alice"))
        assert [e["title"] for e in own["items"]] == ["still here"]
    finally:
        assert daemon.stop() == 0, daemon.logs()
