"""The pubsub cache storage: nodes, items (raw XML + parsed JSON), RSM paging and search.

Every test runs on SQLite and on a real PostgreSQL (see ``conftest.py``). The storage used here
has a fake clock, so that ``created``/``updated``/``sync_state_updated`` timestamps are distinct
and known in advance (the tests never sleep).

Full-text tests only use words that never appear in XML markup: SQLite indexes the raw XML
(tag and attribute names included) while PostgreSQL ignores the tags.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import escape

import pytest
import sqlalchemy as sa
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput, NotFound, ProfileUnknownError
from libervia.backend.memory.sqla import RSMResult, Storage
from libervia.backend.memory.sqla_mapping import PubsubItem, PubsubNode, SyncState
from libervia.backend.tools.xml import parse
from tests.conftest import aio, run

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_ATOM = "http://www.w3.org/2005/Atom"
SERVICE = JID("pubsub.example.org")
EVENTS_SERVICE = JID("events.example.org")
BLOG_NODE = "urn:xmpp:microblog:0"
COMMENTS_NODE = "urn:xmpp:microblog:0:comments/123"
EVENTS_NODE = "urn:xmpp:events:0"
T0 = 1_700_000_000.125


class FakeClock:
    """A clock which only moves when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> float:
        self.now = now
        return now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def st(empty_db_url: str, clock: FakeClock) -> Iterator[Storage]:
    """An initialised Storage using the fake clock, with the profiles "alice" and "bob"."""
    storage = Storage(empty_db_url, clock=clock)
    run(storage.initialise())
    run(storage.create_profile("alice"))
    run(storage.create_profile("bob"))
    try:
        yield storage
    finally:
        run(storage.close())


# --- helpers ----------------------------------------------------------------------------------


def make_item(item_id: str | None, text: str = "") -> domish.Element:
    """A pubsub item with an Atom entry whose title is ``text`` (no id attribute if None)."""
    id_attr = "" if item_id is None else f' id="{escape(item_id, {chr(34): "&quot;"})}"'
    return parse(
        f'<item xmlns="{NS_PUBSUB}"{id_attr}><entry xmlns="{NS_ATOM}">'
        f"<title>{escape(text)}</title></entry></item>"
    )


def title_of(item: PubsubItem) -> str:
    """Text of the Atom title of a cached item (read back from its ``data`` element)."""
    entry = next(item.data.elements(NS_ATOM, "entry"))
    return str(next(entry.elements(NS_ATOM, "title")))


def shape(element: domish.Element) -> tuple[Any, ...]:
    """Prefix-independent structure of an element: namespace, name, attributes, children."""
    children = [
        shape(child) if isinstance(child, domish.Element) else str(child)
        for child in element.children
    ]
    return (element.uri, element.name, sorted(element.attributes.items()), children)


def names(items: list[PubsubItem]) -> list[str]:
    return [item.name for item in items]


async def count_rows(st: Storage, table: str) -> int:
    async with st.engine.connect() as conn:
        return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def check_fts_index(st: Storage) -> None:
    """On SQLite, check that the FTS5 index matches the content of ``pubsub_items``."""
    if st.db.dialect != "sqlite":
        return
    async with st.engine.begin() as conn:
        # rank=1: compare the index with the content table; raises "database disk image is
        # malformed" when they differ
        await conn.execute(
            sa.text(
                "INSERT INTO pubsub_items_fts(pubsub_items_fts, rank) VALUES ('integrity-check', 1)"
            )
        )


async def cache(
    st: Storage, node: PubsubNode, specs: list[tuple[str, str, dict[str, Any] | None]]
) -> int:
    """Cache items given as ``(id, title text, parsed)`` in one batch."""
    return await st.cache_pubsub_items(
        node, [make_item(i, text) for i, text, _ in specs], [p for _, _, p in specs]
    )


async def new_node(
    st: Storage, name: str = BLOG_NODE, profile: str = "alice", service: JID = SERVICE, **kw: Any
) -> PubsubNode:
    return await st.set_pubsub_node(profile, service, name, **kw)


# --- nodes ------------------------------------------------------------------------------------


@aio
async def test_get_unknown_node_returns_none(st: Storage) -> None:
    """An unknown node is None (and is not created by looking it up)."""
    assert await st.get_pubsub_node("alice", SERVICE, BLOG_NODE) is None
    assert await st.get_pubsub_node("alice", SERVICE, BLOG_NODE) is None
    assert await count_rows(st, "pubsub_nodes") == 0


@aio
async def test_get_node_unknown_profile(st: Storage) -> None:
    """Looking a node up for a profile which does not exist raises ProfileUnknownError."""
    with pytest.raises(ProfileUnknownError):
        await st.get_pubsub_node("nobody", SERVICE, BLOG_NODE)
    with pytest.raises(ProfileUnknownError):
        await st.set_pubsub_node("nobody", SERVICE, BLOG_NODE)


@aio
async def test_get_node_create(st: Storage, clock: FakeClock) -> None:
    """``create=True`` creates an unknown node with ``create_kwargs``, then finds that node."""
    clock.set(T0 + 5)
    node = await st.get_pubsub_node(
        "alice",
        SERVICE,
        BLOG_NODE,
        create=True,
        create_kwargs={"analyser": "mb", "type_": "blog", "subtype": "microblog"},
    )
    assert node is not None
    assert node.id is not None
    assert (node.service, node.name) == (SERVICE, BLOG_NODE)
    assert isinstance(node.service, JID)
    assert (node.analyser, node.type_, node.subtype) == ("mb", "blog", "microblog")
    assert node.subscribed is False
    assert node.sync_state is None
    assert node.sync_state_updated == T0 + 5
    assert node.extra is None

    again = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE, create=True)
    assert again is not None
    assert again.id == node.id
    # create_kwargs are only used when creating: the existing node is left as it is
    assert (again.analyser, again.type_, again.subtype) == ("mb", "blog", "microblog")
    assert await count_rows(st, "pubsub_nodes") == 1


@aio
async def test_get_node_create_defaults(st: Storage) -> None:
    """``create=True`` without ``create_kwargs`` creates a node with default attributes."""
    node = await st.get_pubsub_node("alice", SERVICE, "plain", create=True)
    assert node is not None
    assert (node.analyser, node.type_, node.subtype, node.extra) == (None, None, None, None)
    assert node.subscribed is False
    found = await st.get_pubsub_node("alice", SERVICE, "plain")
    assert found is not None and found.id == node.id


@aio
async def test_get_node_with_items_and_subscriptions(st: Storage) -> None:
    """``with_items``/``with_subscriptions`` load the relationships; creating with them fails."""
    node = await new_node(st)
    await cache(st, node, [("a", "one", None), ("b", "two", {"k": 1})])
    other = await new_node(st, "other")
    await cache(st, other, [("z", "three", None)])

    loaded = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE, with_items=True)
    assert loaded is not None
    assert sorted(names(loaded.items)) == ["a", "b"]
    assert {i.name: i.parsed for i in loaded.items} == {"a": None, "b": {"k": 1}}

    loaded = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE, with_subscriptions=True)
    assert loaded is not None
    assert loaded.subscriptions == []

    # an existing node is simply returned, with its items
    loaded = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE, with_items=True, create=True)
    assert loaded is not None and sorted(names(loaded.items)) == ["a", "b"]

    with pytest.raises(InvalidInput):
        await st.get_pubsub_node("alice", SERVICE, "unknown", with_items=True, create=True)
    with pytest.raises(InvalidInput):
        await st.get_pubsub_node("alice", SERVICE, "unknown", with_subscriptions=True, create=True)
    assert await st.get_pubsub_node("alice", SERVICE, "unknown") is None


@aio
async def test_set_node_updates_existing(st: Storage, clock: FakeClock) -> None:
    """Setting an existing node keeps its id (and sync state) and replaces its attributes."""
    clock.set(T0)
    node = await new_node(st, analyser="a1", type_="blog", subtype="microblog", extra={"k": 1})
    await cache(st, node, [("a", "kept", None)])
    clock.set(T0 + 10)
    await st.update_pubsub_node_sync_state(node, SyncState.COMPLETED)

    clock.set(T0 + 20)
    updated = await new_node(
        st,
        analyser="a2",
        type_="events",
        subtype="personal",
        subscribed=True,
        extra={"k": 2, "nested": {"list": [1, "deux"], "été": True}},
    )
    assert updated.id == node.id
    assert (updated.analyser, updated.type_, updated.subtype) == ("a2", "events", "personal")
    assert updated.subscribed is True
    assert updated.extra == {"k": 2, "nested": {"list": [1, "deux"], "été": True}}
    assert updated.sync_state is SyncState.COMPLETED
    assert updated.sync_state_updated == T0 + 10

    found = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE)
    assert found is not None
    assert found.id == node.id
    assert (found.analyser, found.type_, found.subtype) == ("a2", "events", "personal")
    assert found.subscribed is True
    assert found.extra == {"k": 2, "nested": {"list": [1, "deux"], "été": True}}
    assert found.sync_state is SyncState.COMPLETED
    assert await count_rows(st, "pubsub_nodes") == 1
    # the items of the node are untouched
    items, _ = await st.get_items(found)
    assert names(items) == ["a"]

    # attributes not given are reset (set semantics, not a partial update)
    reset = await new_node(st)
    assert reset.id == node.id
    assert (reset.analyser, reset.type_, reset.subtype, reset.extra) == (None, None, None, None)
    assert reset.subscribed is False


@aio
async def test_node_sync_state(st: Storage, clock: FakeClock) -> None:
    """Sync state updates are stored with their time, on the given node only."""
    node = await new_node(st)
    other = await new_node(st, "other")
    assert node.sync_state is None

    clock.set(T0 + 100)
    await st.update_pubsub_node_sync_state(node, SyncState.IN_PROGRESS)
    assert node.sync_state is SyncState.IN_PROGRESS
    assert node.sync_state_updated == T0 + 100
    found = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE)
    assert found is not None
    assert found.sync_state is SyncState.IN_PROGRESS
    assert found.sync_state_updated == T0 + 100

    clock.set(T0 + 200.5)
    await st.update_pubsub_node_sync_state(found, SyncState.ERROR)
    found = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE)
    assert found is not None
    assert found.sync_state is SyncState.ERROR
    assert found.sync_state_updated == T0 + 200.5

    for state in SyncState:
        await st.update_pubsub_node_sync_state(found, state)
        reloaded = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE)
        assert reloaded is not None and reloaded.sync_state is state

    untouched = await st.get_pubsub_node("alice", SERVICE, "other")
    assert untouched is not None
    assert untouched.sync_state is None
    assert untouched.sync_state_updated == other.sync_state_updated == T0


