"""XEP-0115 entity capabilities on the fake stream: our <c/>, answering node#ver, learning,
verifying and reusing others' capabilities from the database cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.plugins.plugin_xep_0115 import NODE, verification_string
from tests.conftest import aio
from tests.unit.core.fakes import logged_in, started_host

NS_INFO = "http://jabber.org/protocol/disco#info"
EXODUS_VER = "QgayPKawpkPSDYmwT/WM94uAlu0="  # XEP-0115 §5.2
EXODUS_INFO = (
    "<identity category='client' type='pc' name='Exodus 0.9.1'/>"
    "<feature var='http://jabber.org/protocol/caps'/>"
    f"<feature var='{NS_INFO}'/>"
    "<feature var='http://jabber.org/protocol/disco#items'/>"
    "<feature var='http://jabber.org/protocol/muc'/>"
)


def caps_presence(sender: str, ver: str) -> str:
    return (
        f"<presence from='{sender}'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
        f"node='http://code.google.com/p/exodus' ver='{ver}'/></presence>"
    )


async def until(predicate, timeout: float = 10) -> None:
    """Yield to the loop until ``predicate()`` (database reads finish in their thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0)


async def settle(host=None) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    if host is not None:
        await host.plugins["XEP-0115"].wait_idle()
        for _ in range(20):
            await asyncio.sleep(0)


def disco_requests(sent) -> list:
    """The capability queries (disco#info on a node) among sent stanzas (other plugins may
    send their own disco queries to the server)."""
    return [
        e
        for e in sent
        if e.name == "iq"
        and e.getAttribute("type") == "get"
        and (query := next(e.elements(NS_INFO, "query"), None)) is not None
        and query.getAttribute("node")
    ]


@aio
async def test_our_presence_has_caps_and_we_answer_the_node(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", "bob@localhost/phone")
        # logged_in consumed the roster request: the initial presence is next
        (presence,) = stream.sent()
        c = next(presence.elements("http://jabber.org/protocol/caps", "c"))
        assert (c["hash"], c["node"]) == ("sha-1", NODE)
        identities, features = host.plugins["XEP-0030"].own_infos()
        assert c["ver"] == verification_string(identities, features)
        stream.receive(
            f"<iq type='get' id='q1' from='alice@localhost/pc'>"
            f"<query xmlns='{NS_INFO}' node='{NODE}#{c['ver']}'/></iq>"
        )
        await settle(host)
        (answer,) = stream.sent()
        assert answer["type"] == "result"
        query = next(answer.elements(NS_INFO, "query"))
        assert query["node"] == f"{NODE}#{c['ver']}"
        assert {f["var"] for f in query.elements(NS_INFO, "feature")} == set(features)
    finally:
        await host.stop()


@aio
async def test_learned_once_verified_and_reused_from_the_database(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", "bob@localhost/phone")
        stream.sent()
        stream.receive(caps_presence("alice@localhost/pc", EXODUS_VER))
        sent: list = []
        await until(lambda: sent.extend(stream.sent()) or disco_requests(sent))
        (request,) = disco_requests(sent)
        assert request["to"] == "alice@localhost/pc"
        assert next(request.elements(NS_INFO, "query"))["node"] == (
            f"http://code.google.com/p/exodus#{EXODUS_VER}"
        )
        stream.receive(
            f"<iq type='result' id='{request['id']}' from='alice@localhost/pc'>"
            f"<query xmlns='{NS_INFO}' node='http://code.google.com/p/exodus#{EXODUS_VER}'>"
            f"{EXODUS_INFO}</query></iq>"
        )
        await settle(host)
        disco = host.plugins["XEP-0030"]
        info = await disco.get_infos(client, JID("alice@localhost/pc"))
        assert "http://jabber.org/protocol/muc" in info.features
        assert stream.sent() == []  # known from the capabilities: no disco#info query
    finally:
        await host.stop()

    # a new run (the cache is in the database) and another profile: nothing is asked
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "carol", "carol@localhost/pc")
        stream.sent()
        stream.receive(caps_presence("dave@localhost/laptop", EXODUS_VER))
        await settle(host)
        assert disco_requests(stream.sent()) == []
        info = await host.plugins["XEP-0030"].get_infos(client, JID("dave@localhost/laptop"))
        assert "http://jabber.org/protocol/muc" in info.features
        assert stream.sent() == []
    finally:
        await host.stop()


@aio
async def test_lying_entity_is_not_cached(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", "bob@localhost/phone")
        stream.sent()
        stream.receive(caps_presence("mallory@localhost/x", EXODUS_VER))
        sent: list = []
        await until(lambda: sent.extend(stream.sent()) or disco_requests(sent))
        (request,) = disco_requests(sent)
        stream.receive(
            f"<iq type='result' id='{request['id']}' from='mallory@localhost/x'>"
            f"<query xmlns='{NS_INFO}'><identity category='client' type='pc'/>"
            "<feature var='urn:evil'/></query></iq>"
        )
        await settle(host)
        # an honest entity with the same ver is asked again: nothing was cached
        stream.receive(caps_presence("alice@localhost/pc", EXODUS_VER))
        sent = []
        await until(lambda: sent.extend(stream.sent()) or disco_requests(sent))
        assert len(disco_requests(sent)) == 1
    finally:
        await host.stop()
