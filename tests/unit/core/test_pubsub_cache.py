"""The pubsub cache on a fake stream, against a fake pubsub service answering the IQs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.memory.sqla_mapping import SyncState
from libervia.backend.plugins.plugin_xep_0059 import RSMRequest
from tests.conftest import aio, turns
from tests.unit.core.fakes import logged_in, started_host

ALICE = "alice@localhost/pc"
PS = "http://jabber.org/protocol/pubsub"
EVENT = "http://jabber.org/protocol/pubsub#event"
RSM = "http://jabber.org/protocol/rsm"
NS_NOTE = "urn:test:note"
SERVICE = JID("pubsub.localhost")
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


class FakePubsub:
    """Answers the pubsub IQs a client sent on a FakeStream. Items are kept in publication
    order (a republished item moves to the end), as Prosody does; with ``rsm`` False, RSM
    requests are ignored and the whole node is sent (Prosody 0.12)."""

    def __init__(self, stream: Any, rsm: bool = True) -> None:
        self.stream = stream
        self.rsm = rsm
        self.nodes: dict[str, list[tuple[str, str]]] = {}
        #: (request kind, node) of every IQ answered
        self.log: list[tuple[str, str]] = []
        #: request kinds kept unanswered (in ``held``) until :meth:`release`
        self.hold: set[str] = set()
        self.held: list[domish.Element] = []
        #: for each items request, how many item ids it named (0: a page or the whole node)
        self.asked_ids: list[int] = []

    def publish(self, node: str, item_id: str, text: str, ns: str = NS_NOTE) -> None:
        items = [i for i in self.nodes.setdefault(node, []) if i[0] != item_id]
        self.nodes[node] = [*items, (item_id, f"<note xmlns='{ns}'>{text}</note>")]

    def pump(self) -> None:
        for iq in self.stream.sent():
            if iq.name != "iq":
                continue
            pubsub = next(iq.elements(PS, "pubsub"), None)
            if pubsub is not None and any(child.name in self.hold for child in pubsub.elements(PS)):
                self.held.append(iq)
            else:
                self.stream.receive(self.answer(iq))

    def release(self) -> None:
        self.hold.clear()
        held, self.held = self.held, []
        for iq in held:
            self.stream.receive(self.answer(iq))

    def answer(self, iq: domish.Element) -> str:
        head = f"<iq type='result' id='{iq['id']}' from='pubsub.localhost' to='{ALICE}'>"
        query = next(iq.elements(), None)
        if query is not None and query.uri == DISCO_INFO:
            self.log.append(("disco#info", ""))
            feature = f"<feature var='{PS}#rsm'/>" if self.rsm else ""
            return f"{head}<query xmlns='{DISCO_INFO}'>{feature}</query></iq>"
        if query is not None and query.uri == DISCO_ITEMS:
            node = query.getAttribute("node", "")
            self.log.append(("disco#items", node))
            listed = "".join(  # newest first, as Prosody lists them
                f"<item jid='pubsub.localhost' name='{i}'/>"
                for i, _ in reversed(self.nodes.get(node, []))
            )
            return f"{head}<query xmlns='{DISCO_ITEMS}' node='{node}'>{listed}</query></iq>"
        pubsub = next(iq.elements(PS, "pubsub"))
        for child in pubsub.elements(PS):
            node = child.getAttribute("node", "")
            if child.name == "subscribe":
                self.log.append(("subscribe", node))
                return head + "</iq>"
            if child.name == "items":
                self.log.append(("items", node))
                self.asked_ids.append(len(list(child.elements(PS, "item"))))
                return head + self.items(node, child, pubsub) + "</iq>"
        raise AssertionError(f"unexpected request {iq.toXml()}")

    def items(self, node: str, items_el: domish.Element, pubsub: domish.Element) -> str:
        every = self.nodes.get(node, [])
        names = [i[0] for i in every]
        wanted = [i["id"] for i in items_el.elements(PS, "item")]
        rsm = next(pubsub.elements(RSM, "set"), None) if self.rsm else None
        start, chosen = 0, every
        if wanted:
            chosen = [i for i in every if i[0] in wanted]
        elif rsm is not None:
            values = {c.name: str(c) for c in rsm.elements()}
            size = int(values.get("max", len(every)))
            if "index" in values:
                start = int(values["index"])
            elif "after" in values:
                start = names.index(values["after"]) + 1
            elif "before" in values:
                end = names.index(values["before"]) if values["before"] else len(every)
                start = max(0, end - size)
                size = min(size, end - start)
            chosen = every[start : start + size]
        elif items_el.getAttribute("max_items"):
            chosen = every[-int(items_el["max_items"]) :]
        body = "".join(f"<item id='{i}'>{payload}</item>" for i, payload in chosen)
        meta = ""
        if rsm is not None and not chosen:  # an empty page: the count only (XEP-0059 §2.5)
            meta = f"<set xmlns='{RSM}'><count>{len(every)}</count></set>"
        elif rsm is not None:
            meta = (
                f"<set xmlns='{RSM}'><first index='{start}'>{chosen[0][0]}</first>"
                f"<last>{chosen[-1][0]}</last><count>{len(every)}</count></set>"
            )
        return f"<pubsub xmlns='{PS}'><items node='{node}'>{body}</items>{meta}</pubsub>"


def parse_note(item: domish.Element) -> dict[str, Any]:
    note = next(item.elements(NS_NOTE, "note"))
    text = str(note)
    if text == "boom":
        raise ValueError("unparsable note")
    return {"text": text, "length": len(text)}


async def started(tmp_path: Path, rsm: bool = True, **analyser: Any):
    host = await started_host(tmp_path)
    client, stream = await logged_in(host, "alice", ALICE)
    stream.sent()
    cache = host.plugins["PUBSUB_CACHE"]
    cache.register_analyser(
        {"name": "notes", "type": "note", "namespace": NS_NOTE, "to_sync": True,
         "parser": parse_note, **analyser}
    )  # fmt: skip
    return host, client, FakePubsub(stream, rsm), cache


async def run(service: FakePubsub, coro: Any) -> Any:
    """Run a call while the fake service answers."""
    task = asyncio.ensure_future(coro)
    for _ in turns():
        service.pump()
        if task.done():
            return task.result()
        await asyncio.sleep(0)
    raise AssertionError("the call never ended")


async def settle(service: FakePubsub, cache: Any, client: Any) -> None:
    """Until background synchronisations and queued notifications are done."""
    for _ in turns():
        service.pump()
        await asyncio.sleep(0)
        tail = client.extra.get("XEP-0060_events_tail")
        if not cache._syncing and (tail is None or tail.done()):
            service.pump()
            if not cache._syncing:
                return
    raise AssertionError("the cache never settled")


async def node_state(host: Any, node: str) -> SyncState | None:
    cached = await host.storage.get_pubsub_node("alice", SERVICE, node)
    return None if cached is None else cached.sync_state


def ids(page: Any) -> list[str]:
    return [i["id"] for i in page.items]


def event(service: FakePubsub, inner: str) -> None:
    service.stream.receive(
        f"<message from='pubsub.localhost' to='{ALICE}'><event xmlns='{EVENT}'>{inner}</event>"
        "</message>"
    )


@pytest.mark.parametrize("rsm", [True, False], ids=["service-rsm", "service-without-rsm"])
@aio
async def test_synchronised_node_is_read_from_the_database(tmp_path: Path, rsm: bool) -> None:
    host, client, service, cache = await started(tmp_path, rsm)
    ps = host.plugins["XEP-0060"]
    try:
        for n in range(7):
            service.publish("notes", f"n{n}", f"note {n}")
        first = await run(service, ps.get_items(client, SERVICE, "notes", 3))
        assert ids(first) == ["n4", "n5", "n6"] and not first.cached
        await settle(service, cache, client)
        assert await node_state(host, "notes") is SyncState.COMPLETED
        assert ("subscribe", "notes") in service.log
        asked = len(service.log)
        cached = await ps.get_items(client, SERVICE, "notes", 3)
        assert cached.cached and ids(cached) == ["n4", "n5", "n6"]
        assert service.stream.sent() == [] and len(service.log) == asked  # no IQ left
        # RSM paging from the cache equals paging from the service
        requests = (
            RSMRequest(2), RSMRequest(2, after="n1"), RSMRequest(3, after="n4"),
            RSMRequest(2, before=""), RSMRequest(2, before="n3"), RSMRequest(4, before="n2"),
            RSMRequest(2, index=3), RSMRequest(None, after="n2"), RSMRequest(9, after="n6"),
        )  # fmt: skip
        for request in requests:
            local = await ps.get_items(client, SERVICE, "notes", rsm=request)
            remote = await run(service, ps.get_items(client, SERVICE, "notes", rsm=request,
                                                     use_cache=False))  # fmt: skip
            assert ids(local) == ids(remote)
            assert local.rsm == remote.rsm
            assert [i.toXml() for i in local.items] == [i.toXml() for i in remote.items]
        last = await ps.get_items(client, SERVICE, "notes", rsm=RSMRequest(2, before=""))
        assert ids(last) == ["n5", "n6"] and last.complete
        # parsed data is searchable
        found = json.loads(
            await host.bridge.methods["ps_cache_search"](
                json.dumps({"parsed": [{"path": "text", "op": "eq", "value": "note 3"}]})
            )
        )
        assert [(f["item_id"], f["parsed"], f["profile"]) for f in found] == [
            ("n3", {"text": "note 3", "length": 6}, "alice")
        ]
    finally:
        await host.stop()


@aio
async def test_notifications_keep_the_cache_up_to_date(tmp_path: Path) -> None:
    host, client, service, cache = await started(tmp_path)
    ps = host.plugins["XEP-0060"]
    try:
        for n in range(3):
            service.publish("notes", f"n{n}", f"note {n}")
        await run(service, cache.synchronise(client, SERVICE, "notes"))
        event(service, f"<items node='notes'><item id='n3'><note xmlns='{NS_NOTE}'>new</note>"
                       "</item></items>")  # fmt: skip
        await settle(service, cache, client)
        page = await ps.get_items(client, SERVICE, "notes")
        assert page.cached and ids(page) == ["n0", "n1", "n2", "n3"]
        assert page.items[-1].toXml() == (
            f"<item xmlns='{PS}' id='n3'><note xmlns='{NS_NOTE}'>new</note></item>"
        )
        event(service, "<items node='notes'><retract id='n1'/></items>")
        await settle(service, cache, client)
        assert ids(await ps.get_items(client, SERVICE, "notes")) == ["n0", "n2", "n3"]
        signals = [a for s, a in host.bridge.emitted if s == "ps_event"]
        assert [(a[0], a[3]) for a in signals] == [("note", "items"), ("note", "retract")]
        event(service, "<purge node='notes'/>")
        await settle(service, cache, client)
        assert ids(await ps.get_items(client, SERVICE, "notes")) == []
        event(service, "<delete node='notes'/>")
        await settle(service, cache, client)
        assert await node_state(host, "notes") is None
    finally:
        await host.stop()


@aio
async def test_notifications_during_synchronisation_are_applied_after_it(tmp_path: Path) -> None:
    host, client, service, cache = await started(tmp_path)
    ps = host.plugins["XEP-0060"]
    try:
        for n in range(3):
            service.publish("notes", f"n{n}", f"note {n}")
        service.hold.add("subscribe")
        sync = asyncio.ensure_future(cache.synchronise(client, SERVICE, "notes"))
        for _ in turns():  # until the subscription is asked: the sync is running
            service.pump()
            if service.held:
                break
            await asyncio.sleep(0)
        assert cache._syncing
        event(service, "<items node='notes'><retract id='n0'/></items>")
        event(service, f"<items node='notes'><item id='n9'><note xmlns='{NS_NOTE}'>late</note>"
                       "</item></items>")  # fmt: skip
        for _ in range(100):
            await asyncio.sleep(0)
        service.release()
        await run(service, sync)
        await settle(service, cache, client)
        page = await ps.get_items(client, SERVICE, "notes")
        assert page.cached and ids(page) == ["n1", "n2", "n9"]
    finally:
        await host.stop()


@aio
async def test_failing_parser_marks_the_node_in_error_and_reads_go_to_the_service(
    tmp_path: Path, caplog
) -> None:
    host, client, service, cache = await started(tmp_path)
    ps = host.plugins["XEP-0060"]
    try:
        service.publish("notes", "ok", "fine")
        service.publish("notes", "bad", "boom")
        await run(service, ps.get_items(client, SERVICE, "notes"))
        await settle(service, cache, client)
        assert await node_state(host, "notes") is SyncState.ERROR
        assert "unparsable note" in caplog.text
        for _ in range(2):
            page = await run(service, ps.get_items(client, SERVICE, "notes"))
            assert ids(page) == ["ok", "bad"] and not page.cached
        assert caplog.text.count("not cached") == 1  # logged once
        with pytest.raises(NotFound):
            await host.bridge.methods["ps_cache_get"]("pubsub.localhost", "notes", -1, [], "",
                                                      "", "", "alice")  # fmt: skip
    finally:
        await host.stop()


@aio
async def test_nodes_without_analyser_or_to_sync_false_are_never_cached(tmp_path: Path) -> None:
    host, client, service, cache = await started(tmp_path)
    cache.register_analyser({"name": "drafts", "node": "drafts", "to_sync": False, "type": "d"})
    ps = host.plugins["XEP-0060"]
    try:
        service.publish("generic", "g1", "x", ns="urn:other")
        service.publish("drafts", "d1", "x", ns="urn:drafts")
        for node in ("generic", "drafts", "generic", "drafts"):
            page = await run(service, ps.get_items(client, SERVICE, node))
            assert not page.cached and len(page.items) == 1
        await settle(service, cache, client)
        assert await node_state(host, "generic") is None
        assert await node_state(host, "drafts") is SyncState.NO_SYNC
        assert ("subscribe", "generic") not in service.log
        assert ("subscribe", "drafts") not in service.log
    finally:
        await host.stop()


@aio
async def test_reconnection_check_resynchronises_changed_nodes(tmp_path: Path) -> None:
    host, client, service, cache = await started(tmp_path)
    ps = host.plugins["XEP-0060"]
    try:
        for n in range(3):
            service.publish("notes", f"n{n}", f"note {n}")
        service.publish("other", "o1", "stays")
        await run(service, cache.synchronise(client, SERVICE, "notes"))
        await run(service, cache.synchronise(client, SERVICE, "other"))
        assert await run(service, cache._check_nodes(client)) == 0  # nothing changed
        # while "offline": a new item, an edit of an old one and a retraction
        service.publish("notes", "n3", "written offline")
        service.nodes["notes"] = [i for i in service.nodes["notes"] if i[0] != "n0"]
        assert await run(service, cache._check_nodes(client)) == 1
        await settle(service, cache, client)
        page = await ps.get_items(client, SERVICE, "notes")
        assert page.cached and ids(page) == ["n1", "n2", "n3"]
    finally:
        await host.stop()


@aio
async def test_bridge_purge_reset_and_get(tmp_path: Path) -> None:
    host, client, service, cache = await started(tmp_path)
    methods = host.bridge.methods
    try:
        for n in range(4):
            service.publish("notes", f"n{n}", f"note {n}")
        await run(service, methods["ps_cache_sync"]("pubsub.localhost", "notes", "alice"))
        got = json.loads(
            await methods["ps_cache_get"](
                "pubsub.localhost", "notes", 2, [], "", '{"after": "n0"}', "", "alice"
            )  # fmt: skip
        )
        assert [i.split("id='")[1][:2] for i in got["items"]] == ["n1", "n2"]
        assert got["cached"] and got["rsm"] == {"first": "n1", "last": "n2", "index": 1,
                                                "count": 4}  # fmt: skip
        with pytest.raises(InvalidInput):
            await methods["ps_cache_purge"]('{"types": "note"}')
        with pytest.raises(InvalidInput):
            await methods["ps_cache_purge"]('{"colour": ["red"]}')
        assert await methods["ps_cache_purge"]('{"types": ["other"]}') == 0
        assert await methods["ps_cache_purge"]('{"types": ["note"], "profiles": ["alice"]}') == 4
        await methods["ps_cache_reset"]()
        assert await node_state(host, "notes") is None
        with pytest.raises(NotFound):
            await run(service, methods["ps_cache_sync"]("pubsub.localhost", "nothing", "alice"))
    finally:
        await host.stop()


def test_register_analyser_validation() -> None:
    from libervia.backend.plugins.plugin_pubsub_cache import PubsubCache

    cache = PubsubCache.__new__(PubsubCache)
    cache.analysers = []
    good: dict[str, Any] = {"name": "a", "node": "n", "to_sync": True}
    cache.register_analyser(good)
    bad: list[dict[str, Any]] = [
        {"node": "n"},
        {"name": "a", "node": "n"},
        {"name": "b", "node": "n", "colour": 1},
        {"name": "b", "node": 3},
        {"name": "b", "node": "n", "to_sync": "yes"},
        {"name": "b", "node": "n", "parser": "not callable"},
        {"name": "b", "node": "n", "node_match": "regex"},
        {"name": "b"},
    ]
    for analyser in bad:
        with pytest.raises(InvalidInput):
            cache.register_analyser(analyser)
    first: Callable[..., bool] = lambda *a: True  # noqa: E731
    cache.register_analyser({"name": "p", "node": "x", "node_match": "prefix", "priority": 5,
                             "match_cb": first})  # fmt: skip
    assert [a["name"] for a in cache.analysers] == ["p", "a"]
    assert cache.analyser_for_name("x/1")["name"] == "p"
    assert cache.analyser_for_name("n")["name"] == "a"
    assert cache.analyser_for_name("nn") is None


@aio
async def test_bad_page_request_goes_to_the_service_and_keeps_the_cache(tmp_path: Path) -> None:
    """An RSM request for an unknown item gets the service's own error; the node stays cached."""
    from libervia.backend.core.exceptions import XMPPError

    host, client, service, cache = await started(tmp_path, rsm=False)
    ps = host.plugins["XEP-0060"]
    try:
        service.publish("notes", "n0", "zero")
        await run(service, cache.synchronise(client, SERVICE, "notes"))
        with pytest.raises(XMPPError) as failure:
            await run(service, ps.get_items(client, SERVICE, "notes", rsm=RSMRequest(2, after="x")))
        assert failure.value.condition == "item-not-found"
        page = await ps.get_items(client, SERVICE, "notes")
        assert page.cached and ids(page) == ["n0"]
    finally:
        await host.stop()