@aio
async def test_delete_node_filters(st: Storage) -> None:
    """delete_pubsub_node deletes the nodes matching every given filter, and counts them."""
    await new_node(st, "blog", "alice", SERVICE)
    await new_node(st, "news", "alice", SERVICE)
    await new_node(st, "blog", "alice", EVENTS_SERVICE)
    await new_node(st, "blog", "bob", SERVICE)
    await new_node(st, "news", "bob", EVENTS_SERVICE)

    async def remaining() -> set[tuple[str, str, str]]:
        found = set()
        for profile in ("alice", "bob"):
            for service in (SERVICE, EVENTS_SERVICE):
                for name in ("blog", "news"):
                    if await st.get_pubsub_node(profile, service, name) is not None:
                        found.add((profile, service.full(), name))
        return found

    # empty filters match nothing (never "everything")
    assert await st.delete_pubsub_node(names=[]) == 0
    assert await st.delete_pubsub_node(profiles=[], services=[SERVICE]) == 0
    assert len(await remaining()) == 5

    assert await st.delete_pubsub_node(["alice"], [SERVICE], ["blog"]) == 1
    assert await remaining() == {
        ("alice", "pubsub.example.org", "news"),
        ("alice", "events.example.org", "blog"),
        ("bob", "pubsub.example.org", "blog"),
        ("bob", "events.example.org", "news"),
    }
    assert await st.delete_pubsub_node(names=["blog"], services=[EVENTS_SERVICE]) == 1
    assert await st.delete_pubsub_node(["alice"], [SERVICE], ["blog"]) == 0
    assert await st.delete_pubsub_node(services=[SERVICE, EVENTS_SERVICE], names=["news"]) == 2
    assert await remaining() == {("bob", "pubsub.example.org", "blog")}
    assert await st.delete_pubsub_node(profiles=["alice"]) == 0
    assert await st.delete_pubsub_node(profiles=["bob"]) == 1
    assert await remaining() == set()

    with pytest.raises(ProfileUnknownError):
        await st.delete_pubsub_node(profiles=["nobody"])


@aio
async def test_delete_all_nodes(st: Storage) -> None:
    """delete_pubsub_node without filter deletes every node of every profile."""
    await new_node(st, "a", "alice")
    await new_node(st, "b", "bob")
    assert await st.delete_pubsub_node() == 2
    assert await count_rows(st, "pubsub_nodes") == 0


@aio
async def test_delete_node_cascades_to_items(st: Storage) -> None:
    """Deleting a node deletes its items (and their full-text entries), not other nodes'."""
    node = await new_node(st)
    other = await new_node(st, "other")
    await cache(st, other, [("keep", "marmalade", None)])
    await cache(st, node, [("a", "quokka", {"n": 1}), ("b", "quokka zephyr", {"n": 2})])
    assert await count_rows(st, "pubsub_items") == 3

    assert await st.delete_pubsub_node(names=[BLOG_NODE]) == 1
    assert await st.get_pubsub_node("alice", SERVICE, BLOG_NODE) is None
    assert await count_rows(st, "pubsub_items") == 1
    items, rsm = await st.get_items(node)
    assert items == [] and rsm.count == 0
    items, rsm = await st.get_items(other)
    assert names(items) == ["keep"]

    # new rows (which may reuse the deleted rows' ids) must not match the deleted words
    recreated = await new_node(st)
    await cache(st, recreated, [("c", "nebula", None), ("d", "nebula", None)])
    await check_fts_index(st)
    assert await st.search_pubsub_items({"fts": "quokka"}) == []
    assert sorted(names(await st.search_pubsub_items({"fts": "nebula"}))) == ["c", "d"]


@aio
async def test_nodes_of_two_profiles_are_independent(st: Storage) -> None:
    """The same service/node name for two profiles are two nodes, with their own items."""
    alice_node = await new_node(st, profile="alice", analyser="a", type_="blog")
    bob_node = await new_node(st, profile="bob", analyser="b", type_="other")
    assert alice_node.id != bob_node.id
    assert alice_node.profile_id != bob_node.profile_id

    await cache(st, alice_node, [("same", "quokka", {"who": "alice"})])
    await cache(st, bob_node, [("same", "zephyr", {"who": "bob"})])

    alice_items, alice_rsm = await st.get_items(alice_node)
    bob_items, bob_rsm = await st.get_items(bob_node)
    assert [(i.name, i.parsed, title_of(i)) for i in alice_items] == [
        ("same", {"who": "alice"}, "quokka")
    ]
    assert [(i.name, i.parsed, title_of(i)) for i in bob_items] == [
        ("same", {"who": "bob"}, "zephyr")
    ]
    assert alice_rsm.count == bob_rsm.count == 1

    alice = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE)
    bob = await st.get_pubsub_node("bob", SERVICE, BLOG_NODE)
    assert alice is not None and bob is not None
    assert (alice.id, alice.analyser, alice.type_) == (alice_node.id, "a", "blog")
    assert (bob.id, bob.analyser, bob.type_) == (bob_node.id, "b", "other")

    await st.delete_pubsub_items(alice_node)
    assert (await st.get_items(bob_node))[1].count == 1

    assert await st.delete_pubsub_node(profiles=["alice"]) == 1
    assert await st.get_pubsub_node("alice", SERVICE, BLOG_NODE) is None
    bob = await st.get_pubsub_node("bob", SERVICE, BLOG_NODE, with_items=True)
    assert bob is not None
    assert [(i.name, i.parsed) for i in bob.items] == [("same", {"who": "bob"})]


@aio
async def test_deleting_profile_deletes_its_nodes_and_items(st: Storage) -> None:
    """A deleted profile takes its cached nodes and items along, other profiles keep theirs."""
    await cache(st, await new_node(st, profile="bob"), [("b1", "quokka", None)])
    await cache(st, await new_node(st, profile="alice"), [("a1", "zephyr", None)])
    await st.delete_profile("bob")
    assert await count_rows(st, "pubsub_nodes") == 1
    assert await count_rows(st, "pubsub_items") == 1
    assert names(await st.search_pubsub_items({})) == ["a1"]
    await check_fts_index(st)


# --- caching items ----------------------------------------------------------------------------


@aio
async def test_cache_items_insert(st: Storage, clock: FakeClock) -> None:
    """New items are written with created == updated == now, their XML and parsed data."""
    node = await new_node(st)
    clock.set(T0 + 1)
    written = await cache(
        st,
        node,
        [("a", "first", {"n": 1}), ("é/2 ?&<>\"'", "second", None), ("c", "third", {"n": 3})],
    )
    assert written == 3
    items, rsm = await st.get_items(node, desc=False)
    assert [(i.name, title_of(i), i.parsed) for i in items] == [
        ("a", "first", {"n": 1}),
        ("é/2 ?&<>\"'", "second", None),
        ("c", "third", {"n": 3}),
    ]
    assert all(i.node_id == node.id for i in items)
    assert all(i.created == i.updated == T0 + 1 for i in items)
    assert rsm.count == 3

    # without parsed_items, parsed is None
    assert await st.cache_pubsub_items(node, [make_item("d", "fourth")]) == 1
    items, _ = await st.get_items(node, item_ids=["d"])
    assert [(i.name, i.parsed) for i in items] == [("d", None)]

    assert await st.cache_pubsub_items(node, []) == 0
    assert await st.cache_pubsub_items(node, [], []) == 0
    assert (await st.get_items(node))[1].count == 4


@aio
async def test_cache_items_upsert(st: Storage, clock: FakeClock) -> None:
    """Re-caching an item id replaces its data and parsed, keeps ``created``, sets ``updated``."""
    node = await new_node(st)
    clock.set(T0 + 1)
    await cache(st, node, [("a", "quokka", {"v": 1, "old": True}), ("b", "other", {"v": "b"})])
    before, _ = await st.get_items(node, item_ids=["a"])
    clock.set(T0 + 60.5)
    assert await cache(st, node, [("a", "zephyr", {"v": 2})]) == 1

    items, rsm = await st.get_items(node, desc=False)
    assert rsm.count == 2
    a, b = items
    assert a.name == "a"
    assert a.id == before[0].id
    assert title_of(a) == "zephyr"
    assert a.parsed == {"v": 2}
    assert a.created == T0 + 1
    assert a.updated == T0 + 60.5
    # the other item is untouched
    assert (b.name, title_of(b), b.parsed, b.created, b.updated) == (
        "b",
        "other",
        {"v": "b"},
        T0 + 1,
        T0 + 1,
    )

    # re-caching without parsed data removes the parsed data
    clock.set(T0 + 70)
    assert await st.cache_pubsub_items(node, [make_item("a", "zephyr")]) == 1
    items, _ = await st.get_items(node, item_ids=["a"])
    assert (items[0].parsed, items[0].created, items[0].updated) == (None, T0 + 1, T0 + 70)

    # the full-text index follows the new content
    await check_fts_index(st)
    assert await st.search_pubsub_items({"fts": "quokka"}) == []
    assert names(await st.search_pubsub_items({"fts": "zephyr"})) == ["a"]


