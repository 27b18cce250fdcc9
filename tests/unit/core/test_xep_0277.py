"""XEP-0277 microblogging on a fake stream: literal XML in and out, through the bridge methods."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.config import Config
from libervia.backend.core.exceptions import InvalidInput, XMPPError
from libervia.backend.core.main import LiberviaBackend, NullBridge
from libervia.backend.plugins.plugin_xep_0030 import XEP_0030
from libervia.backend.plugins.plugin_xep_0060 import ItemsResult
from libervia.backend.plugins.plugin_xep_0277 import XEP_0277, cache_parser, parse_microblog_item
from libervia.backend.tools import xml as xml_tools
from libervia.backend.tools.atom import AtomError
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

ALICE = "alice@localhost/pc"
PS = "http://jabber.org/protocol/pubsub"
OWNER = "http://jabber.org/protocol/pubsub#owner"
RSM = "http://jabber.org/protocol/rsm"
ATOM = "http://www.w3.org/2005/Atom"
MB = "urn:xmpp:microblog:0"
NOW = 1_700_000_000  # 2023-11-14T22:13:20Z
PUBLISH_OPTIONS = (
    "<publish-options><x xmlns='jabber:x:data' type='submit'>"
    "<field type='hidden' var='FORM_TYPE'>"
    "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
    "<field var='pubsub#max_items'><value>max</value></field></x></publish-options>"
)
AUTHOR = "<author><name>alice@localhost</name><uri>xmpp:alice@localhost</uri></author>"
DATES = "<published>2023-11-14T22:13:20Z</published><updated>2023-11-14T22:13:20Z</updated>"


async def started(tmp_path: Path, cache: bool = False):
    """A host with alice logged in; without the pubsub cache unless ``cache`` (its analysis
    of microblog nodes sends requests of its own)."""
    reactor = FakeReactor()
    reactor.advance(NOW)
    if cache:
        host = await started_host(tmp_path, reactor)
    else:
        path = tmp_path / "libervia.conf"
        path.write_text(f"[DEFAULT]\nlocal_dir = {tmp_path}\nplugins_disabled = PUBSUB_CACHE\n")
        host = LiberviaBackend(Config.load(path), reactor=reactor)
        host.bridge = NullBridge()
        host.bridge.keep = True
        await host.start()
        assert "PUBSUB_CACHE" not in host.plugins
    # our PEP service pages with RSM (paging by item ids: tests/unit/core/test_pubsub_cache.py)
    client, stream = await logged_in(
        host, "alice", ALICE, server_features=("http://jabber.org/protocol/pubsub#rsm",)
    )
    stream.sent()  # the initial presence
    return host, client, stream, host.bridge.methods


async def request(stream, coro_or_task):
    """Start a call (or go on with a started one): (task, the one stanza it sent, its id)."""
    task = (
        asyncio.ensure_future(coro_or_task) if asyncio.iscoroutine(coro_or_task) else coro_or_task
    )
    for _ in range(100):
        await asyncio.sleep(0)
        sent = stream.sent_xml()
        if sent:
            assert len(sent) == 1, sent
            (xml,) = sent
            return task, xml, xml.split("id='")[1].split("'")[0]
        if task.done():
            task.result()  # raises the error of a call that failed before sending
    raise AssertionError("nothing sent")


def result(iq_id: str, inner: str = "", sender: str = "alice@localhost") -> str:
    return f"<iq type='result' id='{iq_id}' from='{sender}' to='{ALICE}'>{inner}</iq>"


def error(iq_id: str, condition: str, sender: str = "alice@localhost") -> str:
    return (
        f"<iq type='error' id='{iq_id}' from='{sender}' to='{ALICE}'><error type='cancel'>"
        f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )


def entry(item_id: str, title: str, extra: str = "", dates: str = DATES) -> str:
    return (
        f"<item id='{item_id}'><entry xmlns='{ATOM}'><title type='text'>{title}</title>"
        f"{AUTHOR}<id>tag:alice@localhost,2023-11-14:posts-{item_id}</id>{dates}{extra}"
        "</entry></item>"
    )


@aio
async def test_mb_send_publishes_entry_with_publish_options(tmp_path: Path) -> None:
    """A post on our PEP: the Atom entry, with publish-options keeping every item."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        data = {
            "id": "p1",
            "title": "Hello",
            "content_xhtml": "<p>Rich <b>text</b></p>",
            "tags": ["t1"],
            "language": "en",
        }
        task, sent, iq_id = await request(
            stream, bridge["mb_send"]("", "", json.dumps(data), "alice")
        )
        assert sent == (
            f"<iq type='set' to='alice@localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            f"<publish node='{MB}'><item id='p1'><entry xmlns='{ATOM}' xml:lang='en'>"
            "<title type='text'>Hello</title><content type='text'>Rich text</content>"
            "<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>"
            "<p>Rich <b>text</b></p></div></content>"
            f"{AUTHOR}<id>tag:alice@localhost,2023-11-14:posts-p1</id>{DATES}"
            "<category term='t1'/></entry></item></publish>"
            f"{PUBLISH_OPTIONS}</pubsub></iq>"
        )
        stream.receive(
            result(
                iq_id,
                f"<pubsub xmlns='{PS}'><publish node='{MB}'><item id='p1'/></publish></pubsub>",
            )
        )
        assert await task == "p1"
    finally:
        await host.stop()


