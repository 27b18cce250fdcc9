"""Messages in and out on a fake stream: literal XML in, literal XML out, stored once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotConnected
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

ALICE = "alice@localhost/res"
BOB = "bob@localhost/phone"


def signals(host, name: str) -> list[tuple]:
    return [args for signal, args in host.bridge.emitted if signal == name]


async def settle(host) -> None:
    """Let background message handling and the history writer finish."""
    for _ in range(50):
        await asyncio.sleep(0)
    await host.messages.writer.drain()
    for _ in range(10):
        await asyncio.sleep(0)


@aio
async def test_send_builds_stanza_stores_and_signals(tmp_path: Path) -> None:
    reactor = FakeReactor()
    reactor.advance(1_700_000_000)
    host = await started_host(tmp_path, reactor)
    try:
        client, stream = await logged_in(host, "alice", ALICE)
        stream.sent()
        uid = await host.message_send(
            "alice", JID("bob@localhost"), {"": "hello <you>", "fr": "salut"}, {}, "chat", {}
        )
        assert stream.sent_xml() == [
            f"<message to='bob@localhost' type='chat' id='{uid}'>"
            "<body>hello &lt;you&gt;</body><body xml:lang='fr'>salut</body>"
            f"<origin-id xmlns='urn:xmpp:sid:0' id='{uid}'/></message>"
        ]
        history = await host.history_get("alice", JID("bob@localhost"), None, None, True, {})
        assert [(m.uid, m.message, m.origin_id) for m in history] == [
            (uid, {"": "hello <you>", "fr": "salut"}, uid)
        ]
        (new,) = signals(host, "message_new")
        assert new[:8] == (
            uid,
            1_700_000_000.0,
            ALICE,
            "bob@localhost",
            {"": "hello <you>", "fr": "salut"},
            {},
            "chat",
            json.dumps({"origin_id": uid}),
        )
        assert new[8] == "alice"
    finally:
        await host.stop()


@aio
async def test_received_message_stored_once_with_ids(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        stanza = (
            f"<message from='{ALICE}' to='{BOB}' type='chat' id='m1'>"
            "<body>hi bob</body><origin-id xmlns='urn:xmpp:sid:0' id='o-1'/>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='s-1'/>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='evil@localhost' id='fake'/></message>"
        )
        stream.receive(stanza)
        await settle(host)
        stream.receive(stanza)  # the same message again (e.g. resent): not stored twice
        await settle(host)
        history = await host.history_get("bob", JID("alice@localhost"), None, None, True, {})
        assert [(m.source.full(), m.message, m.stanza_id, m.origin_id) for m in history] == [
            (ALICE, {"": "hi bob"}, "s-1", "o-1")
        ]
        assert len(signals(host, "message_new")) == 1
    finally:
        await host.stop()


@aio
async def test_delay_malformed_and_bodiless(tmp_path: Path, caplog) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        stream.receive(
            f"<message from='{ALICE}' to='{BOB}' type='chat'><body>old</body>"
            "<delay xmlns='urn:xmpp:delay' stamp='2020-01-02T03:04:05Z'/></message>"
        )
        stream.receive(f"<message from='a@@b/c' to='{BOB}' type='chat'><body>bad</body></message>")
        stream.receive(f"<message from='{ALICE}' to='{BOB}' type='weird'><body>x</body></message>")
        stream.receive(
            f"<message from='{ALICE}' to='{BOB}' type='chat'>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )
        await settle(host)
        stream.receive(f"<message from='' to='{BOB}' type='chat'><body>empty</body></message>")
        await settle(host)
        history = await host.history_get("bob", None, None, None, True, {})
        assert [(m.message, m.timestamp) for m in history] == [({"": "old"}, 1577934245.0)]
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
        assert "malformed" in caplog.text
        assert history[0].received_timestamp is not None
        # the client still works after the bad input
        assert client.is_connected()
    finally:
        await host.stop()


@aio
async def test_send_refuses_bad_input(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        await logged_in(host, "alice", ALICE)
        for args in (
            ({"": "x"}, {}, "nonsense"),
            ({}, {}, "chat"),
            ({"": 3}, {}, "chat"),
        ):
            try:
                await host.message_send("alice", JID("bob@localhost"), *args, {})
            except InvalidInput:
                pass
            else:
                raise AssertionError(f"{args} accepted")
        await host.profiles.create("carol", "")
        try:
            await host.message_send("carol", JID("bob@localhost"), {"": "x"}, {}, "chat", {})
        except NotConnected as e:
            assert "carol" in str(e)
        else:
            raise AssertionError("not connected accepted")
    finally:
        await host.stop()


@aio
async def test_burst_is_written_in_few_transactions(tmp_path: Path) -> None:
    """200 messages received at once are stored by a handful of batches (group commit)."""
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        calls = []
        original = host.storage.add_to_history

        async def counting(messages, profile):
            calls.append(len(messages))
            return await original(messages, profile)

        host.messages.writer.storage = type("S", (), {"add_to_history": staticmethod(counting)})
        for i in range(200):
            stream.receive(
                f"<message from='{ALICE}' type='chat' id='m{i}'><body>{i}</body></message>"
            )
        await settle(host)
        assert sum(calls) == 200
        assert len(calls) <= 5, calls
        assert len(signals(host, "message_new")) == 200
    finally:
        await host.stop()