@aio
async def test_cache_items_xml_round_trip(st: Storage) -> None:
    """The raw XML is stored as is and read back as an equal domish Element."""
    xml = (
        '<item xmlns="http://jabber.org/protocol/pubsub" id="round-trip">'
        '<entry xmlns="http://www.w3.org/2005/Atom" xml:lang="fr">'
        '<title type="text">Été « naïf » — 日本語 🎉 &lt;b&gt; &amp; "quotes" \'apos\'</title>'
        '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
        "<p>Bonjour <em>à</em> tous\n  ligne 2</p></div></content>"
        '<geo:point xmlns:geo="http://www.georss.org/georss" geo:precision="5">'
        "45.256 -71.92</geo:point>"
        '<link rel="alternate" href="xmpp:a@b.example?;node=x&amp;item=y" title="Ça"/>'
        '<x:ext xmlns:x="urn:example:ext"><x:inner><plain xmlns="urn:example:plain"/>'
        "</x:inner></x:ext>"
        "</entry></item>"
    )
    original = parse(xml)
    node = await new_node(st)
    assert await st.cache_pubsub_items(node, [original]) == 1

    # stored as XML text
    async with st.engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT data FROM pubsub_items"))).scalar_one()
    assert isinstance(raw, str)
    assert raw == original.toXml()

    items, _ = await st.get_items(node)
    loaded = items[0].data
    assert isinstance(loaded, domish.Element)
    assert loaded.toXml() == original.toXml()
    assert shape(loaded) == shape(original)
    assert (loaded.uri, loaded.name, loaded["id"]) == (NS_PUBSUB, "item", "round-trip")
    entry = next(loaded.elements(NS_ATOM, "entry"))
    assert str(next(entry.elements(NS_ATOM, "title"))) == (
        "Été « naïf » — 日本語 🎉 <b> & \"quotes\" 'apos'"
    )
    assert entry.getAttribute(("http://www.w3.org/XML/1998/namespace", "lang")) == "fr"
    point = next(entry.elements("http://www.georss.org/georss", "point"))
    assert str(point) == "45.256 -71.92"
    ext = next(entry.elements("urn:example:ext", "ext"))
    inner = next(ext.elements("urn:example:ext", "inner"))
    assert next(inner.elements()).uri == "urn:example:plain"

    # the same element comes back through the other read paths
    found = await st.search_pubsub_items({"names": ["round-trip"]})
    assert shape(found[0].data) == shape(original)
    with_items = await st.get_pubsub_node("alice", SERVICE, BLOG_NODE, with_items=True)
    assert with_items is not None
    assert with_items.items[0].data.toXml() == original.toXml()


@aio
async def test_cache_items_parsed_json(st: Storage) -> None:
    """Parsed data is stored as JSON and read back equal (types, nesting, unicode, null)."""
    parsed = {
        "title": "Été 日本語 🎉",
        "int": 42,
        "big": 2**53,
        "negative": -7,
        "float": 1.5,
        "true": True,
        "false": False,
        "none": None,
        "list": [1, "two", {"three": [3, None]}, []],
        "nested": {"a": {"b": {"c": "deep"}}, "empty": {}},
    }
    node = await new_node(st)
    await cache(st, node, [("a", "x", parsed), ("b", "y", {"only": "one"}), ("c", "z", None)])
    items, _ = await st.get_items(node, desc=False)
    assert [i.parsed for i in items] == [parsed, {"only": "one"}, None]
    assert isinstance(items[0].parsed["int"], int)
    assert isinstance(items[0].parsed["float"], float)
    assert items[0].parsed["true"] is True
    assert items[0].parsed["none"] is None


@aio
async def test_cache_items_without_id_are_skipped(st: Storage) -> None:
    """Items without id (or an empty one) are skipped; parsed data stays with its own item."""
    node = await new_node(st)
    written = await st.cache_pubsub_items(
        node,
        [
            make_item(None, "no id"),
            make_item("a", "A"),
            make_item("", "empty"),
            make_item("b", "B"),
        ],
        [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}],
    )
    assert written == 2
    items, rsm = await st.get_items(node, desc=False)
    assert rsm.count == 2
    assert [(i.name, title_of(i), i.parsed) for i in items] == [
        ("a", "A", {"i": 1}),
        ("b", "B", {"i": 3}),
    ]
    assert await st.cache_pubsub_items(node, [make_item(None)], [{"i": 0}]) == 0
    assert await count_rows(st, "pubsub_items") == 2


@aio
async def test_cache_items_duplicates_in_batch(st: Storage) -> None:
    """When a batch holds the same item id several times, its last version is stored."""
    node = await new_node(st)
    written = await cache(
        st, node, [("a", "first", {"v": 1}), ("b", "bee", {"v": "b"}), ("a", "last", {"v": 3})]
    )
    assert written == 2
    items, rsm = await st.get_items(node)
    assert rsm.count == 2
    assert {i.name: (title_of(i), i.parsed) for i in items} == {
        "a": ("last", {"v": 3}),
        "b": ("bee", {"v": "b"}),
    }
    await check_fts_index(st)
    assert await st.search_pubsub_items({"fts": "first"}) == []


@aio
async def test_cache_items_parsed_length_mismatch(st: Storage) -> None:
    """parsed_items of another length than items is refused, and nothing is written."""
    node = await new_node(st)
    with pytest.raises(InvalidInput):
        await st.cache_pubsub_items(node, [make_item("a"), make_item("b")], [{"v": 1}])
    with pytest.raises(InvalidInput):
        await st.cache_pubsub_items(node, [make_item("a")], [None, None])
    with pytest.raises(InvalidInput):
        await st.cache_pubsub_items(node, [make_item("a")], [])
    assert await count_rows(st, "pubsub_items") == 0


@aio
async def test_cache_items_large_batch(st: Storage, clock: FakeClock) -> None:
    """A batch of more than 500 items (written in chunks) is stored whole, then updated whole."""
    node = await new_node(st)
    total = 1234
    item_names = [f"item-{i:04d}" for i in range(total)]
    clock.set(T0 + 1)
    written = await st.cache_pubsub_items(
        node,
        [make_item(n, f"text {i}") for i, n in enumerate(item_names)],
        [{"n": i} for i in range(total)],
    )
    assert written == total
    items, rsm = await st.get_items(node)
    assert rsm.count == total
    assert sorted(names(items)) == item_names
    assert {i.name: i.parsed for i in items} == {n: {"n": i} for i, n in enumerate(item_names)}
    assert {title_of(i) for i in items} == {f"text {i}" for i in range(total)}

    # the same big batch again: every item is updated, none is added
    clock.set(T0 + 2)
    written = await st.cache_pubsub_items(
        node, [make_item(n, "again") for n in item_names], [{"n": -i} for i in range(total)]
    )
    assert written == total
    items, rsm = await st.get_items(node, max_items=5)
    assert rsm.count == total
    assert await count_rows(st, "pubsub_items") == total
    items, _ = await st.get_items(node)
    assert all((i.created, i.updated) == (T0 + 1, T0 + 2) for i in items)
    assert {i.name: i.parsed["n"] for i in items} == {n: -i for i, n in enumerate(item_names)}


# --- deleting items ---------------------------------------------------------------------------


@aio
async def test_delete_some_items(st: Storage) -> None:
    """delete_pubsub_items removes the named items of that node only, and counts them."""
    node = await new_node(st)
    other = await new_node(st, "other")
    await cache(st, other, [("a", "marmalade", None), ("b", "marmalade", None)])
    await cache(
        st,
        node,
        [
            ("a", "zephyr", None),
            ("b", "zephyr", None),
            ("c", "quokka", None),
            ("d", "quokka", None),
        ],
    )
    assert await st.delete_pubsub_items(node, ["a", "c", "unknown"]) == 2
    assert names((await st.get_items(node, desc=False))[0]) == ["b", "d"]
    assert names((await st.get_items(other, desc=False))[0]) == ["a", "b"]
    assert await st.delete_pubsub_items(node, ["a", "c"]) == 0
    assert await st.delete_pubsub_items(node, []) == 0
    assert (await st.get_items(node))[1].count == 2


@aio
async def test_delete_all_items(st: Storage) -> None:
    """delete_pubsub_items without names empties the node, and only that node."""
    node = await new_node(st)
    other = await new_node(st, "other")
    await cache(st, other, [("x", "marmalade", None)])
    await cache(st, node, [("a", "quokka", None), ("b", "quokka", None), ("c", "quokka", None)])
    assert await st.delete_pubsub_items(node) == 3
    items, rsm = await st.get_items(node)
    assert (items, rsm.count) == ([], 0)
    assert names((await st.get_items(other))[0]) == ["x"]
    assert await st.delete_pubsub_items(node) == 0
    # the node itself is kept
    assert await st.get_pubsub_node("alice", SERVICE, BLOG_NODE) is not None

    # new rows (which may reuse the deleted rows' ids) must not match the deleted words
    await cache(st, node, [("n1", "nebula", None), ("n2", "nebula", None)])
    await check_fts_index(st)
    assert await st.search_pubsub_items({"fts": "quokka"}) == []
    assert sorted(names(await st.search_pubsub_items({"fts": "nebula"}))) == ["n1", "n2"]


async def build_purge_dataset(st: Storage, clock: FakeClock) -> None:
    """Items on several nodes: created at T0+100 (``*-old``) and T0+200 (``*-new``); the
    ``*-old`` items of alice's blog are updated at T0+300 (``blog-upd``)."""
    nodes = {
        "blog": await new_node(st, "blog", "alice", SERVICE, type_="blog", subtype="microblog"),
        "comments": await new_node(
            st, "comments", "alice", SERVICE, type_="blog", subtype="comments"
        ),
        "events": await new_node(st, "events", "alice", EVENTS_SERVICE, type_="events"),
        "bob": await new_node(st, "blog", "bob", SERVICE, type_="blog", subtype="microblog"),
    }
    clock.set(T0 + 100)
    for prefix, node in nodes.items():
        await cache(st, node, [(f"{prefix}-old", "old", None)])
    clock.set(T0 + 200)
    for prefix, node in nodes.items():
        await cache(st, node, [(f"{prefix}-new", "new", None)])
    clock.set(T0 + 300)
    await cache(st, nodes["blog"], [("blog-upd", "upd", None)])
    clock.set(T0 + 400)
    await cache(st, nodes["blog"], [("blog-old", "updated", None)])


ALL_PURGE_ITEMS = {
    "blog-old",
    "blog-new",
    "blog-upd",
    "comments-old",
    "comments-new",
    "events-old",
    "events-new",
    "bob-old",
    "bob-new",
}