@aio
async def test_mb_send_generates_time_ordered_id(tmp_path: Path) -> None:
    """Without an id, the post gets a UUIDv7 (also in its atom:id)."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        task, sent, iq_id = await request(
            stream, bridge["mb_send"]("", "", json.dumps({"content": "hi"}), "alice")
        )
        item_id = sent.split("<item id='")[1].split("'")[0]
        assert len(item_id) == 36 and item_id[14] == "7"
        assert f"<id>tag:alice@localhost,2023-11-14:posts-{item_id}</id>" in sent
        stream.receive(result(iq_id))  # no id in the answer: ours
        assert await task == item_id
    finally:
        await host.stop()


@aio
async def test_mb_send_to_pubsub_service_without_publish_options(tmp_path: Path) -> None:
    """A blog on a pubsub component: its node configuration is left alone."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        task, sent, iq_id = await request(
            stream,
            bridge["mb_send"](
                "pubsub.localhost", "blog", json.dumps({"id": "x", "content": "c"}), "alice"
            ),
        )
        assert sent.startswith(
            f"<iq type='set' to='pubsub.localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            "<publish node='blog'><item id='x'>"
        )
        assert "publish-options" not in sent
        stream.receive(result(iq_id, sender="pubsub.localhost"))
        assert await task == "x"
    finally:
        await host.stop()


