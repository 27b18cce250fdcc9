"""The XMPP client on a fake stream: roster, presence, subscriptions, disco, IQ timeouts,
and the login errors users see."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from OpenSSL import SSL
from twisted.internet import error
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import sasl as jsasl
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import (
    AuthenticationFailed,
    ConnectionFailed,
    NotConnected,
    OperationTimeout,
    TLSFailed,
    XMPPError,
)
from libervia.backend.core.xmpp import ConnectionSettings, login_error, make_iq
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

BOB = "bob@localhost/phone"
NS_INFO = "http://jabber.org/protocol/disco#info"
ROSTER = (
    "<item jid='alice@localhost' name='Alice' subscription='both'><group>Friends</group></item>"
    "<item jid='carol@localhost' subscription='none' ask='subscribe'/>"
)


def signals(host, name: str) -> list[tuple]:
    return [args for signal, args in host.bridge.emitted if signal == name]


async def turn() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@aio
async def test_login_fetches_roster_then_sends_presence(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB, ROSTER)
        # after the roster answer: initial presence (with our capabilities), nothing else
        ver = host.plugins["XEP-0115"].own_ver()
        assert stream.sent_xml() == [
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
            f"node='https://libervia.org/' ver='{ver}'/></presence>"
        ]
        assert signals(host, "contact_new") == [
            (
                "alice@localhost",
                {"name": "Alice", "to": "true", "from": "true", "ask": ""},
                ["Friends"],
                "bob",
            ),
            (
                "carol@localhost",
                {"name": "", "to": "false", "from": "false", "ask": "subscribe"},
                [],
                "bob",
            ),
        ]
        assert signals(host, "connected") == [(BOB, "bob")]
        assert host.is_connected("bob")
    finally:
        await host.stop()
    assert signals(host, "disconnected") == [("bob",)]


@aio
async def test_roster_pushes(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB, ROSTER)
        stream.sent()
        stream.receive(
            "<iq type='set' id='push1'><query xmlns='jabber:iq:roster'>"
            "<item jid='dave@localhost' subscription='to' name='Dave'/></query></iq>"
        )
        stream.receive(
            "<iq type='set' id='push2'><query xmlns='jabber:iq:roster'>"
            "<item jid='alice@localhost' subscription='remove'/></query></iq>"
        )
        # a push from a stranger is refused (no roster poisoning)
        stream.receive(
            "<iq type='set' id='push3' from='evil@localhost'><query xmlns='jabber:iq:roster'>"
            "<item jid='x@localhost'/></query></iq>"
        )
        await turn()
        assert signals(host, "contact_new")[-1][0] == "dave@localhost"
        assert signals(host, "contact_deleted") == [("alice@localhost", "bob")]
        assert sorted(client.roster.contacts) == ["carol@localhost", "dave@localhost"]
        sent = stream.sent_xml()
        assert "<iq id='push1' type='result'/>" in sent
        assert any("push3" in s and "type='error'" in s for s in sent)
    finally:
        await host.stop()


@aio
async def test_presence_and_subscriptions(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB, ROSTER)
        stream.sent()
        stream.receive(
            "<presence from='alice@localhost/pc'><show>away</show><priority>5</priority>"
            "<status>lunch</status></presence>"
        )
        assert client.presence.statuses == {"alice@localhost": {"pc": ("away", 5, {"": "lunch"})}}
        stream.receive("<presence from='alice@localhost/pc' type='unavailable'/>")
        assert client.presence.statuses == {}
        assert [s[:2] for s in signals(host, "presence_update")] == [
            ("alice@localhost/pc", "away"),
            ("alice@localhost/pc", "unavailable"),
        ]
        # a stranger asks: the user is asked (action_new); nothing is sent
        stream.receive("<presence from='eve@localhost' type='subscribe'/>")
        (action,) = signals(host, "action_new")
        assert json.loads(action[0]) == {
            "type": "subscription",
            "subtype": "subscribe",
            "from_jid": "eve@localhost",
        }
        assert stream.sent_xml() == []
        # carol, whom we asked, asks back: accepted at once
        stream.receive("<presence from='carol@localhost' type='subscribe'/>")
        assert stream.sent_xml() == ["<presence to='carol@localhost' type='subscribed'/>"]
        # the user accepts eve: subscribed, and a request back
        client.presence.answer("subscribed", JID("eve@localhost"))
        assert stream.sent_xml() == [
            "<presence to='eve@localhost' type='subscribed'/>",
            "<presence to='eve@localhost' type='subscribe'/>",
        ]
        client.presence.send_presence(None, "dnd", {"": "busy"})
        (sent,) = stream.sent_xml()
        assert sent.startswith("<presence><show>dnd</show><status>busy</status><c xmlns=")
    finally:
        await host.stop()


@aio
async def test_disco_answers_with_our_features(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        stream.sent()
        stream.receive(
            "<iq type='get' id='d1' from='alice@localhost/pc'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        await turn()
        (answer,) = stream.sent()
        assert answer["type"] == "result" and answer["id"] == "d1"
        features = {f["var"] for f in answer.query.elements(NS_INFO, "feature")}
        assert {"urn:xmpp:sid:0", "http://jabber.org/protocol/disco#info"} <= features
        identity = next(answer.query.elements(NS_INFO, "identity"))
        assert (identity["category"], identity["type"]) == ("client", "pc")
    finally:
        await host.stop()


@aio
async def test_disco_request_cached_and_errors(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        stream.sent()
        disco = host.plugins["XEP-0030"]
        client.extra.pop("XEP-0030_infos")  # the fake server's infos, known at login
        pending = asyncio.ensure_future(disco.get_infos(client, JID("localhost")))
        await turn()
        (request,) = stream.sent()
        stream.receive(
            f"<iq type='result' id='{request['id']}' from='localhost'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'>"
            "<identity category='server' type='im'/><feature var='urn:xmpp:mam:2'/></query></iq>"
        )
        info = await pending
        assert "urn:xmpp:mam:2" in info.features
        assert (await disco.get_infos(client, JID("localhost"))) is info  # cached: no request
        assert stream.sent() == []
        pending = asyncio.ensure_future(disco.get_items(client, JID("nowhere.localhost")))
        await turn()
        (request,) = stream.sent()
        stream.receive(
            f"<iq type='error' id='{request['id']}' from='nowhere.localhost'>"
            "<error type='cancel'><remote-server-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        with pytest.raises(XMPPError) as raised:
            await pending
        assert raised.value.condition == "remote-server-not-found"
    finally:
        await host.stop()


@aio
async def test_iq_timeout_on_the_clock(tmp_path: Path) -> None:
    reactor = FakeReactor()
    host = await started_host(tmp_path, reactor)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        pending = asyncio.ensure_future(client.send_iq(make_iq("get", "localhost"), timeout=10))
        await turn()
        reactor.advance(9.9)
        await turn()
        assert not pending.done()
        reactor.advance(0.2)
        with pytest.raises(OperationTimeout):
            await pending
        # a late answer is ignored
        stream.receive("<iq type='result' id='late'/>")
    finally:
        await host.stop()


@aio
async def test_connection_lost_is_reported(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    client, stream = await logged_in(host, "bob", BOB)
    pending = asyncio.ensure_future(client.send_iq(make_iq("get", "localhost")))
    await turn()
    stream.transport.loseConnection()
    with pytest.raises(NotConnected):
        await pending
    await turn()
    assert signals(host, "disconnected") == [("bob",)]
    assert not host.is_connected("bob")
    with pytest.raises(NotConnected):
        client.send(make_iq("get"))
    await host.stop()


SETTINGS = ConnectionSettings(JID("bob@localhost"), "pw", "127.0.0.1", 5222)


@pytest.mark.parametrize(
    ("exception", "expected", "words"),
    [
        (jsasl.SASLAuthError("not-authorized"), AuthenticationFailed, "Connection/Password"),
        (jsasl.SASLNoAcceptableMechanism(), AuthenticationFailed, "bob@localhost"),
        (
            SSL.Error([("SSL routines", "", "certificate verify failed")]),
            TLSFailed,
            "check_certificate",
        ),
        (error.ConnectionRefusedError(), ConnectionFailed, "127.0.0.1:5222"),
        (error.DNSLookupError("nope"), ConnectionFailed, "resolve"),
    ],
)
def test_login_errors_say_what_to_do(exception, expected, words) -> None:
    err = login_error(Failure(exception), SETTINGS)
    assert isinstance(err, expected)
    assert words in str(err)
    assert "Traceback" not in str(err)


@aio
async def test_tcp_nodelay_set_when_connected(tmp_path: Path) -> None:
    """Nagle's algorithm is switched off on the XMPP socket (small answered stanzas)."""
    from tests.unit.core.fakes import FakeStream

    host = await started_host(tmp_path)
    try:
        await host.profiles.create("alice", "")
        settings = ConnectionSettings(jid=JID("alice@localhost/pc"), password="pw", host="h")
        client = await host.prepare_client("alice", settings)
        stream = FakeStream()
        calls: list[bool] = []
        stream.transport.setTcpNoDelay = calls.append  # type: ignore[attr-defined]
        stream.attach(client)
        assert calls == [True]
    finally:
        await host.stop()


@aio
async def test_stanza_limits_raised_once_authenticated(tmp_path: Path) -> None:
    """Big answers of our own server (a whole pubsub node) fit; limits stay bounded."""
    from libervia.backend.core.xmpp import MAX_STANZA_ELEMENTS, MAX_STANZA_SIZE

    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "alice", "alice@localhost/pc")
        parser = stream.xs.stream
        assert (parser.maxStanzaSize, parser.maxElementCount) == (
            MAX_STANZA_SIZE,
            MAX_STANZA_ELEMENTS,
        )
        assert MAX_STANZA_ELEMENTS > 120_000  # a 10,000-post blog (measured)
    finally:
        await host.stop()