@pytest.mark.parametrize(
    ("filters", "deleted"),
    [
        pytest.param({}, ALL_PURGE_ITEMS, id="no-filter"),
        pytest.param(
            {"types": ["blog"]},
            ALL_PURGE_ITEMS - {"events-old", "events-new"},
            id="types",
        ),
        pytest.param({"types": ["events", "unknown"]}, {"events-old", "events-new"}, id="types2"),
        pytest.param(
            {"subtypes": ["microblog"]},
            {"blog-old", "blog-new", "blog-upd", "bob-old", "bob-new"},
            id="subtypes",
        ),
        pytest.param({"services": [EVENTS_SERVICE]}, {"events-old", "events-new"}, id="services"),
        pytest.param(
            {"names": ["comments", "events"]},
            {"comments-old", "comments-new", "events-old", "events-new"},
            id="names",
        ),
        pytest.param({"profiles": ["bob"]}, {"bob-old", "bob-new"}, id="profiles"),
        pytest.param(
            {"created_before": T0 + 150},
            {"blog-old", "comments-old", "events-old", "bob-old"},
            id="created_before",
        ),
        # strictly before: items created at T0 + 200 are kept
        pytest.param(
            {"created_before": T0 + 200},
            {"blog-old", "comments-old", "events-old", "bob-old"},
            id="created_before-strict",
        ),
        # blog-old was updated at T0 + 400
        pytest.param(
            {"updated_before": T0 + 150}, {"comments-old", "events-old", "bob-old"}, id="updated"
        ),
        pytest.param(
            {"updated_before": T0 + 350},
            ALL_PURGE_ITEMS - {"blog-old"},
            id="updated_before-2",
        ),
        pytest.param(
            {"profiles": ["alice"], "types": ["blog"], "created_before": T0 + 150},
            {"blog-old", "comments-old"},
            id="combined",
        ),
        pytest.param(
            {"names": ["blog"], "services": [SERVICE], "updated_before": T0 + 301},
            {"blog-new", "blog-upd", "bob-old", "bob-new"},
            id="combined-2",
        ),
        pytest.param({"profiles": []}, set(), id="empty-list"),
        pytest.param({"created_before": T0}, set(), id="nothing-old-enough"),
    ],
)
@aio
async def test_purge_items(
    st: Storage, clock: FakeClock, filters: dict[str, Any], deleted: set[str]
) -> None:
    """purge_pubsub_items deletes the items matching every filter, keeps nodes, counts items."""
    await build_purge_dataset(st, clock)
    assert await st.purge_pubsub_items(**filters) == len(deleted)
    remaining = set(names(await st.search_pubsub_items({})))
    assert remaining == ALL_PURGE_ITEMS - deleted
    assert await count_rows(st, "pubsub_nodes") == 4
    await check_fts_index(st)


@aio
async def test_purge_items_unknown_profile(st: Storage) -> None:
    """Purging the items of an unknown profile raises ProfileUnknownError."""
    with pytest.raises(ProfileUnknownError):
        await st.purge_pubsub_items(profiles=["nobody"])


# --- get_items and RSM ------------------------------------------------------------------------

#: i00 ... i09 created 10 s apart; i03, i07 and i00 then modified (in this order)
RSM_NAMES = [f"i{i:02d}" for i in range(10)]
RSM_BY_CREATION = list(reversed(RSM_NAMES))
RSM_BY_MODIFICATION = ["i00", "i07", "i03", "i09", "i08", "i06", "i05", "i04", "i02", "i01"]


async def build_rsm_node(st: Storage, clock: FakeClock) -> PubsubNode:
    node = await new_node(st)
    other = await new_node(st, "other")
    for idx, name in enumerate(RSM_NAMES):
        clock.set(T0 + 1000 + idx * 10)
        await cache(st, node, [(name, f"title {name}", {"idx": idx})])
    clock.set(T0 + 2000)
    await cache(st, other, [("x0", "other", None), ("i05", "other", None)])
    for idx, name in enumerate(["i03", "i07", "i00"]):
        clock.set(T0 + 3000 + idx)
        await cache(st, node, [(name, f"modified {name}", {"modified": True})])
    return node


def check_page(
    items: list[PubsubItem], rsm: RSMResult, full: list[str], start: int, size: int
) -> None:
    """The page is ``full[start:start + size]`` with matching RSM metadata."""
    expected = full[start : start + size]
    assert names(items) == expected
    assert rsm.count == len(full)
    if expected:
        assert (rsm.index, rsm.first, rsm.last) == (start, expected[0], expected[-1])
    else:
        assert (rsm.index, rsm.first, rsm.last) == (None, None, None)


@aio
async def test_get_items_default(st: Storage, clock: FakeClock) -> None:
    """By default: newest (by creation) first, every item, or the first max_items."""
    node = await build_rsm_node(st, clock)
    items, rsm = await st.get_items(node)
    assert names(items) == RSM_BY_CREATION
    assert rsm == RSMResult(count=10, index=0, first="i09", last="i00")
    assert rsm.to_dict() == {"count": 10, "index": 0, "first": "i09", "last": "i00"}
    assert all(isinstance(i.data, domish.Element) for i in items)
    assert items[0].created == T0 + 1090

    items, rsm = await st.get_items(node, max_items=3)
    assert names(items) == ["i09", "i08", "i07"]
    assert rsm == RSMResult(count=10, index=0, first="i09", last="i07")

    items, rsm = await st.get_items(node, max_items=100)
    assert names(items) == RSM_BY_CREATION
    assert rsm.count == 10

    # max_items=0: only the count
    items, rsm = await st.get_items(node, max_items=0)
    assert items == []
    assert rsm == RSMResult(count=10, index=None, first=None, last=None)


@aio
async def test_get_items_ascending_and_modification(st: Storage, clock: FakeClock) -> None:
    """desc=False gives the oldest first; order_by="modification" sorts by last update."""
    node = await build_rsm_node(st, clock)
    items, rsm = await st.get_items(node, desc=False, max_items=3)
    assert names(items) == ["i00", "i01", "i02"]
    assert rsm == RSMResult(count=10, index=0, first="i00", last="i02")

    items, rsm = await st.get_items(node, order_by="modification")
    assert names(items) == RSM_BY_MODIFICATION
    assert items[0].updated == T0 + 3002
    assert rsm == RSMResult(count=10, index=0, first="i00", last="i01")

    items, rsm = await st.get_items(node, order_by="modification", desc=False, max_items=4)
    assert names(items) == ["i01", "i02", "i04", "i05"]
    assert rsm.index == 0

    items, _ = await st.get_items(node, order_by="creation", desc=True, max_items=2)
    assert names(items) == ["i09", "i08"]


@aio
async def test_get_items_pages_literal(st: Storage, clock: FakeClock) -> None:
    """after/before paging on the default order, with the expected pages spelled out."""
    node = await build_rsm_node(st, clock)
    items, rsm = await st.get_items(node, max_items=3, after="i07")
    assert (names(items), rsm) == (
        ["i06", "i05", "i04"],
        RSMResult(count=10, index=3, first="i06", last="i04"),
    )
    items, rsm = await st.get_items(node, max_items=3, after="i01")
    assert (names(items), rsm) == (["i00"], RSMResult(10, 9, "i00", "i00"))
    items, rsm = await st.get_items(node, max_items=3, after="i00")
    assert (names(items), rsm) == ([], RSMResult(10, None, None, None))

    # before="": the last page
    items, rsm = await st.get_items(node, max_items=3, before="")
    assert (names(items), rsm) == (["i02", "i01", "i00"], RSMResult(10, 7, "i02", "i00"))
    items, rsm = await st.get_items(node, max_items=3, before="i02")
    assert (names(items), rsm) == (["i05", "i04", "i03"], RSMResult(10, 4, "i05", "i03"))
    items, rsm = await st.get_items(node, max_items=3, before="i08")
    assert (names(items), rsm) == (["i09"], RSMResult(10, 0, "i09", "i09"))
    items, rsm = await st.get_items(node, max_items=3, before="i09")
    assert (names(items), rsm) == ([], RSMResult(10, None, None, None))

    # without max_items: everything after / before
    items, rsm = await st.get_items(node, after="i03")
    assert (names(items), rsm.index) == (["i02", "i01", "i00"], 7)
    items, rsm = await st.get_items(node, before="i06")
    assert (names(items), rsm.index) == (["i09", "i08", "i07"], 0)
    items, rsm = await st.get_items(node, before="")
    assert (names(items), rsm.index) == (RSM_BY_CREATION, 0)

    # paging on the modification order
    items, rsm = await st.get_items(node, order_by="modification", max_items=2, after="i03")
    assert (names(items), rsm) == (["i09", "i08"], RSMResult(10, 3, "i09", "i08"))
    items, rsm = await st.get_items(node, order_by="modification", max_items=2, before="i09")
    assert (names(items), rsm) == (["i07", "i03"], RSMResult(10, 1, "i07", "i03"))