@aio
async def test_mb_send_reconfigures_pep_node_on_precondition_conflict(tmp_path: Path) -> None:
    """An existing PEP node keeping 1 item: reconfigured, then the post published again."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        data = json.dumps({"id": "p2", "content": "c"})
        task, sent, iq_id = await request(stream, bridge["mb_send"]("", "", data, "alice"))
        assert PUBLISH_OPTIONS in sent
        stream.receive(error(iq_id, "conflict"))
        task, sent, iq_id = await request(stream, task)
        assert sent == (
            f"<iq type='set' to='alice@localhost' id='{iq_id}'><pubsub xmlns='{OWNER}'>"
            f"<configure node='{MB}'><x xmlns='jabber:x:data' type='submit'>"
            "<field type='hidden' var='FORM_TYPE'>"
            "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"
            "<field var='pubsub#max_items'><value>max</value></field></x></configure>"
            "</pubsub></iq>"
        )
        stream.receive(result(iq_id))
        task, sent, iq_id = await request(stream, task)
        assert "<item id='p2'>" in sent and PUBLISH_OPTIONS in sent
        stream.receive(result(iq_id))
        assert await task == "p2"
    finally:
        await host.stop()


@aio
async def test_mb_send_creates_comments_node(tmp_path: Path) -> None:
    """comments: true creates the post's comments node and links it from the entry."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        data = json.dumps({"id": "p3", "content": "c", "comments": True})
        task, sent, iq_id = await request(stream, bridge["mb_send"]("", "", data, "alice"))
        assert sent == (
            f"<iq type='set' to='alice@localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            f"<create node='{MB}:comments/p3'/><configure>"
            "<x xmlns='jabber:x:data' type='submit'><field type='hidden' var='FORM_TYPE'>"
            "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"
            "<field var='pubsub#access_model'><value>open</value></field>"
            "<field var='pubsub#publish_model'><value>open</value></field>"
            "<field var='pubsub#max_items'><value>max</value></field></x></configure>"
            "</pubsub></iq>"
        )
        stream.receive(result(iq_id))
        task, sent, iq_id = await request(stream, task)
        assert (
            "<link rel='replies' title='comments' href='xmpp:alice@localhost?;node="
            "urn%3Axmpp%3Amicroblog%3A0%3Acomments%2Fp3'/>"
        ) in sent
        stream.receive(result(iq_id))
        assert await task == "p3"
    finally:
        await host.stop()


@aio
async def test_comments_node_options_refused_or_existing(tmp_path: Path) -> None:
    """Options refused: created keeping all items only; an existing node is reused."""
    host, client, stream, bridge = await started(tmp_path)
    plugin = host.plugins["XEP-0277"]
    try:
        task, sent, iq_id = await request(stream, plugin.create_comments_node(client, None, "a"))
        stream.receive(error(iq_id, "not-acceptable"))
        task, sent, iq_id = await request(stream, task)
        assert "pubsub#access_model" not in sent and "pubsub#max_items" in sent
        stream.receive(result(iq_id))
        assert await task == "xmpp:alice@localhost?;node=urn%3Axmpp%3Amicroblog%3A0%3Acomments%2Fa"
        task, sent, iq_id = await request(stream, plugin.create_comments_node(client, None, "b"))
        stream.receive(error(iq_id, "conflict"))
        assert (await task).endswith("comments%2Fb")
        task, sent, iq_id = await request(stream, plugin.create_comments_node(client, None, "c"))
        stream.receive(error(iq_id, "forbidden"))
        with pytest.raises(XMPPError):
            await task
    finally:
        await host.stop()


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"content": "c", "bogus": 1}),
        json.dumps({"tags": ["no content"]}),
        json.dumps({"content_xhtml": "<p>unclosed"}),
        json.dumps({"content_xhtml": "<svg xmlns='http://www.w3.org/2000/svg'/>"}),
        json.dumps({"content": "c", "id": 5}),
    ],
)
@aio
async def test_mb_send_invalid_data(tmp_path: Path, data: str) -> None:
    """Invalid post data is refused before anything is sent."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        with pytest.raises(InvalidInput):
            await bridge["mb_send"]("", "", data, "alice")
        assert stream.sent_xml() == []
    finally:
        await host.stop()


@aio
async def test_mb_get_parses_entries_and_skips_bad_items(tmp_path: Path, caplog) -> None:
    """Entries come out as dicts with the page's RSM; unacceptable items are skipped, logged."""
    host, client, stream, bridge = await started(tmp_path)
    from wokkel.disco import DiscoFeature, DiscoInfo

    juliet = DiscoInfo()
    juliet.append(DiscoFeature("http://jabber.org/protocol/pubsub#rsm"))
    host.plugins["XEP-0030"].cache_infos(client, JID("juliet@localhost"), juliet)
    try:
        extra = json.dumps({"rsm": {"max": 10}})
        task, sent, iq_id = await request(
            stream, bridge["mb_get"]("juliet@localhost", "", -1, [], extra, "alice")
        )
        assert sent == (
            f"<iq type='get' to='juliet@localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            f"<items node='{MB}'/><set xmlns='{RSM}'><max>10</max></set></pubsub></iq>"
        )
        big = "x" * (1024 * 1024)
        items = (
            entry("good1", "First", "<category term='a'/>")
            + "<item id='not-atom'><p xmlns='urn:other'>hi</p></item>"
            + entry("bad-date", "B", dates="<updated>yesterday</updated>")
            + entry(
                "foreign",
                "F",
                "<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>"
                "<svg xmlns='http://www.w3.org/2000/svg'><script>x</script></svg></div></content>",
            )
            + entry("huge", "H", f"<content>{big}</content>")
            + entry("good2", "Second")
        )
        with caplog.at_level(logging.WARNING):
            stream.receive(
                result(
                    iq_id,
                    f"<pubsub xmlns='{PS}'><items node='{MB}'>{items}</items>"
                    f"<set xmlns='{RSM}'><first index='0'>good1</first><last>good2</last>"
                    "<count>6</count></set></pubsub>",
                    "juliet@localhost",
                )
            )
            page = json.loads(await task)
        assert page == {
            "items": [
                {
                    "id": "good1",
                    "atom_id": "tag:alice@localhost,2023-11-14:posts-good1",
                    "title": "First",
                    "content": "",
                    "author": {
                        "name": "alice@localhost",
                        "jid": "alice@localhost",
                        "uri": "xmpp:alice@localhost",
                    },
                    "published": NOW,
                    "updated": NOW,
                    "tags": ["a"],
                    "links": [],
                    "comments": [],
                },
                {
                    "id": "good2",
                    "atom_id": "tag:alice@localhost,2023-11-14:posts-good2",
                    "title": "Second",
                    "content": "",
                    "author": {
                        "name": "alice@localhost",
                        "jid": "alice@localhost",
                        "uri": "xmpp:alice@localhost",
                    },
                    "published": NOW,
                    "updated": NOW,
                    "tags": [],
                    "links": [],
                    "comments": [],
                },
            ],
            "rsm": {"first": "good1", "last": "good2", "index": 0, "count": 6},
            "complete": True,
            "cached": False,
        }
        skipped = [r.getMessage() for r in caplog.records if "skipping blog item" in r.getMessage()]
        assert [m.split("'")[1] for m in skipped] == ["not-atom", "bad-date", "foreign", "huge"]
    finally:
        await host.stop()


