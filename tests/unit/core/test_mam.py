"""XEP-0313 archive catch-up and queries on a fake stream: literal XML in and out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.memory.sqla import HistoryMessage
from libervia.backend.plugins.plugin_xep_0313 import xmpp_datetime
from tests.conftest import aio, turns
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

ALICE = "alice@localhost/pc"
NS_MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
NOW = 1_700_000_000


async def settle(host) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    await host.messages.writer.drain()
    for _ in range(10):
        await asyncio.sleep(0)


def signals(host, name: str) -> list[tuple]:
    return [args for signal, args in host.bridge.emitted if signal == name]


def result(
    query_id: str,
    archive_id: str,
    inner: str,
    stamp: str = "2023-11-14T10:00:00Z",
    sender: str = "alice@localhost",
) -> str:
    return (
        f"<message from='{sender}' to='{ALICE}'><result xmlns='{NS_MAM}' queryid='{query_id}' "
        f"id='{archive_id}'><forwarded xmlns='urn:xmpp:forward:0'>"
        f"<delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>{inner}</forwarded></result></message>"
    )


def chat(source: str, dest: str, body: str, extra: str = "") -> str:
    return (
        f"<message xmlns='jabber:client' from='{source}' to='{dest}' type='chat'>"
        f"<body>{body}</body>{extra}</message>"
    )


def fin(iq_id: str, first: str, last: str, complete: bool) -> str:
    return (
        f"<iq type='result' id='{iq_id}' from='alice@localhost' to='{ALICE}'>"
        f"<fin xmlns='{NS_MAM}' complete='{'true' if complete else 'false'}'>"
        f"<set xmlns='{RSM}'><first>{first}</first><last>{last}</last><count>3</count></set>"
        "</fin></iq>"
    )


async def one_query(stream) -> tuple[str, str]:
    """The only stanza sent: an archive query; its XML and iq id."""
    got: list[str] = []
    for _ in turns():  # the catch-up reads the database first (a thread): yield
        got += [s for s in stream.sent_xml() if not s.startswith("<presence")]
        if got:
            break
        await asyncio.sleep(0)
    (sent,) = got
    return sent, sent.split("id='")[1].split("'")[0]


async def started(tmp_path: Path, stored: list[HistoryMessage] = ()):
    reactor = FakeReactor()
    reactor.advance(NOW)
    host = await started_host(tmp_path, reactor)
    await host.profiles.create("alice", "")
    if stored:
        await host.storage.add_to_history(list(stored), "alice")
    client, stream = await logged_in(host, "alice", ALICE, server_features=(NS_MAM,))
    return host, client, stream


@aio
async def test_catch_up_pages_until_complete_and_ignores_spoofed(tmp_path: Path, caplog) -> None:
    host, client, stream = await started(tmp_path)
    try:
        sent, iq_id = await one_query(stream)
        start = xmpp_datetime(NOW - 14 * 86400)
        assert sent == (
            f"<iq type='set' id='{iq_id}'><query xmlns='{NS_MAM}' queryid='q1'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
            f"<field var='start'><value>{start}</value></field></x>"
            f"<set xmlns='{RSM}'><max>100</max></set></query></iq>"
        )
        assert start == "2023-10-31T22:13:20.000000Z"
        stream.receive(result("q1", "A1", chat("bob@localhost/x", ALICE, "while you slept")))
        # a result for our query, but not from our archive: spoofed
        stream.receive(
            result("q1", "EVIL", chat("bob@localhost/x", ALICE, "fake"), sender="carol@localhost")
        )
        # a result of no query of ours
        stream.receive(result("q9", "A9", chat("bob@localhost/x", ALICE, "stray")))
        stream.receive(
            result(
                "q1",
                "A2",
                chat(
                    "alice@localhost/phone",
                    "bob@localhost",
                    "sent from my phone",
                    "<origin-id xmlns='urn:xmpp:sid:0' id='o-2'/>",
                ),
                stamp="2023-11-14T10:01:00Z",
            )
        )
        stream.receive(fin(iq_id, "A1", "A2", complete=False))
        sent, iq_id = await one_query(stream)
        assert sent == (
            f"<iq type='set' id='{iq_id}'><query xmlns='{NS_MAM}' queryid='q2'>"
            f"<set xmlns='{RSM}'><max>100</max><after>A2</after></set></query></iq>"
        )
        # A2 again (e.g. a server repeating a boundary): not stored twice
        stream.receive(
            result(
                "q2",
                "A2",
                chat(
                    "alice@localhost/phone",
                    "bob@localhost",
                    "sent from my phone",
                    "<origin-id xmlns='urn:xmpp:sid:0' id='o-2'/>",
                ),
            )
        )
        stream.receive(
            result("q2", "A3", chat("bob@localhost/x", ALICE, "last"), "2023-11-14T10:02:00.5Z")
        )
        stream.receive(fin(iq_id, "A2", "A3", complete=True))
        assert await client.extra["XEP-0313_catch_up"] == 3
        await settle(host)
        assert stream.sent() == []
        history = await host.history_get("alice", None, None, None, True, {})
        assert [
            (m.source.full(), m.dest.full(), m.message, m.stanza_id, m.origin_id, m.timestamp)
            for m in history
        ] == [
            ("bob@localhost/x", ALICE, {"": "while you slept"}, "A1", None, 1699956000.0),
            (
                "alice@localhost/phone",
                "bob@localhost",
                {"": "sent from my phone"},
                "A2",
                "o-2",
                1699956060.0,
            ),
            ("bob@localhost/x", ALICE, {"": "last"}, "A3", None, 1699956120.5),
        ]
        assert all(m.received_timestamp == NOW for m in history)
        assert [s[4] for s in signals(host, "message_new")] == [
            {"": "while you slept"},
            {"": "sent from my phone"},
            {"": "last"},
        ]
        assert "spoofed archive result from carol@localhost" in caplog.text
    finally:
        await host.stop()


@aio
async def test_catch_up_after_last_stored_stanza_id(tmp_path: Path) -> None:
    known = HistoryMessage(
        source=JID("bob@localhost/x"),
        dest=JID(ALICE),
        timestamp=NOW - 100,
        message={"": "known"},
        stanza_id="K1",
    )
    ours = HistoryMessage(
        source=JID(ALICE),
        dest=JID("bob@localhost"),
        timestamp=NOW - 50,
        message={"": "sent live"},
        origin_id="o-live",
    )
    host, client, stream = await started(tmp_path, [known, ours])
    try:
        sent, iq_id = await one_query(stream)
        assert sent == (
            f"<iq type='set' id='{iq_id}'><query xmlns='{NS_MAM}' queryid='q1'>"
            f"<set xmlns='{RSM}'><max>100</max><after>K1</after></set></query></iq>"
        )
        # our own message sent live comes back from the archive: it gets its stanza id
        stream.receive(
            result(
                "q1",
                "K2",
                chat(
                    ALICE,
                    "bob@localhost",
                    "sent live",
                    "<origin-id xmlns='urn:xmpp:sid:0' id='o-live'/>",
                ),
            )
        )
        stream.receive(fin(iq_id, "K2", "K2", complete=True))
        assert await client.extra["XEP-0313_catch_up"] == 0
        history = await host.history_get("alice", None, None, None, True, {})
        assert [(m.uid, m.stanza_id) for m in history] == [(known.uid, "K1"), (ours.uid, "K2")]
        assert signals(host, "message_new") == []
    finally:
        await host.stop()


@aio
async def test_catch_up_from_time_when_archive_lost_last_id(tmp_path: Path) -> None:
    known = HistoryMessage(
        source=JID("bob@localhost/x"),
        dest=JID(ALICE),
        timestamp=NOW - 100,
        message={"": "known"},
        stanza_id="GONE",
    )
    host, client, stream = await started(tmp_path, [known])
    try:
        sent, iq_id = await one_query(stream)
        assert "<after>GONE</after>" in sent
        stream.receive(
            f"<iq type='error' id='{iq_id}' from='alice@localhost'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        sent, iq_id = await one_query(stream)
        assert f"<field var='start'><value>{xmpp_datetime(NOW - 100)}</value>" in sent
        assert "<after>" not in sent
        stream.receive(fin(iq_id, "", "", complete=True))
        assert await client.extra["XEP-0313_catch_up"] == 0
    finally:
        await host.stop()


@aio
async def test_no_archive_no_query(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "alice", ALICE)
        assert await client.extra["XEP-0313_catch_up"] == 0
        assert [e.name for e in stream.sent()] == ["presence"]
    finally:
        await host.stop()


@aio
async def test_mam_get_bridge_method(tmp_path: Path) -> None:
    host, client, stream = await started(tmp_path)
    try:
        _, iq_id = await one_query(stream)
        stream.receive(fin(iq_id, "", "", complete=True))
        await client.extra["XEP-0313_catch_up"]
        plugin = host.plugins["XEP-0313"]
        pending = asyncio.ensure_future(
            plugin._mam_get(
                "", {"with": "bob@localhost", "max": "10", "before": "", "start": "0"}, "alice"
            )
        )
        sent, iq_id = await one_query(stream)
        assert sent == (
            f"<iq type='set' id='{iq_id}'><query xmlns='{NS_MAM}' queryid='q2'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
            "<field var='with'><value>bob@localhost</value></field>"
            "<field var='start'><value>1970-01-01T00:00:00.000000Z</value></field></x>"
            f"<set xmlns='{RSM}'><max>10</max><before/></set></query></iq>"
        )
        stream.receive(result("q2", "B1", chat("bob@localhost/x", ALICE, "archived")))
        stream.receive(fin(iq_id, "B1", "B1", complete=True))
        rows, meta = await pending
        assert meta == {"complete": "true", "first": "B1", "last": "B1", "count": "3"}
        ((uid, ts, source, dest, message, subject, type_, extra),) = rows
        assert (ts, source, dest, message, type_) == (
            1699956000.0,
            "bob@localhost/x",
            ALICE,
            {"": "archived"},
            "chat",
        )
        assert '"stanza_id": "B1"' in extra
        # not stored: mam_get only reads the archive
        assert await host.history_get("alice", None, None, None, True, {}) == []
        with pytest.raises(InvalidInput):
            await plugin._mam_get("", {"nonsense": "1"}, "alice")
        with pytest.raises(InvalidInput):
            await plugin._mam_get("", {"max": "-3"}, "alice")
    finally:
        await host.stop()


@aio
async def test_interrupted_catch_up_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    host, client, stream = await started(tmp_path)
    plugin = host.plugins["XEP-0313"]
    try:
        sent, iq_id = await one_query(stream)
        assert xmpp_datetime(NOW - 14 * 86400) in sent
        stream.receive(result("q1", "A1", chat("bob@localhost/x", ALICE, "first")))
        stream.receive(fin(iq_id, "A1", "A1", complete=False))
        sent, iq_id = await one_query(stream)
        assert "<after>A1</after>" in sent
        stream.receive(
            f"<iq type='error' id='{iq_id}' from='alice@localhost'><error type='wait'>"
            "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        assert await client.extra["XEP-0313_catch_up"] == 0  # failed (logged)
        # a live message, newer than the gap, arrives meanwhile
        stream.receive(
            f"<message from='bob@localhost/x' to='{ALICE}' type='chat'><body>live</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='LIVE'/></message>"
        )
        await settle(host)
        # the next catch-up goes on after A1 (not after LIVE)
        pending = asyncio.ensure_future(plugin.catch_up(client))
        sent, iq_id = await one_query(stream)
        assert "<after>A1</after>" in sent and "start" not in sent
        stream.receive(result("q3", "A2", chat("bob@localhost/x", ALICE, "in the gap")))
        stream.receive(fin(iq_id, "A2", "A2", complete=True))
        assert await pending == 1
        history = await host.history_get("alice", None, None, None, True, {})
        assert sorted(m.message[""] for m in history) == ["first", "in the gap", "live"]
        # complete: the checkpoint is gone, the next catch-up starts after the newest id
        pending = asyncio.ensure_future(plugin.catch_up(client))
        sent, iq_id = await one_query(stream)
        assert "<after>LIVE</after>" in sent and "start" not in sent
        stream.receive(fin(iq_id, "", "", complete=True))
        assert await pending == 0
    finally:
        await host.stop()