@pytest.mark.parametrize(
    ("order_by", "desc", "full"),
    [
        ("creation", True, RSM_BY_CREATION),
        ("creation", False, RSM_NAMES),
        ("modification", True, RSM_BY_MODIFICATION),
        ("modification", False, list(reversed(RSM_BY_MODIFICATION))),
    ],
)
@aio
async def test_get_items_walk(
    st: Storage, clock: FakeClock, order_by: str, desc: bool, full: list[str]
) -> None:
    """Walking the node page by page, forwards (after) and backwards (before), visits the
    whole sorted set once, each page with consistent index/count/first/last."""
    node = await build_rsm_node(st, clock)
    items, rsm = await st.get_items(node, order_by=order_by, desc=desc)
    assert names(items) == full

    for size in (1, 3, 4, 10):
        # forwards
        after: str | None = None
        start = 0
        while True:
            items, rsm = await st.get_items(
                node, max_items=size, after=after, order_by=order_by, desc=desc
            )
            check_page(items, rsm, full, start, size)
            if not items:
                break
            after = rsm.last
            start += size
        assert start == -(-len(full) // size) * size

        # backwards, from the last page
        before = ""
        end = len(full)
        while True:
            items, rsm = await st.get_items(
                node, max_items=size, before=before, order_by=order_by, desc=desc
            )
            start = max(end - size, 0)
            check_page(items, rsm, full, start, end - start)
            if not items:
                break
            assert rsm.first is not None
            before = rsm.first
            end = start
        assert end == 0


@aio
async def test_get_items_ties(st: Storage, clock: FakeClock) -> None:
    """Items with the same timestamp are ordered by insertion (row id), and paging through
    them neither skips nor repeats any item."""
    node = await new_node(st)
    clock.set(T0)
    await cache(st, node, [("early", "e", None)])
    clock.set(T0 + 1)
    await cache(st, node, [(f"t{i}", "t", None) for i in range(7)])
    clock.set(T0 + 2)
    await cache(st, node, [("late", "l", None)])

    for desc in (True, False):
        items, _ = await st.get_items(node, desc=desc)
        full = names(items)
        assert sorted(full) == sorted(["early", "late"] + [f"t{i}" for i in range(7)])
        assert full[0] == ("late" if desc else "early")
        tied_ids = [i.id for i in items if i.name.startswith("t")]
        assert tied_ids == sorted(tied_ids, reverse=desc)
        for size in (2, 3):
            after: str | None = None
            walked: list[str] = []
            while True:
                page, rsm = await st.get_items(node, max_items=size, after=after, desc=desc)
                if not page:
                    break
                assert rsm.index == len(walked)
                walked.extend(names(page))
                after = rsm.last
            assert walked == full
            before = ""
            walked = []
            while True:
                page, rsm = await st.get_items(node, max_items=size, before=before, desc=desc)
                if not page:
                    break
                assert rsm.index == len(full) - len(walked) - len(page)
                walked[:0] = names(page)
                assert rsm.first is not None
                before = rsm.first
            assert walked == full


@aio
async def test_get_items_from_index(st: Storage, clock: FakeClock) -> None:
    """from_index returns max_items items from that position of the sorted set."""
    node = await build_rsm_node(st, clock)
    items, rsm = await st.get_items(node, from_index=4, max_items=3)
    check_page(items, rsm, RSM_BY_CREATION, 4, 3)
    items, rsm = await st.get_items(node, from_index=0, max_items=3)
    check_page(items, rsm, RSM_BY_CREATION, 0, 3)
    items, rsm = await st.get_items(node, from_index=9, max_items=3)
    check_page(items, rsm, RSM_BY_CREATION, 9, 3)
    items, rsm = await st.get_items(node, from_index=10, max_items=3)
    check_page(items, rsm, RSM_BY_CREATION, 10, 3)
    items, rsm = await st.get_items(node, from_index=25)
    check_page(items, rsm, RSM_BY_CREATION, 25, 10)
    # without max_items: the rest of the set
    items, rsm = await st.get_items(node, from_index=6)
    check_page(items, rsm, RSM_BY_CREATION, 6, 10)
    items, rsm = await st.get_items(node, from_index=2, max_items=2, desc=False)
    check_page(items, rsm, RSM_NAMES, 2, 2)
    items, rsm = await st.get_items(node, from_index=1, max_items=3, order_by="modification")
    check_page(items, rsm, RSM_BY_MODIFICATION, 1, 3)


@aio
async def test_get_items_item_ids(st: Storage, clock: FakeClock) -> None:
    """item_ids restricts the set (count, index, paging) to those items of the node."""
    node = await build_rsm_node(st, clock)
    wanted = ["i01", "i05", "i08", "x0", "unknown"]  # x0 is only on the other node
    items, rsm = await st.get_items(node, item_ids=wanted)
    assert names(items) == ["i08", "i05", "i01"]
    assert rsm == RSMResult(count=3, index=0, first="i08", last="i01")
    # i05 also exists on the other node: only this node's item is returned
    assert all(i.node_id == node.id for i in items)
    assert title_of(items[1]) == "title i05"

    items, rsm = await st.get_items(node, item_ids=wanted, max_items=2)
    assert (names(items), rsm) == (["i08", "i05"], RSMResult(3, 0, "i08", "i05"))
    items, rsm = await st.get_items(node, item_ids=wanted, max_items=2, after="i05")
    assert (names(items), rsm) == (["i01"], RSMResult(3, 2, "i01", "i01"))
    items, rsm = await st.get_items(node, item_ids=wanted, max_items=2, before="")
    assert (names(items), rsm) == (["i05", "i01"], RSMResult(3, 1, "i05", "i01"))
    items, rsm = await st.get_items(node, item_ids=wanted, from_index=1, desc=False)
    assert (names(items), rsm) == (["i05", "i08"], RSMResult(3, 1, "i05", "i08"))

    # an item of the node which is not in the set cannot be a pivot
    with pytest.raises(NotFound):
        await st.get_items(node, item_ids=wanted, after="i02")

    items, rsm = await st.get_items(node, item_ids=[])
    assert (items, rsm) == ([], RSMResult(0, None, None, None))


@aio
async def test_get_items_unknown_pivot(st: Storage, clock: FakeClock) -> None:
    """after/before naming an item which is not in the node raise NotFound."""
    node = await build_rsm_node(st, clock)
    for kwargs in (
        {"after": "unknown"},
        {"before": "unknown"},
        {"after": "x0"},  # an item of another node
        {"before": "x0", "max_items": 2},
    ):
        with pytest.raises(NotFound):
            await st.get_items(node, **kwargs)
    empty = await new_node(st, "empty")
    with pytest.raises(NotFound):
        await st.get_items(empty, after="i01")
    items, rsm = await st.get_items(empty, before="")
    assert (items, rsm) == ([], RSMResult(0, None, None, None))


INVALID_GET_ITEMS: list[dict[str, Any]] = [
    {"order_by": "name"},
    {"order_by": "created"},
    {"before": "i01", "after": "i02"},
    {"before": "", "after": "i02"},
    {"after": "i01", "from_index": 1},
    {"before": "", "from_index": 0},
    {"max_items": -1},
    {"from_index": -1},
    {"from_index": -2, "max_items": 3},
]


async def invalid_input_failures(calls: list[tuple[str, Any]]) -> list[str]:
    """Await each ``(label, awaitable factory)``; describe those not raising InvalidInput."""
    failures = []
    for label, call in calls:
        try:
            result = await call()
        except InvalidInput:
            continue
        except Exception as e:
            failures.append(f"{label}: {e!r}")
        else:
            failures.append(f"{label}: no error, returned {result!r}")
    return failures


@aio
async def test_get_items_invalid_arguments(st: Storage, clock: FakeClock) -> None:
    """Invalid get_items arguments (order, exclusive pivots, negative numbers) raise
    InvalidInput."""
    node = await build_rsm_node(st, clock)
    calls = [
        (repr(kwargs), lambda kwargs=kwargs: st.get_items(node, **kwargs))
        for kwargs in INVALID_GET_ITEMS
    ]
    failures = await invalid_input_failures(calls)
    assert not failures, "\n".join(failures)


# --- search -----------------------------------------------------------------------------------

#: (node key, item id, title words, parsed), cached in this order (so created in this order)
SEARCH_ITEMS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    (
        "blog",
        "b3",
        "marmalade",
        {
            "title": "Gamma_ray 100%",
            "author": {"name": "louise"},
            "tags": ["xmpp", "rust", "go"],
            "views": 5,
            "score": 5,
            "published": True,
            "lang": "de",
            "date": "2023-12-31",
            "coords": [52.52, 13.4],
            "flags": [1],
            "nums": ["1"],
        },
    ),
    (
        "bob",
        "x1",
        "quokka",
        {
            "title": "Alpha",
            "author": {"name": "Bob"},
            "tags": ["xmpp"],
            "views": 1000,
            "published": True,
            "lang": "fr",
        },
    ),
    (
        "blog",
        "b1",
        "quokka zephyr",
        {
            "title": "Alpha",
            "author": {"name": "Louise", "email": "louise@example.org"},
            "tags": ["xmpp", "python"],
            "views": 100,
            "score": 4.5,
            "published": True,
            "lang": "fr",
            "date": "2024-01-15",
            "coords": [48.85, 2.35],
            "flags": [True],
            "nums": [1, 2, 3],
            "a.b": "dotted",
        },
    ),
    (
        "events",
        "e1",
        "nebula festival crème",
        {
            "title": "Fête de la musique 🎉",
            "start": 1700000000,
            "tags": ["music"],
            "lang": "en",
            "views": 50,
        },
    ),
    ("blog", "b4", "zephyr", None),
    (
        "comments",
        "c1",
        "reply",
        {"title": "re: Alpha", "author": {"name": "Marc"}, "views": 7, "lang": "fr"},
    ),
    (
        "blog",
        "b2",
        "quokka nebula",
        {
            "title": "beta",
            "author": {"name": "Marc"},
            "tags": ["rust"],
            "views": 20,
            "score": 3.0,
            "published": False,
            "lang": "en",
            "date": "2024-02-01",
            "coords": [40.71, -74.0],
            "flags": [False],
            "nums": [2.5],
            "a": {"b": "dotted"},
            "subtitle": None,
        },
    ),
]
ALL_SEARCH = {name for _, name, _, _ in SEARCH_ITEMS}
BY_CREATION_DESC = ["b2", "c1", "b4", "e1", "b1", "x1", "b3"]
#: b1 is cached again last
BY_MODIFICATION_DESC = ["b1", "b2", "c1", "b4", "e1", "x1", "b3"]


async def build_search_dataset(st: Storage, clock: FakeClock) -> dict[str, PubsubNode]:
    nodes = {
        "blog": await new_node(
            st, BLOG_NODE, "alice", SERVICE, type_="blog", subtype="microblog", analyser="mb"
        ),
        "comments": await new_node(
            st, COMMENTS_NODE, "alice", SERVICE, type_="blog", subtype="comments"
        ),
        "events": await new_node(st, EVENTS_NODE, "alice", EVENTS_SERVICE, type_="events"),
        "bob": await new_node(
            st, BLOG_NODE, "bob", SERVICE, type_="blog", subtype="microblog", analyser="mb"
        ),
    }
    for idx, (node_key, name, text, parsed) in enumerate(SEARCH_ITEMS):
        clock.set(T0 + 100 * (idx + 1))
        await cache(st, nodes[node_key], [(name, text, parsed)])
    clock.set(T0 + 5000)
    b1 = next(spec for spec in SEARCH_ITEMS if spec[1] == "b1")
    await cache(st, nodes["blog"], [(b1[1], b1[2], b1[3])])
    return nodes


async def search(st: Storage, query: dict[str, Any]) -> list[str]:
    """Names of the items found (in order), checking that none is returned twice."""
    found = names(await st.search_pubsub_items(query))
    assert len(found) == len(set(found)), f"duplicates in {found}"
    return found


async def found_set(st: Storage, query: dict[str, Any]) -> set[str]:
    return set(await search(st, query))


async def check_parsed(
    st: Storage, cases: list[tuple[dict[str, Any] | list[dict[str, Any]], set[str]]]
) -> None:
    """Run parsed filters (one, or a list of filters all applying) against expected sets."""
    for spec, expected in cases:
        parsed = spec if isinstance(spec, list) else [spec]
        assert await found_set(st, {"parsed": parsed}) == expected, spec