@aio
async def test_mb_get_item_ids_and_max(tmp_path: Path) -> None:
    """max_items and item ids reach the items request."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        task, sent, iq_id = await request(stream, bridge["mb_get"]("", "blog", 5, [], "", "alice"))
        assert "<items node='blog' max_items='5'/>" in sent
        stream.receive(result(iq_id))
        assert json.loads(await task) == {"items": [], "cached": False, "complete": True}
        task, sent, iq_id = await request(
            stream, bridge["mb_get"]("", "", -1, ["a", "b"], "", "alice")
        )
        assert f"<items node='{MB}'><item id='a'/><item id='b'/></items>" in sent
        stream.receive(result(iq_id))
        await task
    finally:
        await host.stop()


@aio
async def test_mb_get_answered_by_cache_trigger(tmp_path: Path) -> None:
    """A trigger answering XEP-0060_items (the pubsub cache) serves mb_get: no IQ sent."""
    host, client, stream, bridge = await started(tmp_path)
    calls: list[Any] = []

    def answer(client: Any, request: Any) -> bool:
        calls.append((request.service, request.node, request.max_items))
        request.result = ItemsResult(
            [xml_tools.parse(entry("c1", "Cached"))], complete=True, cached=True
        )
        return False

    host.trigger.add("XEP-0060_items", answer)
    try:
        page = json.loads(await bridge["mb_get"]("", "", 20, [], "", "alice"))
        assert stream.sent_xml() == []
        assert calls == [(JID("alice@localhost"), MB, 20)]
        assert page["cached"] is True and page["complete"] is True
        assert [e["title"] for e in page["items"]] == ["Cached"]
        # use_cache false: the service is asked
        task, sent, iq_id = await request(
            stream, bridge["mb_get"]("", "", 20, [], json.dumps({"use_cache": False}), "alice")
        )
        stream.receive(result(iq_id))
        assert json.loads(await task)["cached"] is False
        assert len(calls) == 1
    finally:
        host.trigger.remove("XEP-0060_items", answer)
        await host.stop()


@aio
async def test_mb_retract(tmp_path: Path) -> None:
    """Retraction of a post, subscribers notified."""
    host, client, stream, bridge = await started(tmp_path)
    try:
        task, sent, iq_id = await request(stream, bridge["mb_retract"]("", "", "p1", "alice"))
        assert sent == (
            f"<iq type='set' to='alice@localhost' id='{iq_id}'><pubsub xmlns='{PS}'>"
            f"<retract node='{MB}' notify='true'><item id='p1'/></retract></pubsub></iq>"
        )
        stream.receive(result(iq_id))
        await task
        with pytest.raises(InvalidInput):
            await bridge["mb_retract"]("", "", "", "alice")
    finally:
        await host.stop()


def test_parse_microblog_item_is_hardened() -> None:
    """The cache parser reads elements and raw XML; hostile XML is an AtomError, at once."""
    element = xml_tools.parse(entry("e1", "Elem").replace("<item ", f"<item xmlns='{PS}' "))
    assert parse_microblog_item(element)["id"] == "e1"
    assert parse_microblog_item(entry("e2", "Str"))["title"] == "Str"
    laughs = (
        '<!DOCTYPE item [<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY a{i} "{("&a" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10)
        )
        + "]>"
        + entry("e3", "&a9;")
    )
    # refused before any parsing: expansion is never attempted (no timing needed)
    with pytest.raises(AtomError, match="DOCTYPE"):
        parse_microblog_item(laughs)


class FakeCache:
    def __init__(self) -> None:
        self.analysers: list[dict[str, Any]] = []

    def register_analyser(self, analyser: dict[str, Any]) -> None:
        self.analysers.append(analyser)


class FakeHost:
    def __init__(self, plugins: dict[str, Any]) -> None:
        self.plugins = plugins
        self.bridge = NullBridge()


def test_analyser_registered_with_pubsub_cache() -> None:
    """With the pubsub cache loaded, microblog nodes are synchronised and parsed."""
    cache = FakeCache()
    disco = XEP_0030(None)
    XEP_0277(FakeHost({"XEP-0030": disco, "XEP-0060": object(), "PUBSUB_CACHE": cache}))
    assert "urn:xmpp:microblog:0+notify" in disco.features  # PEP notifications of contacts
    (analyser,) = cache.analysers
    assert {k: v for k, v in analyser.items() if k != "parser"} == {
        "name": "XEP-0277",
        "type": "blog",
        "namespace": ATOM,
        "node": MB,
        "to_sync": True,
    }
    assert analyser["parser"] is cache_parser
    assert cache_parser(xml_tools.parse(entry("ok", "T")))["id"] == "ok"
    assert cache_parser(xml_tools.parse("<item id='bad'><p xmlns='urn:x'/></item>")) is None
    # without the cache: nothing to register, the bridge methods are there all the same
    host = FakeHost({"XEP-0030": disco, "XEP-0060": object()})
    XEP_0277(host)
    assert set(host.bridge.methods) == {"mb_send", "mb_get", "mb_retract"}


def answer_for(sent: str, items: str) -> str:
    """The service's answer to a request of the pubsub cache or of mb_get (our PEP)."""
    iq_id = sent.split("id='")[1].split("'")[0]
    if "<subscribe " in sent:
        return result(
            iq_id,
            f"<pubsub xmlns='{PS}'><subscription node='{MB}' jid='alice@localhost' "
            "subscription='subscribed'/></pubsub>",
        )
    assert f"<items node='{MB}'" in sent, sent
    if "max_items='1'" in sent:  # the cache's sample item
        items = items[: items.index("</item>") + len("</item>")]
    count = items.count("<item ")
    return result(
        iq_id,
        f"<pubsub xmlns='{PS}'><items node='{MB}'>{items}</items><set xmlns='{RSM}'>"
        f"<first index='0'>p2</first><last>p1</last><count>{count}</count></set></pubsub>",
    )


