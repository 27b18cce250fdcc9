"""XEP-0280 carbons on a fake stream: literal XML in and out, stored once, forged ones ignored."""

from __future__ import annotations

import asyncio
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID

from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

ALICE = "alice@localhost/pc"
NS_CARBONS = "urn:xmpp:carbons:2"


async def settle(host) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    await host.messages.writer.drain()
    for _ in range(10):
        await asyncio.sleep(0)


def signals(host, name: str) -> list[tuple]:
    return [args for signal, args in host.bridge.emitted if signal == name]


def carbon(kind: str, inner: str, sender: str = "alice@localhost") -> str:
    return (
        f"<message from='{sender}' to='{ALICE}' type='chat'>"
        f"<{kind} xmlns='{NS_CARBONS}'><forwarded xmlns='urn:xmpp:forward:0'>"
        f"{inner}</forwarded></{kind}></message>"
    )


async def carbons_on(tmp_path: Path):
    reactor = FakeReactor()
    reactor.advance(1_700_000_000)
    host = await started_host(tmp_path, reactor)
    client, stream = await logged_in(host, "alice", ALICE, server_features=(NS_CARBONS,))
    await asyncio.sleep(0)
    sent = stream.sent_xml()
    enable = [s for s in sent if "carbons" in s]
    assert len(enable) == 1
    iq_id = enable[0].split("id='")[1].split("'")[0]
    assert enable[0] == f"<iq type='set' id='{iq_id}'><enable xmlns='{NS_CARBONS}'/></iq>"
    stream.receive(f"<iq type='result' id='{iq_id}' from='alice@localhost' to='{ALICE}'/>")
    await client.extra["XEP-0280_start"]
    assert client.extra["XEP-0280_enabled"] is True
    return host, client, stream


@aio
async def test_no_carbons_without_server_support(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "alice", ALICE)
        await client.extra["XEP-0280_start"]
        assert client.extra["XEP-0280_enabled"] is False
        assert not [s for s in stream.sent_xml() if "carbons" in s]
    finally:
        await host.stop()


@aio
async def test_carbons_stored_with_their_direction_once(tmp_path: Path) -> None:
    host, client, stream = await carbons_on(tmp_path)
    try:
        sent = carbon(
            "sent",
            "<message xmlns='jabber:client' from='alice@localhost/phone' to='bob@localhost' "
            "type='chat' id='x1'><body>from my phone</body>"
            "<origin-id xmlns='urn:xmpp:sid:0' id='o-phone-1'/></message>",
        )
        received = carbon(
            "received",
            "<message xmlns='jabber:client' from='bob@localhost/laptop' "
            "to='alice@localhost/phone' type='chat' id='x2'><body>hi phone</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='arch-2'/></message>",
        )
        for stanza in (sent, received, sent, received):
            stream.receive(stanza)
            await settle(host)
        history = await host.history_get("alice", JID("bob@localhost"), None, None, True, {})
        assert [
            (m.source.full(), m.dest.full(), m.message, m.origin_id, m.stanza_id, m.extra)
            for m in history
        ] == [
            (
                "alice@localhost/phone",
                "bob@localhost",
                {"": "from my phone"},
                "o-phone-1",
                None,
                {"carbon": "sent"},
            ),
            (
                "bob@localhost/laptop",
                "alice@localhost/phone",
                {"": "hi phone"},
                None,
                "arch-2",
                {"carbon": "received"},
            ),
        ]
        news = signals(host, "message_new")
        assert [(n[2], n[3]) for n in news] == [
            ("alice@localhost/phone", "bob@localhost"),
            ("bob@localhost/laptop", "alice@localhost/phone"),
        ]
        # nothing was stored for the wrappers themselves
        assert len(await host.history_get("alice", None, None, None, True, {})) == 2
    finally:
        await host.stop()


@aio
async def test_forged_carbons_ignored(tmp_path: Path, caplog) -> None:
    host, client, stream = await carbons_on(tmp_path)
    try:
        forged_inner = (
            "<message xmlns='jabber:client' from='alice@localhost/phone' to='bob@localhost' "
            "type='chat'><body>I never said that</body></message>"
        )
        stream.receive(carbon("sent", forged_inner, sender="carol@localhost/evil"))
        stream.receive(carbon("sent", forged_inner, sender="alice@localhost/phone"))
        # a "sent" carbon whose message is not from us, a "received" one not to us
        stream.receive(
            carbon(
                "sent",
                "<message xmlns='jabber:client' from='bob@localhost/x' to='carol@localhost' "
                "type='chat'><body>not ours</body></message>",
            )
        )
        stream.receive(
            carbon(
                "received",
                "<message xmlns='jabber:client' from='bob@localhost/x' to='carol@localhost' "
                "type='chat'><body>not ours</body></message>",
            )
        )
        # a carbon inside a carbon
        stream.receive(carbon("received", carbon("sent", forged_inner, sender="alice@localhost")))
        await settle(host)
        assert await host.history_get("alice", None, None, None, True, {}) == []
        assert signals(host, "message_new") == []
        assert "forged carbon from carol@localhost/evil" in caplog.text
        assert "forged carbon from alice@localhost/phone" in caplog.text
        assert client.is_connected()
    finally:
        await host.stop()


@aio
async def test_carbon_of_our_own_message_not_duplicated(tmp_path: Path) -> None:
    """A message we sent, coming back as a carbon (same origin id), is stored once."""
    host, client, stream = await carbons_on(tmp_path)
    try:
        uid = await host.message_send("alice", JID("bob@localhost"), {"": "x"}, {}, "chat", {})
        stream.receive(
            carbon(
                "sent",
                f"<message xmlns='jabber:client' from='{ALICE}' to='bob@localhost' "
                f"type='chat' id='{uid}'><body>x</body>"
                f"<origin-id xmlns='urn:xmpp:sid:0' id='{uid}'/></message>",
            )
        )
        await settle(host)
        history = await host.history_get("alice", None, None, None, True, {})
        assert [m.uid for m in history] == [uid]
        assert len(signals(host, "message_new")) == 1
    finally:
        await host.stop()