@aio
async def test_search_default_order_and_results(st: Storage, clock: FakeClock) -> None:
    """An empty query returns every item, newest first, with its node, XML and parsed data."""
    nodes = await build_search_dataset(st, clock)
    results = await st.search_pubsub_items({})
    assert names(results) == BY_CREATION_DESC
    e1 = next(i for i in results if i.name == "e1")
    assert (e1.node.id, e1.node.name, e1.node.service) == (
        nodes["events"].id,
        EVENTS_NODE,
        EVENTS_SERVICE,
    )
    assert (e1.node.type_, e1.node.subtype) == ("events", None)
    assert title_of(e1) == "nebula festival crème"
    assert e1.parsed is not None and e1.parsed["title"] == "Fête de la musique 🎉"
    x1 = next(i for i in results if i.name == "x1")
    assert x1.node.id == nodes["bob"].id
    assert x1.node.profile_id == nodes["bob"].profile_id != nodes["blog"].profile_id
    assert await search(st, {"order-by": []}) == BY_CREATION_DESC


@aio
async def test_search_node_filters(st: Storage, clock: FakeClock) -> None:
    """profiles, services, nodes, types, subtypes and names restrict the search; all combine."""
    await build_search_dataset(st, clock)
    alice = ALL_SEARCH - {"x1"}
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"profiles": ["alice"]}, alice),
        ({"profiles": ["bob"]}, {"x1"}),
        ({"profiles": ["alice", "bob"]}, ALL_SEARCH),
        ({"services": [EVENTS_SERVICE]}, {"e1"}),
        ({"services": [SERVICE]}, ALL_SEARCH - {"e1"}),
        ({"services": [SERVICE, EVENTS_SERVICE]}, ALL_SEARCH),
        ({"nodes": [BLOG_NODE]}, {"b1", "b2", "b3", "b4", "x1"}),
        ({"nodes": [COMMENTS_NODE, EVENTS_NODE]}, {"c1", "e1"}),
        ({"types": ["events"]}, {"e1"}),
        ({"types": ["blog"]}, ALL_SEARCH - {"e1"}),
        ({"subtypes": ["comments"]}, {"c1"}),
        ({"subtypes": ["microblog"]}, {"b1", "b2", "b3", "b4", "x1"}),
        ({"names": ["b2", "x1", "unknown"]}, {"b2", "x1"}),
        ({"profiles": ["alice"], "nodes": [BLOG_NODE]}, {"b1", "b2", "b3", "b4"}),
        ({"profiles": ["bob"], "types": ["events"]}, set()),
        (
            {"services": [SERVICE], "types": ["blog"], "subtypes": ["microblog"], "names": ["b1"]},
            {"b1"},
        ),
        ({"types": ["unknown"]}, set()),
        ({"services": []}, set()),
        ({"names": []}, set()),
        ({"profiles": []}, set()),
    ]
    for query, expected in cases:
        assert await found_set(st, query) == expected, query

    # filters keep the default order
    assert await search(st, {"profiles": ["alice"], "nodes": [BLOG_NODE]}) == [
        "b2",
        "b4",
        "b1",
        "b3",
    ]
    with pytest.raises(ProfileUnknownError):
        await st.search_pubsub_items({"profiles": ["nobody"]})


@aio
async def test_search_fts(st: Storage, clock: FakeClock) -> None:
    """Full-text search: every word must match, case-insensitively, combined with filters."""
    await build_search_dataset(st, clock)
    cases: list[tuple[str, set[str]]] = [
        ("quokka", {"b1", "b2", "x1"}),
        ("zephyr", {"b1", "b4"}),
        ("quokka zephyr", {"b1"}),
        ("zephyr quokka", {"b1"}),
        ("quokka nebula", {"b2"}),
        ("  quokka   nebula  ", {"b2"}),
        ("QUOKKA Zephyr", {"b1"}),
        ("crème", {"e1"}),
        ("nebula festival crème", {"e1"}),
        ("quokka marmalade", set()),
        ("absentword", set()),
        ("quokka absentword", set()),
    ]
    for fts, expected in cases:
        assert await found_set(st, {"fts": fts}) == expected, fts

    assert await found_set(st, {"fts": "quokka", "profiles": ["alice"]}) == {"b1", "b2"}
    assert await found_set(st, {"fts": "quokka", "profiles": ["bob"]}) == {"x1"}
    assert await found_set(
        st, {"fts": "quokka", "parsed": [{"path": "lang", "op": "eq", "value": "fr"}]}
    ) == {"b1", "x1"}
    # default order still applies
    assert await search(st, {"fts": "quokka"}) == ["b2", "b1", "x1"]


@aio
async def test_search_fts_syntax_is_not_interpreted(st: Storage, clock: FakeClock) -> None:
    """FTS syntax characters and keywords in the user text never raise; punctuation around
    a word is ignored."""
    await build_search_dataset(st, clock)
    for fts in (
        "quokka*",
        '"quokka',
        'quokka"',
        '"quokka"',
        "(quokka",
        "quokka)",
        "quokka:",
        "-quokka",
        "+quokka",
        "^quokka",
        "{quokka}",
        "quokka;",
        "quokka'",
        "quokka,",
    ):
        assert await found_set(st, {"fts": fts}) == {"b1", "b2", "x1"}, fts
    for fts in (
        "quokka AND zephyr",
        "quokka OR nebula",
        "NOT quokka",
        "quokka NOT zephyr",
        "NEAR(quokka zephyr)",
        "NEAR(quokka zephyr, 2)",
        "data:quokka",
        "title : quokka",
        "{title data}: quokka",
        "quokka + zephyr",
        "* ^ : ( ) \" ' - + { }",
        "AND",
        "OR",
        '"""',
        "\\",
        "%_",
        "'; DROP TABLE pubsub_items; --",
    ):
        assert isinstance(await search(st, {"fts": fts}), list), fts
    assert await count_rows(st, "pubsub_items") == len(ALL_SEARCH)


@aio
async def test_search_fts_empty_text(st: Storage, clock: FakeClock) -> None:
    """An fts text without any word matches nothing (it does not raise)."""
    await build_search_dataset(st, clock)
    for fts in ("", "   ", "***", "()"):
        assert await search(st, {"fts": fts}) == [], repr(fts)


@aio
async def test_search_order_by_rank(st: Storage, clock: FakeClock) -> None:
    """order-by rank (with fts) puts the most relevant items first."""
    node = await new_node(st)
    filler = "lorem ipsum dolor sit amet consectetur adipiscing elit"
    # same length, different number of occurrences; created in an order unrelated to rank
    texts = {
        "r4": "nebula nebula nebula nebula " + " ".join(filler.split()[:4]),
        "r1": "nebula " + " ".join(filler.split()[:7]),
        "r2": "nebula nebula " + " ".join(filler.split()[:6]),
        "other": filler,
    }
    for idx, (name, text) in enumerate(texts.items()):
        clock.set(T0 + idx)
        await cache(st, node, [(name, text, None)])
    assert await search(st, {"fts": "nebula"}) == ["r2", "r1", "r4"]
    assert await search(st, {"fts": "nebula", "order-by": [{"order": "rank"}]}) == [
        "r4",
        "r2",
        "r1",
    ]
    assert await search(
        st, {"fts": "nebula", "order-by": [{"order": "rank"}], "index": 1, "limit": 1}
    ) == ["r2"]
    # rank as a secondary key
    assert await search(
        st,
        {
            "fts": "nebula",
            "order-by": [{"order": "item_id", "direction": "desc"}, {"order": "rank"}],
        },
    ) == ["r4", "r2", "r1"]


@aio
async def test_search_order_by(st: Storage, clock: FakeClock) -> None:
    """order-by creation, modification and item_id, in both directions, and several keys."""
    await build_search_dataset(st, clock)
    cases: list[tuple[list[dict[str, Any]], list[str]]] = [
        ([{"order": "creation", "direction": "desc"}], BY_CREATION_DESC),
        ([{"order": "creation", "direction": "asc"}], list(reversed(BY_CREATION_DESC))),
        ([{"order": "creation"}], list(reversed(BY_CREATION_DESC))),  # asc by default
        ([{"order": "modification", "direction": "desc"}], BY_MODIFICATION_DESC),
        ([{"order": "modification"}], list(reversed(BY_MODIFICATION_DESC))),
        ([{"order": "item_id"}], sorted(ALL_SEARCH)),
        ([{"order": "item_id", "direction": "desc"}], sorted(ALL_SEARCH, reverse=True)),
    ]
    for order_by, expected in cases:
        assert await search(st, {"order-by": order_by}) == expected, order_by


@aio
async def test_search_order_by_json_path(st: Storage, clock: FakeClock) -> None:
    """order-by a JSON path uses the native ordering of numbers and strings."""
    await build_search_dataset(st, clock)
    with_views = [{"path": "views", "op": "exists"}]
    # as text, the order would be 100, 1000, 20, 5, 50, 7
    by_views = ["b3", "c1", "b2", "e1", "b1", "x1"]
    assert (
        await search(
            st, {"parsed": with_views, "order-by": [{"path": "views", "direction": "asc"}]}
        )
        == by_views
    )
    assert await search(st, {"parsed": with_views, "order-by": [{"path": ["views"]}]}) == by_views
    assert await search(
        st, {"parsed": with_views, "order-by": [{"path": "views", "direction": "desc"}]}
    ) == list(reversed(by_views))

    # floats and ints mixed, array index
    with_score = [{"path": "score", "op": "exists"}]
    assert await search(
        st, {"parsed": with_score, "order-by": [{"path": "score", "direction": "desc"}]}
    ) == ["b3", "b1", "b2"]
    with_coords = [{"path": ["coords", 1], "op": "exists"}]
    assert await search(st, {"parsed": with_coords, "order-by": [{"path": ["coords", 1]}]}) == [
        "b2",
        "b1",
        "b3",
    ]

    # strings (code point order), nested path, then a second key for ties ("Marc")
    with_author = [{"path": ["author", "name"], "op": "exists"}]
    assert await search(
        st,
        {
            "parsed": with_author,
            "order-by": [
                {"path": ["author", "name"]},
                {"order": "item_id", "direction": "desc"},
            ],
        },
    ) == ["x1", "b1", "c1", "b2", "b3"]
    assert await search(
        st,
        {
            "parsed": with_author,
            "order-by": [
                {"path": ["author", "name"], "direction": "desc"},
                {"order": "item_id", "direction": "asc"},
            ],
        },
    ) == ["b3", "b2", "c1", "b1", "x1"]