async def serve(stream, done, items: str) -> list[str]:
    """Answer every request until ``done()``; the requests."""
    requests: list[str] = []
    for _ in range(200_000):  # the cache reads and writes the database (threads): yield
        for sent in stream.sent_xml():
            requests.append(sent)
            stream.receive(answer_for(sent, items))
        if done():
            return requests
        await asyncio.sleep(0)
    raise AssertionError(f"not done; requests: {requests}")


@aio
async def test_blog_synchronised_by_pubsub_cache(tmp_path: Path) -> None:
    """With the pubsub cache: the first mb_get makes it synchronise the blog (our analyser),
    the next ones are answered from the database (no IQ), notifications keep it up to date
    with category "blog", and a bad item neither breaks the cache nor mb_get."""
    host, client, stream, bridge = await started(tmp_path, cache=True)
    cache = host.plugins["PUBSUB_CACHE"]
    items = entry("p2", "Second") + entry("p1", "First")
    try:
        task = asyncio.ensure_future(bridge["mb_get"]("", "", 10, [], "", "alice"))
        requests = await serve(stream, task.done, items)
        first = json.loads(await task)
        assert first["cached"] is False
        assert [e["id"] for e in first["items"]] == ["p2", "p1"]
        waiter = asyncio.ensure_future(cache.wait_synced(client, JID("alice@localhost"), MB))
        requests += await serve(stream, waiter.done, items)
        assert sum("<subscribe " in r for r in requests) == 1
        node = await host.storage.get_pubsub_node("alice", JID("alice@localhost"), MB)
        assert (node.analyser, node.type_, node.sync_state.name) == (
            "XEP-0277",
            "blog",
            "COMPLETED",
        )

        second = json.loads(await bridge["mb_get"]("", "", 10, [], "", "alice"))
        assert stream.sent_xml() == []
        assert second["cached"] is True
        assert sorted(second["items"], key=lambda e: e["id"]) == sorted(
            first["items"], key=lambda e: e["id"]
        )

        # a new post and a bad item notified: cached, the bad one without parsed data
        stream.receive(
            "<message from='alice@localhost' to='alice@localhost/pc'>"
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
            f"<items node='{MB}'>{entry('p3', 'Third')}"
            "<item id='bad'><p xmlns='urn:other'>not a post</p></item></items></event></message>"
        )
        await host.plugins["XEP-0060"].events_drained(client)
        (event,) = [a for name, a in host.bridge.emitted if name == "ps_event"]
        assert event[:4] == ("blog", "alice@localhost", MB, "items")
        third = json.loads(await bridge["mb_get"]("", "", 10, [], "", "alice"))
        assert stream.sent_xml() == []
        assert sorted(e["id"] for e in third["items"]) == ["p1", "p2", "p3"]
        assert third["rsm"]["count"] == 4  # the bad item is cached, not shown
    finally:
        await host.stop()


def test_entry_dict_can_be_sent_back_to_edit() -> None:
    """An mb_get entry dict is valid mb_send data (author and updated are ignored)."""
    from libervia.backend.plugins.plugin_xep_0277 import check_send_data

    post = parse_microblog_item(entry("e1", "Title", "<category term='a'/>"))
    checked = check_send_data(post)
    assert "author" not in checked and "updated" not in checked
    assert checked["id"] == "e1" and checked["published"] == NOW and checked["tags"] == ["a"]
