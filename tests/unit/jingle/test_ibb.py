"""XEP-0047 in-band bytestreams on a fake stream: literal XML in and out."""

from __future__ import annotations

import asyncio
from base64 import b64encode
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.plugins.plugin_xep_0047 import IBBError, decode_strict
from libervia.backend.plugins.plugin_xep_0166.stream import MemorySink, MemorySource
from tests.conftest import aio
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    CAROL,
    Sent,
    error_to,
    jingle_host,
    no_text,
    result_to,
    settle,
)

IBB = "http://jabber.org/protocol/ibb"


def ibb_iq(inner: str, sender: str = BOB, stanza_id: str = "j1") -> str:
    return f"<iq type='set' id='{stanza_id}' from='{sender}' to='{ALICE}'>{inner}</iq>"


def open_(sid: str = "i1", block_size: int = 4096, extra: str = "") -> str:
    return ibb_iq(f"<open xmlns='{IBB}' block-size='{block_size}' sid='{sid}'{extra}/>")


def data(seq: int, payload: bytes | str, sid: str = "i1", sender: str = BOB) -> str:
    text = payload if isinstance(payload, str) else b64encode(payload).decode()
    return ibb_iq(f"<data xmlns='{IBB}' seq='{seq}' sid='{sid}'>{text}</data>", sender)


def close(sid: str = "i1", sender: str = BOB) -> str:
    return ibb_iq(f"<close xmlns='{IBB}' sid='{sid}'/>", sender)


async def setup(tmp_path: Path):
    host, client, stream, reactor = await jingle_host(tmp_path)
    return host, client, stream, host.plugins["XEP-0047"], Sent(stream)


@aio
async def test_expected_open_data_and_close(tmp_path: Path) -> None:
    """An expected open is accepted, data is written in order and acked, the peer's close
    ends the sink normally; nothing more is accepted afterwards."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    try:
        sink = MemorySink()
        opened = []
        ibb.expect(client, JID(BOB), "i1", 4096, sink, opened.append)
        stream.receive(open_())
        assert await sent.all() == [result_to()]
        assert len(opened) == 1 and opened[0].block_size == 4096
        stream.receive(data(0, b"hello "))
        stream.receive(data(1, b"world"))
        assert await sent.all() == [result_to(), result_to()]
        stream.receive(close())
        assert await sent.all() == [result_to()]
        assert bytes(sink.data) == b"hello world" and sink.closed == (None,)
        stream.receive(data(2, b"late"))
        assert await sent.all() == [error_to("item-not-found", None, "cancel")]
    finally:
        await host.stop()


@aio
async def test_unsolicited_open_and_unknown_sid(tmp_path: Path) -> None:
    """An open nobody negotiated is refused (not-acceptable); data or close for an unknown
    bytestream, or from another JID than its peer, gets item-not-found."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    try:
        stream.receive(open_())
        assert [no_text(x) for x in await sent.all()] == [
            error_to("not-acceptable", None, "modify")
        ]
        stream.receive(data(0, b"x"))
        assert await sent.all() == [error_to("item-not-found", None, "cancel")]
        stream.receive(close())
        assert await sent.all() == [error_to("item-not-found", None, "cancel")]
        ibb.expect(client, JID(BOB), "i1", 4096, MemorySink())
        stream.receive(open_())
        await sent.all()
        stream.receive(data(0, b"x", sender=CAROL))
        assert await sent.all() == [error_to("item-not-found", None, "cancel", CAROL)]
    finally:
        await host.stop()


@aio
async def test_open_checks(tmp_path: Path) -> None:
    """A block size above the negotiated one: resource-constraint; above 65535 or not a
    number: bad-request; message stanzas: feature-not-implemented."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    try:
        ibb.expect(client, JID(BOB), "i1", 4096, MemorySink())
        for request, condition, type_ in (
            (open_(block_size=8192), "resource-constraint", "wait"),
            (open_(block_size=70000), "bad-request", "modify"),
            (ibb_iq(f"<open xmlns='{IBB}' block-size='x' sid='i1'/>"), "bad-request", "modify"),
            (open_(extra=" stanza='message'"), "feature-not-implemented", "cancel"),
        ):
            stream.receive(request)
            out = [no_text(x) for x in await sent.all()]
            assert out == [error_to(condition, None, type_)], out
        stream.receive(open_(block_size=2048))  # lower is fine
        assert await sent.all() == [result_to()]
    finally:
        await host.stop()


@aio
async def test_sequence_errors(tmp_path: Path) -> None:
    """A reused seq gets unexpected-request and the bytestream goes on; an out-of-order seq
    gets unexpected-request and the bytestream is closed (close sent, sink failed)."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    try:
        sink = MemorySink()
        ibb.expect(client, JID(BOB), "i1", 4096, sink)
        stream.receive(open_())
        stream.receive(data(0, b"a"))
        stream.receive(data(0, b"a"))
        out = [no_text(x) for x in await sent.all()]
        assert out == [result_to(), result_to(), error_to("unexpected-request", None, "wait")]
        stream.receive(data(1, b"b"))
        stream.receive(data(5, b"f"))
        out = [no_text(x) for x in await sent.all()]
        assert out == [
            result_to(),
            error_to("unexpected-request", None, "wait"),
            f"<iq type='set' to='{BOB}' id='ID'><close xmlns='{IBB}' sid='i1'/></iq>",
        ]
        assert bytes(sink.data) == b"ab"
        assert sink.closed is not None and isinstance(sink.closed[0], IBBError)
    finally:
        await host.stop()