@aio
async def test_search_paging(st: Storage, clock: FakeClock) -> None:
    """index skips items and limit caps their number, after ordering."""
    await build_search_dataset(st, clock)
    by_id = {"order-by": [{"order": "item_id"}]}
    ordered = sorted(ALL_SEARCH)
    assert await search(st, {**by_id, "index": 2, "limit": 3}) == ordered[2:5]
    assert await search(st, {**by_id, "limit": 2}) == ordered[:2]
    assert await search(st, {**by_id, "index": 5}) == ordered[5:]
    assert await search(st, {**by_id, "index": 0, "limit": 0}) == []
    assert await search(st, {**by_id, "index": 7}) == []
    assert await search(st, {**by_id, "index": 100, "limit": 10}) == []
    assert await search(st, {"index": 1, "limit": 2}) == BY_CREATION_DESC[1:3]
    pages = [await search(st, {**by_id, "index": i, "limit": 3}) for i in range(0, 9, 3)]
    assert [n for page in pages for n in page] == ordered


@aio
async def test_search_parsed_numbers(st: Storage, clock: FakeClock) -> None:
    """Comparison operators on numbers (ints and floats), and on array elements."""
    await build_search_dataset(st, clock)
    has_views = {"path": "views", "op": "exists"}
    await check_parsed(
        st,
        [
            ({"path": "views", "op": "eq", "value": 100}, {"b1"}),
            ({"path": "views", "op": "eq", "value": 100.0}, {"b1"}),
            ({"path": "views", "value": 1000}, {"x1"}),  # eq by default
            (
                [has_views, {"path": "views", "op": "ne", "value": 100}],
                {"b2", "b3", "c1", "e1", "x1"},
            ),
            ({"path": "views", "op": "gt", "value": 50}, {"b1", "x1"}),
            ({"path": "views", "op": "gte", "value": 50}, {"b1", "e1", "x1"}),
            ({"path": "views", "op": "lt", "value": 20}, {"b3", "c1"}),
            ({"path": "views", "op": "lte", "value": 20}, {"b2", "b3", "c1"}),
            ({"path": "views", "op": "gt", "value": 6.5}, {"b1", "b2", "c1", "e1", "x1"}),
            ({"path": "views", "op": "gt", "value": 1000}, set()),
            ({"path": "score", "op": "gt", "value": 4}, {"b1", "b3"}),
            ({"path": "score", "op": "lt", "value": 4.5}, {"b2"}),
            ({"path": "score", "op": "lte", "value": 4.5}, {"b1", "b2"}),
            ({"path": "score", "op": "eq", "value": 5}, {"b3"}),
            ({"path": "score", "op": "eq", "value": 3}, {"b2"}),
            ({"path": "start", "op": "gte", "value": 1_700_000_000}, {"e1"}),
            ({"path": "start", "op": "gt", "value": 1_700_000_000}, set()),
            ({"path": ["coords", 0], "op": "gt", "value": 45}, {"b1", "b3"}),
            ({"path": ["coords", 1], "op": "lt", "value": 0}, {"b2"}),
            ({"path": ["coords", 1], "op": "eq", "value": -74}, {"b2"}),
            ({"path": "views", "op": "between", "value": [5, 50]}, {"b2", "b3", "c1", "e1"}),
            ({"path": "views", "op": "between", "value": [6, 99]}, {"b2", "c1", "e1"}),
            ({"path": "score", "op": "between", "value": [3, 4.5]}, {"b1", "b2"}),
            ({"path": "views", "op": "between", "value": [50, 5]}, set()),
            ({"path": "views", "op": "in", "value": [5, 1000]}, {"b3", "x1"}),
            ({"path": "score", "op": "in", "value": [4.5, 99]}, {"b1"}),
            (
                [has_views, {"path": "views", "op": "not_in", "value": [5, 7, 20]}],
                {"b1", "e1", "x1"},
            ),
            (
                [
                    {"path": "views", "op": "gte", "value": 7},
                    {"path": "views", "op": "lte", "value": 100},
                ],
                {"b1", "b2", "c1", "e1"},
            ),
        ],
    )


@aio
async def test_search_parsed_strings(st: Storage, clock: FakeClock) -> None:
    """Comparison operators on strings (including non-ASCII), nested paths and indexes."""
    await build_search_dataset(st, clock)
    has_lang = {"path": "lang", "op": "exists"}
    await check_parsed(
        st,
        [
            ({"path": "lang", "op": "eq", "value": "fr"}, {"b1", "c1", "x1"}),
            ({"path": "lang", "value": "fr"}, {"b1", "c1", "x1"}),
            ({"path": "lang", "op": "eq", "value": "FR"}, set()),
            ([has_lang, {"path": "lang", "op": "ne", "value": "fr"}], {"b2", "b3", "e1"}),
            ({"path": "date", "op": "gt", "value": "2024-01-01"}, {"b1", "b2"}),
            ({"path": "date", "op": "gte", "value": "2024-01-15"}, {"b1", "b2"}),
            ({"path": "date", "op": "lt", "value": "2024-01-15"}, {"b3"}),
            ({"path": "date", "op": "lte", "value": "2024-01-15"}, {"b1", "b3"}),
            (
                {"path": "date", "op": "between", "value": ["2024-01-01", "2024-01-31"]},
                {"b1"},
            ),
            (
                {"path": "date", "op": "between", "value": ["2023-12-31", "2024-01-15"]},
                {"b1", "b3"},
            ),
            ({"path": "lang", "op": "in", "value": ["de", "en"]}, {"b2", "b3", "e1"}),
            ([has_lang, {"path": "lang", "op": "not_in", "value": ["fr"]}], {"b2", "b3", "e1"}),
            ({"path": "title", "op": "eq", "value": "Fête de la musique 🎉"}, {"e1"}),
            ({"path": ["author", "name"], "op": "eq", "value": "Louise"}, {"b1"}),
            (
                {"path": ["author", "name"], "op": "in", "value": ["Marc", "Bob"]},
                {"b2", "c1", "x1"},
            ),
            ({"path": ["author", "email"], "value": "louise@example.org"}, {"b1"}),
            ({"path": ["tags", 0], "op": "eq", "value": "xmpp"}, {"b1", "b3", "x1"}),
            ({"path": ["tags", 1], "op": "eq", "value": "rust"}, {"b3"}),
            ({"path": ["tags", 2], "op": "eq", "value": "go"}, {"b3"}),
            # a key holding a dot is one key, not a path
            ({"path": "a.b", "value": "dotted"}, {"b1"}),
            ({"path": ["a.b"], "value": "dotted"}, {"b1"}),
            ({"path": ["a", "b"], "value": "dotted"}, {"b2"}),
        ],
    )


@aio
async def test_search_parsed_booleans(st: Storage, clock: FakeClock) -> None:
    """Comparison operators on booleans."""
    await build_search_dataset(st, clock)
    published = {"path": "published", "op": "exists"}
    await check_parsed(
        st,
        [
            ({"path": "published", "op": "eq", "value": True}, {"b1", "b3", "x1"}),
            ({"path": "published", "value": False}, {"b2"}),
            ([published, {"path": "published", "op": "ne", "value": True}], {"b2"}),
            ([published, {"path": "published", "op": "ne", "value": False}], {"b1", "b3", "x1"}),
            ({"path": "published", "op": "in", "value": [True]}, {"b1", "b3", "x1"}),
            ({"path": "published", "op": "in", "value": [True, False]}, {"b1", "b2", "b3", "x1"}),
            ([published, {"path": "published", "op": "not_in", "value": [True]}], {"b2"}),
        ],
    )


@aio
async def test_search_parsed_like(st: Storage, clock: FakeClock) -> None:
    """like is a case-sensitive SQL pattern, ilike ignores case (ASCII)."""
    await build_search_dataset(st, clock)
    await check_parsed(
        st,
        [
            ({"path": "title", "op": "like", "value": "Alpha"}, {"b1", "x1"}),
            ({"path": "title", "op": "like", "value": "%Alpha"}, {"b1", "c1", "x1"}),
            ({"path": "title", "op": "like", "value": "%lph%"}, {"b1", "c1", "x1"}),
            ({"path": "title", "op": "like", "value": "alpha"}, set()),
            ({"path": "title", "op": "like", "value": "%ALPHA%"}, set()),
            ({"path": "title", "op": "like", "value": "_eta"}, {"b2"}),
            ({"path": "title", "op": "like", "value": "Gamma_ray 100%"}, {"b3"}),
            ({"path": "title", "op": "like", "value": "Gamma*"}, set()),
            ({"path": "title", "op": "like", "value": "F_te%🎉"}, {"e1"}),
            ({"path": "title", "op": "ilike", "value": "alpha"}, {"b1", "x1"}),
            ({"path": "title", "op": "ilike", "value": "%ALPHA%"}, {"b1", "c1", "x1"}),
            ({"path": "title", "op": "ilike", "value": "BETA"}, {"b2"}),
            ({"path": ["author", "name"], "op": "like", "value": "Louise"}, {"b1"}),
            ({"path": ["author", "name"], "op": "like", "value": "%ouise"}, {"b1", "b3"}),
            ({"path": ["author", "name"], "op": "ilike", "value": "louise"}, {"b1", "b3"}),
            ({"path": ["tags", 0], "op": "like", "value": "x%"}, {"b1", "b3", "x1"}),
        ],
    )