@pytest.mark.parametrize("big", [False, True], ids=["whole-node", "by-ids"])
@aio
async def test_sync_and_pages_without_rsm(tmp_path: Path, monkeypatch, big: bool) -> None:
    """A service without RSM: a node up to WHOLE_NODE_MAX items is fetched whole (one
    request: Prosody's file storage loads the node for every id asked); a bigger one by ids,
    100 at a time (a big node in one stanza would exceed the stream parser's limits). A
    page asked of the service is placed with the ids; the last one is asked with max_items."""
    from libervia.backend.plugins import plugin_pubsub_cache, plugin_xep_0060

    if big:
        monkeypatch.setattr(plugin_xep_0060, "WHOLE_NODE_MAX", 200)
        monkeypatch.setattr(plugin_pubsub_cache, "WHOLE_NODE_MAX", 200)
    host, client, service, cache = await started(tmp_path, rsm=False)
    ps = host.plugins["XEP-0060"]
    try:
        for n in range(250):
            service.publish("notes", f"n{n:03}", f"note {n}")
        await run(service, cache.synchronise(client, SERVICE, "notes"))
        assert ("disco#items", "notes") in service.log
        # the analysis sample (max_items=1), then the whole node or three batches of ids
        assert service.asked_ids == ([0, 100, 100, 50] if big else [0, 0])
        page = await ps.get_items(client, SERVICE, "notes", rsm=RSMRequest(3, after="n100"))
        assert page.cached and ids(page) == ["n101", "n102", "n103"]
        asked = len(service.asked_ids)
        remote = await run(
            service,
            ps.get_items(
                client, SERVICE, "notes", rsm=RSMRequest(3, after="n100"), use_cache=False
            ),
        )
        assert ids(remote) == ids(page) and remote.rsm == page.rsm
        assert service.asked_ids[asked:] == ([3] if big else [0])
        last = await run(
            service,
            ps.get_items(client, SERVICE, "notes", rsm=RSMRequest(2, before=""), use_cache=False),
        )
        assert ids(last) == ["n248", "n249"] and last.rsm.count == 250 and last.complete
    finally:
        await host.stop()


@aio
async def test_search_limit_defaults_and_bounds(tmp_path: Path) -> None:
    """A search answers 100 items unless told otherwise, and never more than 10,000 (a whole
    cache would not fit in a D-Bus message)."""
    host, client, service, cache = await started(tmp_path)
    search = host.bridge.methods["ps_cache_search"]
    try:
        for n in range(120):
            service.publish("notes", f"n{n:03}", f"note {n}")
        await run(service, cache.synchronise(client, SERVICE, "notes"))
        assert len(json.loads(await search("{}"))) == 100
        assert len(json.loads(await search('{"limit": 7}'))) == 7
        for bad in ('{"limit": 0}', '{"limit": 10001}', '{"limit": "5"}', '{"limit": true}'):
            with pytest.raises(InvalidInput):
                await search(bad)
    finally:
        await host.stop()