@aio
async def test_seq_wraps_around(tmp_path: Path) -> None:
    """After 65535 the next seq is 0."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    try:
        sink = MemorySink()
        ibb.expect(client, JID(BOB), "i1", 4096, sink)
        stream.receive(open_())
        await sent.all()
        session = ibb.get_session(client, JID(BOB), "i1")
        session.recv_seq, session.received = 65535, 65535
        stream.receive(data(65535, b"y"))
        stream.receive(data(0, b"z"))
        assert await sent.all() == [result_to(), result_to()]
        assert bytes(sink.data) == b"yz"
    finally:
        await host.stop()


@aio
async def test_bad_base64_and_oversized_block(tmp_path: Path) -> None:
    """Base64 with padding in the middle or stray characters, or a block larger than agreed:
    bad-request and the bytestream is closed."""
    for payload in ("QQ==QQ==", "QUJD!", "QUJ", b"x" * 5000):
        (tmp_path / str(len(payload))).mkdir()
        host, client, stream, ibb, sent = await setup(tmp_path / str(len(payload)))
        try:
            sink = MemorySink()
            ibb.expect(client, JID(BOB), "i1", 4096, sink)
            stream.receive(open_())
            await sent.all()
            stream.receive(data(0, payload))
            out = [no_text(x) for x in await sent.all()]
            assert out[0] == error_to("bad-request", None, "modify"), payload
            assert "<close xmlns" in out[1]
            assert sink.data == b"" and isinstance(sink.closed[0], IBBError)
        finally:
            await host.stop()


def test_decode_strict() -> None:
    """Strict base64: padding only at the end, alphabet only; whitespace around is allowed."""
    assert decode_strict("aGVsbG8=") == b"hello"
    assert decode_strict(" aGVsbG8=\n") == b"hello"
    assert decode_strict("") == b""
    for bad in ("aGVsbG8", "aGV sbG8=", "a=GVsbG8", "aGVsbG8=aGVsbG8=", "é"):
        try:
            decode_strict(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


@aio
async def test_open_and_send_one_iq_at_a_time(tmp_path: Path) -> None:
    """We open with our block size, send a source in block-size chunks waiting for each ack
    (one data IQ outstanding), seq counting up, then close."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    try:
        task = asyncio.ensure_future(ibb.open(client, JID(BOB), "o1", 4))
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><open xmlns='{IBB}' block-size='4' sid='o1' "
            "stanza='iq'/></iq>"
        ]
        sent.ack()
        session = await task
        source = MemorySource(b"abcdefghij")
        sending = asyncio.ensure_future(ibb.send_from(client, session, source))
        for seq, chunk in enumerate((b"abcd", b"efgh", b"ij")):
            assert await sent.all() == [
                f"<iq type='set' to='{BOB}' id='ID'><data xmlns='{IBB}' seq='{seq}' "
                f"sid='o1'>{b64encode(chunk).decode()}</data></iq>"
            ]
            sent.ack()
        assert await sending == 10
        closing = asyncio.ensure_future(ibb.close(client, session))
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><close xmlns='{IBB}' sid='o1'/></iq>"
        ]
        sent.ack()
        await closing
        assert ibb.get_session(client, JID(BOB), "o1") is None
    finally:
        await host.stop()


@aio
async def test_send_fails_on_error_answer(tmp_path: Path) -> None:
    """An error answer to a data IQ breaks the bytestream (IBBError), which is forgotten."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    try:
        task = asyncio.ensure_future(ibb.open(client, JID(BOB), "o1", 4096))
        await sent.all()
        sent.ack()
        session = await task
        sending = asyncio.ensure_future(ibb.send(client, session, b"abc"))
        await sent.all()
        from tests.unit.jingle.helpers import iq_id

        stream.receive(
            f"<iq type='error' id='{iq_id(sent.raw[0])}' from='{BOB}'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        try:
            await sending
        except IBBError:
            pass
        else:
            raise AssertionError("no error")
        assert ibb.get_session(client, JID(BOB), "o1") is None
        await settle()
    finally:
        await host.stop()


@aio
async def test_silent_bytestream_given_up(tmp_path: Path) -> None:
    """A bytestream we receive that stays silent (the sender crashed) ends with an error for
    the sink after ibb_idle_timeout; data in time restarts the wait."""
    host, client, stream, ibb, sent = await setup(tmp_path)
    reactor = client.reactor
    ibb.idle_timeout = 10  # (default 120 s: other timers, keepalive, would fire first here)
    try:
        sink = MemorySink()
        ibb.expect(client, JID(BOB), "i1", 4096, sink)
        stream.receive(open_())
        assert await sent.all() == [result_to()]
        reactor.advance(ibb.idle_timeout - 1)
        stream.receive(data(0, b"still here"))
        assert await sent.all() == [result_to()]
        reactor.advance(ibb.idle_timeout - 1)
        assert sink.closed is None  # the data restarted the wait
        reactor.advance(1)
        await settle()
        assert len(sink.closed) == 1 and isinstance(sink.closed[0], IBBError)
        assert "the peer is gone" in str(sink.closed[0])
        stream.receive(data(1, b"too late"))
        assert await sent.all() == [error_to("item-not-found", None, "cancel")]
    finally:
        await host.stop()