@aio
async def test_search_parsed_contains_overlap(st: Storage, clock: FakeClock) -> None:
    """contains/overlap test the elements of a JSON array, respecting JSON types."""
    await build_search_dataset(st, clock)
    await check_parsed(
        st,
        [
            ({"path": "tags", "op": "contains", "value": "xmpp"}, {"b1", "b3", "x1"}),
            ({"path": "tags", "op": "contains", "value": "rust"}, {"b2", "b3"}),
            ({"path": "tags", "op": "contains", "value": "XMPP"}, set()),
            ({"path": "tags", "op": "contains", "value": "nope"}, set()),
            ({"path": "nums", "op": "contains", "value": 1}, {"b1"}),
            ({"path": "nums", "op": "contains", "value": 2}, {"b1"}),
            ({"path": "nums", "op": "contains", "value": 2.0}, {"b1"}),
            ({"path": "nums", "op": "contains", "value": 2.5}, {"b2"}),
            ({"path": "nums", "op": "contains", "value": "1"}, {"b3"}),
            ({"path": "flags", "op": "contains", "value": True}, {"b1"}),
            ({"path": "flags", "op": "contains", "value": False}, {"b2"}),
            ({"path": "flags", "op": "contains", "value": 1}, {"b3"}),
            ({"path": ["coords"], "op": "contains", "value": -74.0}, {"b2"}),
            # only arrays contain values
            ({"path": "lang", "op": "contains", "value": "fr"}, set()),
            ({"path": "author", "op": "contains", "value": "Marc"}, set()),
            ({"path": "tags", "op": "overlap", "value": ["rust", "music"]}, {"b2", "b3", "e1"}),
            ({"path": "tags", "op": "overlap", "value": ["python"]}, {"b1"}),
            ({"path": "tags", "op": "overlap", "value": ["nope", "zip"]}, set()),
            ({"path": "nums", "op": "overlap", "value": [3, 2.5]}, {"b1", "b2"}),
            ({"path": "nums", "op": "overlap", "value": ["1", 99]}, {"b3"}),
            ({"path": "flags", "op": "overlap", "value": [False, 1]}, {"b2", "b3"}),
            (
                [
                    {"path": "tags", "op": "contains", "value": "xmpp"},
                    {"path": "tags", "op": "contains", "value": "rust"},
                ],
                {"b3"},
            ),
        ],
    )


@aio
async def test_search_parsed_exists(st: Storage, clock: FakeClock) -> None:
    """exists/not_exists test the presence of a path (a JSON null value is present)."""
    await build_search_dataset(st, clock)
    await check_parsed(
        st,
        [
            ({"path": ["author", "email"], "op": "exists"}, {"b1"}),
            ({"path": ["author", "email"], "op": "not_exists"}, ALL_SEARCH - {"b1"}),
            ({"path": "author", "op": "exists"}, {"b1", "b2", "b3", "c1", "x1"}),
            ({"path": "author", "op": "not_exists"}, {"b4", "e1"}),
            ({"path": "subtitle", "op": "exists"}, {"b2"}),
            ({"path": "subtitle", "op": "not_exists"}, ALL_SEARCH - {"b2"}),
            ({"path": ["tags", 2], "op": "exists"}, {"b3"}),
            ({"path": ["tags", 5], "op": "exists"}, set()),
            ({"path": "a.b", "op": "exists"}, {"b1"}),
            ({"path": ["a", "b"], "op": "exists"}, {"b2"}),
            ({"path": "unknown", "op": "exists"}, set()),
            ({"path": "unknown", "op": "not_exists"}, ALL_SEARCH),
            (
                [{"path": "published", "op": "exists"}, {"path": "score", "op": "not_exists"}],
                {"x1"},
            ),
        ],
    )


#: (label, query) of malformed search queries
MALFORMED_QUERIES: list[tuple[str, Any]] = [
    ("not-a-dict", ["fts", "quokka"]),
    ("unknown-key", {"unknown": 1}),
    ("unknown-key-order_by", {"order_by": [{"order": "creation"}]}),
    ("fts-not-str", {"fts": 42}),
    ("services-not-list", {"services": "pubsub.example.org"}),
    ("names-not-list", {"names": "b1"}),
    ("profiles-not-list", {"profiles": "alice"}),
    ("parsed-not-list", {"parsed": {"path": "lang", "value": "fr"}}),
    ("filter-not-dict", {"parsed": ["lang"]}),
    ("unknown-op", {"parsed": [{"path": "lang", "op": "regex", "value": "f"}]}),
    ("op-case", {"parsed": [{"path": "lang", "op": "EQ", "value": "f"}]}),
    ("no-path", {"parsed": [{"op": "eq", "value": "fr"}]}),
    ("empty-path", {"parsed": [{"path": [], "value": "fr"}]}),
    ("float-in-path", {"parsed": [{"path": [1.5], "value": "fr"}]}),
    ("float-path", {"parsed": [{"path": 1.5, "value": "fr"}]}),
    ("bool-in-path", {"parsed": [{"path": [True], "value": "fr"}]}),
    ("bool-path", {"parsed": [{"path": True, "value": "fr"}]}),
    ("none-in-path", {"parsed": [{"path": ["a", None], "value": "fr"}]}),
    ("dict-path", {"parsed": [{"path": {"a": 1}, "value": "fr"}]}),
    ("eq-no-value", {"parsed": [{"path": "lang", "op": "eq"}]}),
    ("gt-none", {"parsed": [{"path": "lang", "op": "gt", "value": None}]}),
    ("eq-dict", {"parsed": [{"path": "lang", "value": {"a": 1}}]}),
    ("eq-list", {"parsed": [{"path": "lang", "value": ["fr"]}]}),
    ("between1", {"parsed": [{"path": "views", "op": "between", "value": [1]}]}),
    ("between-int", {"parsed": [{"path": "views", "op": "between", "value": 5}]}),
    ("between-none", {"parsed": [{"path": "views", "op": "between", "value": [None, 5]}]}),
    ("between-mixed", {"parsed": [{"path": "views", "op": "between", "value": [1, "z"]}]}),
    ("between-dict", {"parsed": [{"path": "views", "op": "between", "value": [1, {}]}]}),
    ("in-mixed", {"parsed": [{"path": "lang", "op": "in", "value": ["fr", 1]}]}),
    ("in-none", {"parsed": [{"path": "lang", "op": "in", "value": ["fr", None]}]}),
    ("not-in-mixed", {"parsed": [{"path": "views", "op": "not_in", "value": [1, "x"]}]}),
    ("in-empty", {"parsed": [{"path": "lang", "op": "in", "value": []}]}),
    ("in-str", {"parsed": [{"path": "lang", "op": "in", "value": "fr"}]}),
    ("not-in-no-value", {"parsed": [{"path": "lang", "op": "not_in"}]}),
    ("like-int", {"parsed": [{"path": "lang", "op": "like", "value": 1}]}),
    ("ilike-no-value", {"parsed": [{"path": "lang", "op": "ilike"}]}),
    ("contains-dict", {"parsed": [{"path": "tags", "op": "contains", "value": {"a": 1}}]}),
    ("contains-list", {"parsed": [{"path": "tags", "op": "contains", "value": ["a"]}]}),
    ("contains-no-value", {"parsed": [{"path": "tags", "op": "contains"}]}),
    ("overlap0", {"parsed": [{"path": "tags", "op": "overlap", "value": []}]}),
    ("overlap-str", {"parsed": [{"path": "tags", "op": "overlap", "value": "xmpp"}]}),
    ("overlap-nested", {"parsed": [{"path": "tags", "op": "overlap", "value": [["a"]]}]}),
    ("rank-without-fts", {"order-by": [{"order": "rank"}]}),
    ("unknown-order", {"order-by": [{"order": "name"}]}),
    ("empty-order", {"order-by": [{}]}),
    ("order-not-dict", {"order-by": ["creation"]}),
    ("order-by-not-list", {"order-by": {"order": "creation"}}),
    ("bad-direction", {"order-by": [{"order": "creation", "direction": "up"}]}),
    ("direction-case", {"order-by": [{"order": "creation", "direction": "DESC"}]}),
    ("order-bad-path", {"order-by": [{"path": []}]}),
    ("order-float-path", {"order-by": [{"path": [1.5]}]}),
    ("negative-limit", {"limit": -1}),
    ("negative-index", {"index": -1}),
    ("str-limit", {"limit": "3"}),
    ("float-limit", {"limit": 2.0}),
    ("bool-limit", {"limit": True}),
    ("str-index", {"index": "1"}),
]


@aio
async def test_search_malformed_queries(st: Storage, clock: FakeClock) -> None:
    """Malformed search queries raise InvalidInput (never another error, never a result)."""
    await cache(st, await new_node(st), [("a", "quokka", {"lang": "fr", "tags": ["xmpp"]})])
    calls = [
        (label, lambda query=query: st.search_pubsub_items(query))
        for label, query in MALFORMED_QUERIES
    ]
    failures = await invalid_input_failures(calls)
    assert not failures, "\n".join(failures)


@aio
async def test_search_parsed_mixed_json_types(st: Storage) -> None:
    """Items whose value has another JSON type than the filter's simply do not match.

    (On PostgreSQL a numeric comparison on a string value would otherwise fail the whole query.)
    """
    node = await new_node(st)
    await st.cache_pubsub_items(
        node,
        [make_item(str(i)) for i in range(5)],
        [{"views": 10}, {"views": "many"}, {"views": True}, {"views": 30.5}, {"other": 1}],
    )
    found = await st.search_pubsub_items({"parsed": [{"path": "views", "op": "gte", "value": 10}]})
    assert sorted(names(found)) == ["0", "3"]
    found = await st.search_pubsub_items({"parsed": [{"path": "views", "op": "eq", "value": True}]})
    assert names(found) == ["2"]
    found = await st.search_pubsub_items(
        {"parsed": [{"path": "views", "op": "eq", "value": "many"}]}
    )
    assert names(found) == ["1"]


@aio
async def test_search_path_key_with_quote_is_refused(st: Storage) -> None:
    """Keys containing a double quote cannot be expressed on SQLite: refused on every engine."""
    with pytest.raises(InvalidInput, match="cannot contain"):
        await st.search_pubsub_items({"parsed": [{"path": ['a"b'], "op": "exists"}]})


@aio
async def test_get_pubsub_nodes_by_sync_state(st: Storage) -> None:
    """A profile's nodes, filtered by synchronisation state (None: never analysed)."""
    done = await new_node(st)
    failed = await new_node(st, "failed")
    fresh = await new_node(st, "fresh")
    await st.set_pubsub_node("bob", SERVICE, "bob's")
    await st.update_pubsub_node_sync_state(done, SyncState.COMPLETED)
    await st.update_pubsub_node_sync_state(failed, SyncState.ERROR)

    def names(nodes: list[PubsubNode]) -> list[str]:
        return [n.name for n in nodes]

    assert names(await st.get_pubsub_nodes("alice")) == [BLOG_NODE, "failed", "fresh"]
    assert names(await st.get_pubsub_nodes("alice", [SyncState.COMPLETED])) == [BLOG_NODE]
    assert names(await st.get_pubsub_nodes("alice", [SyncState.ERROR, None])) == ["failed", "fresh"]
    assert fresh.sync_state is None
    assert names(await st.get_pubsub_nodes("bob", [SyncState.IN_PROGRESS])) == []
    with pytest.raises(ProfileUnknownError):
        await st.get_pubsub_nodes("nobody")
