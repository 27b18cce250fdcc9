"""XEP-0060 (+ XEP-0059 paging) on a fake stream: literal XML in and out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from twisted.words.protocols.jabber.jid import JID
from wokkel.disco import DiscoFeature, DiscoInfo

from libervia.backend.core.exceptions import InvalidInput, XMPPError
from libervia.backend.plugins.plugin_xep_0059 import RSMRequest, RSMResponse
from libervia.backend.plugins.plugin_xep_0060 import ItemsResult
from libervia.backend.tools import xml as xml_tools
from tests.conftest import aio, turns
from tests.unit.core.fakes import logged_in, started_host

ALICE = "alice@localhost/pc"
PS = "http://jabber.org/protocol/pubsub"
OWNER = "http://jabber.org/protocol/pubsub#owner"
EVENT = "http://jabber.org/protocol/pubsub#event"
RSM = "http://jabber.org/protocol/rsm"
SERVICE = JID("pubsub.localhost")


async def started(tmp_path: Path):
    host = await started_host(tmp_path)
    client, stream = await logged_in(host, "alice", ALICE)
    stream.sent()  # the initial presence
    # the service pages with RSM (the other case: tests/unit/core/test_pubsub_cache.py)
    info = DiscoInfo()
    info.append(DiscoFeature("http://jabber.org/protocol/pubsub#rsm"))
    host.plugins["XEP-0030"].cache_infos(client, SERVICE, info)
    return host, client, stream, host.plugins["XEP-0060"]


async def request(stream, coro_or_task):
    """Start a call, return (task, the stanza it sent as XML, its id)."""
    task = asyncio.ensure_future(coro_or_task)
    for _ in turns():  # the cache's trigger reads the database (a thread) first
        await asyncio.sleep(0)
        sent = stream.sent_xml()
        if sent:
            assert len(sent) == 1, sent
            (xml,) = sent
            return task, xml, xml.split("id='")[1].split("'")[0]
    raise AssertionError("nothing sent")


def result(iq_id: str, inner: str = "", sender: str = "pubsub.localhost") -> str:
    return f"<iq type='result' id='{iq_id}' from='{sender}' to='{ALICE}'>{inner}</iq>"


@aio
async def test_create_node_with_options_and_instant_node(tmp_path: Path) -> None:
    host, client, stream, ps = await started(tmp_path)
    try:
        task, sent, iq_id = await request(
            stream, ps.create_node(client, SERVICE, "news", {"pubsub#max_items": "max"})
        )
        assert sent == (
            f"<iq type='set' to='pubsub.localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            "<create node='news'/><configure><x xmlns='jabber:x:data' type='submit'>"
            "<field type='hidden' var='FORM_TYPE'>"
            "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"
            "<field var='pubsub#max_items'><value>max</value></field></x></configure>"
            "</pubsub></iq>"
        )
        stream.receive(result(iq_id))
        assert await task == "news"
        # instant node: the service chooses the name
        task, sent, iq_id = await request(stream, ps.create_node(client, SERVICE, None))
        assert f"<pubsub xmlns='{PS}'><create/></pubsub>" in sent
        stream.receive(result(iq_id, f"<pubsub xmlns='{PS}'><create node='inst-1'/></pubsub>"))
        assert await task == "inst-1"
    finally:
        await host.stop()


@aio
async def test_publish_with_publish_options_to_own_pep(tmp_path: Path) -> None:
    host, client, stream, ps = await started(tmp_path)
    try:
        payload = xml_tools.parse("<entry xmlns='urn:test'>hello</entry>")
        task, sent, iq_id = await request(
            stream, ps.send_item(client, None, "urn:test", payload, None, {"pubsub#max_items": 10})
        )
        assert sent == (
            f"<iq type='set' to='alice@localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            "<publish node='urn:test'><item><entry xmlns='urn:test'>hello</entry></item>"
            "</publish><publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field type='hidden' var='FORM_TYPE'>"
            "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
            "<field var='pubsub#max_items'><value>10</value></field></x></publish-options>"
            "</pubsub></iq>"
        )
        stream.receive(
            result(
                iq_id,
                f"<pubsub xmlns='{PS}'><publish node='urn:test'><item id='gen-1'/></publish>"
                "</pubsub>",
                "alice@localhost",
            )
        )
        assert await task == "gen-1"
        # no id in the answer and none given: an error, not a silent empty id
        task, sent, iq_id = await request(stream, ps.send_item(client, None, "urn:test", payload))
        stream.receive(result(iq_id, sender="alice@localhost"))
        with pytest.raises(XMPPError):
            await task
    finally:
        await host.stop()


@aio
async def test_items_with_rsm_and_metadata(tmp_path: Path) -> None:
    host, client, stream, ps = await started(tmp_path)
    try:
        task, sent, iq_id = await request(
            stream, ps.get_items(client, SERVICE, "news", 2, rsm=RSMRequest(after="i3"))
        )
        assert sent == (
            f"<iq type='get' to='pubsub.localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            f"<items node='news'/><set xmlns='{RSM}'><max>2</max><after>i3</after></set>"
            "</pubsub></iq>"
        )
        stream.receive(
            result(
                iq_id,
                f"<pubsub xmlns='{PS}'><items node='news'><item id='i2'><p xmlns='urn:x'>2</p>"
                "</item><item id='i1'><p xmlns='urn:x'>1</p></item></items>"
                f"<set xmlns='{RSM}'><first index='2'>i2</first><last>i1</last>"
                "<count>4</count></set></pubsub>",
            )
        )
        page = await task
        assert [i["id"] for i in page.items] == ["i2", "i1"]
        assert page.rsm == RSMResponse(first="i2", last="i1", index=2, count=4)
        assert page.complete is True
        assert page.cached is False
        # max_items without RSM, and item ids
        task, sent, iq_id = await request(stream, ps.get_items(client, SERVICE, "news", 5))
        assert "<items node='news' max_items='5'/>" in sent
        stream.receive(result(iq_id, f"<pubsub xmlns='{PS}'><items node='news'/></pubsub>"))
        assert (await task).items == []
        task, sent, iq_id = await request(
            stream, ps.get_items(client, SERVICE, "news", item_ids=["a", "b"])
        )
        assert "<items node='news'><item id='a'/><item id='b'/></items>" in sent
        stream.receive(result(iq_id, f"<pubsub xmlns='{PS}'/>"))
        await task
    finally:
        await host.stop()


@aio
async def test_items_trigger_answers_without_the_network(tmp_path: Path) -> None:
    host, client, stream, ps = await started(tmp_path)
    seen = []

    def from_cache(client, request):
        seen.append((request.service, request.node, request.max_items, request.rsm))
        if request.node == "cached":
            request.result = ItemsResult([], cached=True)
            return False
        return True

    host.trigger.add("XEP-0060_items", from_cache)
    try:
        page = await ps.get_items(client, SERVICE, "cached", 3, rsm=RSMRequest(before=""))
        assert page.cached is True
        assert stream.sent() == []
        assert seen == [(SERVICE, "cached", 3, RSMRequest(before=""))]
        # use_cache=False: the trigger is not even asked
        task, sent, iq_id = await request(
            stream, ps.get_items(client, SERVICE, "cached", use_cache=False)
        )
        stream.receive(result(iq_id, f"<pubsub xmlns='{PS}'/>"))
        assert (await task).cached is False
        assert len(seen) == 1
    finally:
        await host.stop()


@aio
async def test_owner_requests_and_errors(tmp_path: Path) -> None:
    host, client, stream, ps = await started(tmp_path)
    try:
        task, sent, iq_id = await request(stream, ps.purge_node(client, SERVICE, "news"))
        assert f"<pubsub xmlns='{OWNER}'><purge node='news'/></pubsub>" in sent
        stream.receive(result(iq_id))
        await task
        task, sent, iq_id = await request(stream, ps.retract_items(client, SERVICE, "news", ["i1"]))
        assert "<retract node='news' notify='true'><item id='i1'/></retract>" in sent
        stream.receive(
            f"<iq type='error' id='{iq_id}' from='pubsub.localhost'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        with pytest.raises(XMPPError, match="item-not-found"):
            await task
        task, sent, iq_id = await request(stream, ps.get_configuration(client, SERVICE, "news"))
        assert f"<pubsub xmlns='{OWNER}'><configure node='news'/></pubsub>" in sent
        stream.receive(
            result(
                iq_id,
                f"<pubsub xmlns='{OWNER}'><configure node='news'>"
                "<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE' type='hidden'>"
                "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"
                "<field var='pubsub#title' type='text-single'><value>News</value></field>"
                "<field var='pubsub#persist_items' type='boolean'><value>1</value></field>"
                "</x></configure></pubsub>",
            )
        )
        assert await task == {"pubsub#title": "News", "pubsub#persist_items": "1"}
        task, sent, iq_id = await request(
            stream,
            ps.set_node_affiliations(client, SERVICE, "news", {JID("bob@localhost"): "publisher"}),
        )
        assert (
            "<affiliations node='news'><affiliation jid='bob@localhost' affiliation='publisher'/>"
            in sent
        )
        stream.receive(result(iq_id))
        await task
        with pytest.raises(InvalidInput):
            await ps.set_node_affiliations(client, SERVICE, "news", {JID("b@localhost"): "king"})
        with pytest.raises(InvalidInput):
            await ps.get_items(client, SERVICE, "")
    finally:
        await host.stop()


@aio
async def test_subscriptions(tmp_path: Path) -> None:
    host, client, stream, ps = await started(tmp_path)
    try:
        task, sent, iq_id = await request(stream, ps.subscribe(client, SERVICE, "news"))
        assert "<subscribe node='news' jid='alice@localhost'/>" in sent
        stream.receive(
            result(
                iq_id,
                f"<pubsub xmlns='{PS}'><subscription node='news' jid='alice@localhost' "
                "subid='s1' subscription='pending'/></pubsub>",
            )
        )
        sub = await task
        assert (sub.state, sub.sub_id, sub.subscriber) == ("pending", "s1", JID("alice@localhost"))
        task, sent, iq_id = await request(stream, ps.get_subscriptions(client, SERVICE))
        assert f"<pubsub xmlns='{PS}'><subscriptions/></pubsub>" in sent
        stream.receive(
            result(
                iq_id,
                f"<pubsub xmlns='{PS}'><subscriptions>"
                "<subscription node='a' jid='alice@localhost' subscription='subscribed'/>"
                "<subscription node='b' jid='alice@localhost' subscription='unconfigured' "
                "subid='x'/></subscriptions></pubsub>",
            )
        )
        assert [s.to_dict() for s in await task] == [
            {"service": "pubsub.localhost", "node": "a", "subscriber": "alice@localhost",
             "state": "subscribed", "subid": None},
            {"service": "pubsub.localhost", "node": "b", "subscriber": "alice@localhost",
             "state": "unconfigured", "subid": "x"},
        ]  # fmt: skip
    finally:
        await host.stop()


async def drained(host, client) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await host.plugins["XEP-0060"].events_drained(client)


@aio
async def test_events_become_ps_event_signals_in_order_and_never_messages(
    tmp_path: Path, caplog
) -> None:
    host, client, stream, ps = await started(tmp_path)
    seen = []

    async def slow_first(client, event):
        if not seen:  # the first event takes longer: the second must still come after it
            for _ in range(10):
                await asyncio.sleep(0)
        seen.append((event.kind, event.node))
        if event.node == "blog":
            event.category = "blog"

    host.trigger.add("XEP-0060_event", slow_first)
    try:
        stream.receive(
            f"<message from='pubsub.localhost' to='{ALICE}'><event xmlns='{EVENT}'>"
            "<items node='blog'><item id='i1'><p xmlns='urn:x'>hi</p></item></items>"
            "</event><body>fallback text</body></message>"
        )
        stream.receive(
            f"<message from='pubsub.localhost' to='{ALICE}'><event xmlns='{EVENT}'>"
            "<items node='news'><retract id='i1'/><retract id='i2'/></items></event></message>"
        )
        stream.receive(
            f"<message from='pubsub.localhost' to='{ALICE}'><event xmlns='{EVENT}'>"
            "<purge node='news'/></event></message>"
        )
        stream.receive(
            f"<message from='pubsub.localhost' to='{ALICE}'><event xmlns='{EVENT}'>"
            "<delete node='old'><redirect uri='xmpp:pubsub.localhost?;node=new'/></delete>"
            "</event></message>"
        )
        # malformed: no node; logged and ignored
        stream.receive(
            f"<message from='pubsub.localhost' to='{ALICE}'><event xmlns='{EVENT}'>"
            "<items/></event></message>"
        )
        await drained(host, client)
        await host.messages.writer.drain()
        assert seen == [("items", "blog"), ("retract", "news"), ("purge", "news"),
                        ("delete", "old")]  # fmt: skip
        events = [args for name, args in host.bridge.emitted if name == "ps_event"]
        assert [(c, s, n, k, json.loads(d), p) for c, s, n, k, d, p in events] == [
            ("blog", "pubsub.localhost", "blog", "items",
             {"items": [f"<item xmlns='{EVENT}' id='i1'><p xmlns='urn:x'>hi</p></item>"],
              "item_ids": ["i1"]}, "alice"),
            ("generic", "pubsub.localhost", "news", "retract", {"item_ids": ["i1", "i2"]},
             "alice"),
            ("generic", "pubsub.localhost", "news", "purge", {}, "alice"),
            ("generic", "pubsub.localhost", "old", "delete",
             {"redirect": "xmpp:pubsub.localhost?;node=new"}, "alice"),
        ]  # fmt: skip
        assert not [1 for name, _ in host.bridge.emitted if name == "message_new"]
        assert await host.history_get("alice", None, None, None, True, {}) == []
        assert "without node" in caplog.text
    finally:
        await host.stop()


@aio
async def test_bridge_adapters_decode_and_refuse_bad_input(tmp_path: Path) -> None:
    host, client, stream, ps = await started(tmp_path)
    methods = host.bridge.methods
    try:
        with pytest.raises(InvalidInput, match="payload"):
            await methods["ps_item_send"]("", "n", "<not xml", "", "", "alice")
        with pytest.raises(InvalidInput, match="unknown extra"):
            await methods["ps_items_get"]("", "n", -1, [], "", '{"bogus": 1}', "alice")
        with pytest.raises(InvalidInput, match="rsm"):
            await methods["ps_items_get"]("", "n", -1, [], "", '{"rsm": {"max": -2}}', "alice")
        with pytest.raises(InvalidInput, match="service"):
            await methods["ps_items_get"]("a@@b", "n", -1, [], "", "", "alice")
        with pytest.raises(InvalidInput, match="JSON"):
            await methods["ps_subscribe"]("", "n", "{", "alice")
        task, sent, iq_id = await request(
            stream,
            methods["ps_items_get"](
                "pubsub.localhost", "news", 10, [], "", '{"rsm": {"before": ""}}', "alice"
            ),
        )
        assert f"<set xmlns='{RSM}'><max>10</max><before/></set>" in sent
        stream.receive(
            result(
                iq_id,
                f"<pubsub xmlns='{PS}'><items node='news'><item id='z'/></items>"
                f"<set xmlns='{RSM}'><first index='9'>z</first><last>z</last><count>10</count>"
                "</set></pubsub>",
            )
        )
        assert json.loads(await task) == {
            "service": "pubsub.localhost",
            "node": "news",
            "items": [f"<item xmlns='{PS}' id='z'/>"],
            "cached": False,
            "rsm": {"first": "z", "last": "z", "index": 9, "count": 10},
            "complete": True,
        }
    finally:
        await host.stop()


def test_rsm_request_validation() -> None:
    assert RSMRequest.from_dict({"max": "5", "after": "x"}) == RSMRequest(5, after="x")
    for bad in ({"max": -1}, {"index": "a"}, {"before": 3}, {"max": True}, {"what": 1}, []):
        with pytest.raises(InvalidInput):
            RSMRequest.from_dict(bad)
    with pytest.raises(InvalidInput):
        RSMRequest(before="a", after="b")
    assert RSMRequest(3, index=6).to_element().toXml() == (
        f"<set xmlns='{RSM}'><max>3</max><index>6</index></set>"
    )


def test_page_locally_cuts_rsm_pages_out_of_a_whole_node() -> None:
    from twisted.words.xish import domish

    from libervia.backend.plugins.plugin_xep_0060 import page_locally

    every = []
    for n in range(5):
        item = domish.Element((PS, "item"))
        item["id"] = f"i{n}"
        every.append(item)

    def cut(rsm: RSMRequest) -> tuple[list[str], RSMResponse | None, bool | None]:
        page = page_locally(every, rsm)
        assert page.unpaged is every
        return [i["id"] for i in page.items], page.rsm, page.complete

    assert cut(RSMRequest(2)) == (["i0", "i1"], RSMResponse("i0", "i1", 0, 5), False)
    assert cut(RSMRequest(2, after="i2")) == (["i3", "i4"], RSMResponse("i3", "i4", 3, 5), True)
    assert cut(RSMRequest(2, before="")) == (["i3", "i4"], RSMResponse("i3", "i4", 3, 5), True)
    assert cut(RSMRequest(3, before="i2")) == (["i0", "i1"], RSMResponse("i0", "i1", 0, 5), False)
    assert cut(RSMRequest(2, index=4)) == (["i4"], RSMResponse("i4", "i4", 4, 5), True)
    assert cut(RSMRequest(2, after="i4")) == ([], RSMResponse(count=5), True)
    assert cut(RSMRequest(None, after="i1"))[0] == ["i2", "i3", "i4"]
    with pytest.raises(XMPPError) as failure:
        page_locally(every, RSMRequest(2, after="nope"))
    assert failure.value.condition == "item-not-found"
