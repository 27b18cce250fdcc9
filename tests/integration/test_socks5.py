"""XEP-0065 SOCKS5 client and server over real sockets on 127.0.0.1 (no sleeps: timeouts
are driven by a ``task.Clock``)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import task
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.config import Config
from libervia.backend.core.exceptions import OperationTimeout
from libervia.backend.core.triggers import TriggerManager
from libervia.backend.plugins import plugin_xep_0065
from libervia.backend.plugins.plugin_xep_0065 import (
    XEP_0065,
    Socks5Error,
    Socks5Server,
    Socks5Stream,
    dstaddr,
    socks5_connect,
)
from libervia.backend.plugins.plugin_xep_0166 import Reason, Senders
from libervia.backend.plugins.plugin_xep_0166.stream import MemorySink, MemorySource
from libervia.backend.plugins.plugin_xep_0260 import NS_S5B
from tests.conftest import aio
from tests.unit.core.fakes import FakeStream
from tests.unit.jingle.helpers import ALICE, BOB, NS_APP, App, jingle_host, settle

LOOPBACK = "127.0.0.1"
DST = dstaddr("sid1", "alice@localhost/pc", "bob@localhost/phone")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def socks5_server() -> AsyncIterator[tuple[Socks5Server, tuple[str, int]]]:
    server = Socks5Server()
    try:
        addresses = await server.listen([LOOPBACK])
        assert len(addresses) == 1
        yield server, addresses[0]
    finally:
        await server.close()


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on loopback running ``handler`` for each connection; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def raw_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOOPBACK, port)


async def closing(stream: Socks5Stream | asyncio.StreamWriter) -> None:
    if isinstance(stream, Socks5Stream):
        await stream.aclose()
    else:
        stream.close()
        await stream.wait_closed()


@aio
async def test_handshake_and_bytes_both_ways() -> None:
    """A registered bytestream: the client's CONNECT gets through, the server hands the
    stream to the waiting registration, and bytes flow both ways until EOF."""
    async with socks5_server() as (server, (host, port)):
        registration = server.register(DST)
        client = await socks5_connect(host, port, DST)
        accepted = await registration.wait((host, port))
        try:
            assert accepted.address == (host, port)
            client.writer.write(b"from the target")
            await client.writer.drain()
            assert await accepted.reader.readexactly(15) == b"from the target"
            accepted.writer.write(b"x" * 100_000)
            accepted.writer.write_eof()
            assert await client.reader.read() == b"x" * 100_000
        finally:
            server.unregister(DST, keep=accepted)
            await closing(client)
            await closing(accepted)


@aio
async def test_wrong_dstaddr_refused() -> None:
    """A CONNECT for an address nobody registered is answered 'not allowed' and closed;
    the registered bytestream gets nothing."""
    async with socks5_server() as (server, (host, port)):
        registration = server.register(DST)
        wrong = dstaddr("other", "alice@localhost/pc", "bob@localhost/phone")
        with pytest.raises(Socks5Error, match="refused the connection"):
            await socks5_connect(host, port, wrong)
        assert registration.get((host, port)) is None


@aio
async def test_second_connection_on_same_candidate_refused() -> None:
    """One connection per candidate: a second CONNECT with the same dstaddr on the same
    address is refused (nobody can take over an established bytestream)."""
    async with socks5_server() as (server, (host, port)):
        registration = server.register(DST)
        first = await socks5_connect(host, port, DST)
        try:
            await registration.wait((host, port))
            with pytest.raises(Socks5Error):
                await socks5_connect(host, port, DST)
        finally:
            await closing(first)


@aio
async def test_unregistered_after_close_refused() -> None:
    """Once a bytestream is unregistered, its dstaddr is refused."""
    async with socks5_server() as (server, (host, port)):
        server.register(DST)
        server.unregister(DST)
        with pytest.raises(Socks5Error):
            await socks5_connect(host, port, DST)


@aio
async def test_malformed_greeting_refused() -> None:
    """A SOCKS4 greeting (or any garbage) is closed at once without an answer."""
    async with socks5_server() as (server, (host, port)):
        server.register(DST)
        reader, writer = await raw_connection(port)
        try:
            writer.write(b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00")
            await writer.drain()
            assert await reader.read() == b""
        finally:
            await closing(writer)


@aio
async def test_greeting_without_no_auth_refused() -> None:
    """A client offering only username/password gets 'no acceptable method' then EOF."""
    async with socks5_server() as (server, (host, port)):
        reader, writer = await raw_connection(port)
        try:
            writer.write(b"\x05\x01\x02")
            await writer.drain()
            assert await reader.read() == b"\x05\xff"
        finally:
            await closing(writer)


@aio
async def test_unsupported_request_refused() -> None:
    """Only CONNECT with a domain address and port 0 is accepted: an IPv4 CONNECT, a BIND
    and a non-zero port are refused and closed."""
    async with socks5_server() as (server, (host, port)):
        server.register(DST)
        domain = bytes((3, len(DST))) + DST.encode()
        requests = {
            b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50": 8,  # IPv4: address type refused
            b"\x05\x02\x00" + domain + b"\x00\x00": 7,  # BIND: command refused
            b"\x05\x01\x00" + domain + b"\x00\x50": 2,  # port 80: not allowed
        }
        for request, reply in requests.items():
            reader, writer = await raw_connection(port)
            try:
                writer.write(b"\x05\x01\x00" + request)
                await writer.drain()
                answer = await reader.read()
                assert answer[:2] == b"\x05\x00"
                assert answer[2:4] == bytes((5, reply))
            finally:
                await closing(writer)


@aio
async def test_server_handshake_timeout() -> None:
    """A connection that never completes its handshake is closed when the server's clock
    reaches the handshake timeout."""
    clock = task.Clock()
    server = Socks5Server(handshake_timeout=10, clock=clock)
    try:
        ((host, port),) = await server.listen([LOOPBACK])
        reader, writer = await raw_connection(port)
        try:
            writer.write(b"\x05\x01\x00")
            await writer.drain()
            assert await reader.readexactly(2) == b"\x05\x00"
            clock.advance(10)  # the handshake timer of the server
            assert await reader.read() == b""
        finally:
            await closing(writer)
    finally:
        await server.close()


@aio
async def test_server_limits_handshakes_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections beyond the number of handshakes allowed at once are closed at once."""
    monkeypatch.setattr(plugin_xep_0065, "MAX_HANDSHAKES", 2)
    async with socks5_server() as (server, (host, port)):
        idle = [await raw_connection(port) for _ in range(2)]
        try:
            for reader, writer in idle:  # both are being served
                writer.write(b"\x05\x01\x00")
                assert await reader.readexactly(2) == b"\x05\x00"
            reader, writer = await raw_connection(port)
            try:
                assert await reader.read() == b""
            finally:
                await closing(writer)
        finally:
            for _, writer in idle:
                await closing(writer)


# --- the client against a fake SOCKS5 proxy ---------------------------------------------------


async def proxy_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]
) -> None:
    """A fake proxy's side of the handshake, recording what the client sent."""
    greeting = await reader.readexactly(3)
    seen.append(greeting)
    writer.write(b"\x05\x00")
    head = await reader.readexactly(5)
    address = await reader.readexactly(head[4])
    port = await reader.readexactly(2)
    seen.append(head + address + port)
    writer.write(b"\x05\x00\x00\x03" + bytes((len(address),)) + address + b"\x00\x00")
    await writer.drain()


@aio
async def test_client_against_fake_proxy() -> None:
    """The client sends exactly a no-auth greeting and a CONNECT (ATYP domain = the hex
    SHA-1 dstaddr, port 0), then relays bytes both ways."""
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await proxy_handshake(reader, writer, seen)
        data = await reader.readexactly(4)
        writer.write(data[::-1])
        await writer.drain()
        await reader.read()

    async with fake_server(proxy) as port:
        stream = await socks5_connect(LOOPBACK, port, DST)
        try:
            stream.writer.write(b"ping")
            await stream.writer.drain()
            assert await stream.reader.readexactly(4) == b"gnip"
        finally:
            await closing(stream)
    assert seen == [
        b"\x05\x01\x00",
        b"\x05\x01\x00\x03\x28" + DST.encode() + b"\x00\x00",
    ]
    assert len(DST) == 40


@pytest.mark.parametrize(
    ("method_reply", "connect_reply", "error"),
    [
        (b"\x05\xff", b"", "refused unauthenticated"),
        (b"\x04\x00", b"", "bad version"),
        (b"\x05\x00", b"\x05\x05\x00\x03", "refused the connection"),
        (b"\x05\x00", b"\x05\x00\x01\x03", "malformed"),
        (b"\x05\x00", b"\x05\x00\x00\x03\x04abcd\x00\x00", "bound address differs"),
        (b"\x05\x00", b"\x05\x00\x00\x09", "unknown address type"),
        (b"\x05\x00", b"\x05\x00\x00\x03\x28", "connection closed"),
    ],
)
@aio
async def test_client_strict_reply_parsing(
    method_reply: bytes, connect_reply: bytes, error: str
) -> None:
    """Every malformed or negative answer of a SOCKS5 server is an error, never a stream."""

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(3)
        writer.write(method_reply)
        await writer.drain()
        if connect_reply:
            await reader.readexactly(5 + 40 + 2)
            writer.write(connect_reply)
            await writer.drain()
        writer.write_eof()
        await reader.read()

    async with fake_server(proxy) as port:
        with pytest.raises(Socks5Error, match=error):
            await socks5_connect(LOOPBACK, port, DST)


@aio
async def test_client_accepts_ip_bound_address() -> None:
    """A proxy answering with an IPv4 BND.ADDR (allowed by RFC 1928) is accepted."""

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(3)
        writer.write(b"\x05\x00")
        await reader.readexactly(5 + 40 + 2)
        writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90")
        await writer.drain()
        await reader.read()

    async with fake_server(proxy) as port:
        stream = await socks5_connect(LOOPBACK, port, DST)
        await closing(stream)


@aio
async def test_client_timeout_on_injected_clock() -> None:
    """A server that never answers: the client gives up when its clock reaches the timeout."""
    clock = task.Clock()
    greeted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(3)
        greeted.set()
        await reader.read()

    async with fake_server(silent) as port:
        attempt = asyncio.ensure_future(socks5_connect(LOOPBACK, port, DST, 5, clock))
        await greeted.wait()
        assert not attempt.done()
        clock.advance(5)  # the client's connection timeout
        with pytest.raises(OperationTimeout):
            await attempt


@aio
async def test_connection_refused() -> None:
    """Nobody listening: Socks5Error (a candidate that does not work)."""
    server = await asyncio.start_server(lambda r, w: None, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(Socks5Error, match="cannot connect"):
        await socks5_connect(LOOPBACK, port, DST)


# --- the plugin's server lifecycle ------------------------------------------------------------


def plugin(tmp_path: Path, options: str) -> XEP_0065:
    path = tmp_path / "libervia.conf"
    path.write_text(f"[DEFAULT]\nlocal_dir = {tmp_path}\n{options}")
    host = SimpleNamespace(
        config=Config.load(path),
        plugins={"XEP-0030": SimpleNamespace()},
        trigger=TriggerManager(),
    )
    return XEP_0065(host)


@aio
async def test_plugin_server_started_on_demand_and_released(tmp_path: Path) -> None:
    """The plugin listens only on the configured addresses, only while a bytestream is
    expected: releasing the last registration stops the server."""
    xep = plugin(tmp_path, "socks5_interfaces = 127.0.0.1\n")
    assert xep.listen_hosts() == [LOOPBACK]
    server = await xep.get_server()
    assert server is not None and server.addresses[0][0] == LOOPBACK
    assert await xep.get_server() is server
    server.register(DST)
    port = server.addresses[0][1]
    stream = await socks5_connect(LOOPBACK, port, DST)
    try:
        await xep.release(server, DST)
        assert xep.server is None and not server.listening
        with pytest.raises(Socks5Error, match="cannot connect"):
            await socks5_connect(LOOPBACK, port, DST)
    finally:
        await closing(stream)


@aio
async def test_plugin_interfaces_configuration(tmp_path: Path) -> None:
    """By default no loopback address is offered; 'none' offers no direct candidate."""
    assert LOOPBACK not in plugin(tmp_path, "").listen_hosts()
    assert "::1" not in plugin(tmp_path, "").listen_hosts()
    assert LOOPBACK in plugin(tmp_path, "socks5_allow_loopback = true\n").listen_hosts()
    none = plugin(tmp_path, "socks5_interfaces = none\n")
    assert none.listen_hosts() == []
    assert await none.get_server() is None


def test_dstaddr_matches_xep_0260_examples() -> None:
    """The dstaddr values of XEP-0260's examples: SHA-1(sid + requester + target)."""
    assert (
        dstaddr("vj3hs98y", "romeo@montague.lit/orchard", "juliet@capulet.lit/balcony")
        == "972b7bf47291ca609517f67f86b5081086052dad"
    )
    assert (
        dstaddr("vj3hs98y", "juliet@capulet.lit/balcony", "romeo@montague.lit/orchard")
        == "1a12fb7bc625e55f3ed5b29a53dbe0e4aa7d80ba"
    )


# --- two in-process hosts: a Jingle session over a real loopback SOCKS5 connection ---------


class Wire:
    """Carries the stanzas each profile sends to the other (adding ``from``, as a server
    does), as soon as they are written; stanzas to anybody else are dropped."""

    def __init__(self, a: tuple[str, FakeStream], b: tuple[str, FakeStream]) -> None:
        self.ends = {a[0]: a[1], b[0]: b[1]}
        loop = asyncio.get_running_loop()
        for jid, stream in self.ends.items():
            original = stream.transport.write

            def write(data: bytes, original: Any = original, jid: str = jid) -> None:
                original(data)
                loop.call_soon(self.deliver, jid)

            stream.transport.write = write  # type: ignore[method-assign]

    def close(self) -> None:
        """Stop carrying (the streams are about to end)."""
        self.ends = {}

    def deliver(self, sender: str) -> None:
        if sender not in self.ends:
            return
        for element in self.ends[sender].sent():
            target = self.ends.get(element.getAttribute("to", ""))
            if target is not None:
                element["from"] = sender
                target.receive(element.toXml(defaultUri="jabber:client"))


class Receiver(MemorySink):
    """A sink telling when the transport closed it."""

    def __init__(self) -> None:
        super().__init__()
        self.done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def close(self, error: BaseException | None = None) -> None:
        super().close(error)
        if not self.done.done():
            self.done.set_result(error)


class BytesApp(App):
    """The Jingle test application, sending ``payload`` and receiving into a Receiver."""

    def __init__(self, payload: bytes = b"") -> None:
        super().__init__()
        self.payload = payload
        self.receiver = Receiver()
        self.sender: MemorySource | None = None

    def _endpoints(self, session: Any, content: Any) -> None:
        if content.we_send(session):
            self.sender = content.source = MemorySource(self.payload)
        if content.peer_sends(session):
            content.sink = self.receiver


async def loopback_host(tmp_path: Path, profile: str, jid: str) -> Any:
    """A host whose only Jingle transport is SOCKS5, direct candidates on 127.0.0.1."""
    tmp_path.mkdir()
    host, client, stream, reactor = await jingle_host(tmp_path, profile, jid, (NS_S5B,))
    s5 = host.plugins["XEP-0065"]
    s5.interfaces = [LOOPBACK]
    s5.proxy_disabled = True
    s5b = host.plugins["XEP-0260"]
    s5b.stagger = s5b.proxy_delay = 0
    return host, client, stream


@aio
async def test_jingle_bytes_over_loopback_socks5(tmp_path: Path) -> None:
    """Alice sends Bob 3 MB in a Jingle session whose only transport is SOCKS5: both offer
    a direct candidate on 127.0.0.1, both connect, nominate the same candidate (the
    initiator's choice on equal priorities), and the bytes arrive intact; both SOCKS5
    servers stop listening afterwards."""
    alice_host, alice, alice_stream = await loopback_host(tmp_path / "a", "alice", ALICE)
    bob_host, bob, bob_stream = await loopback_host(tmp_path / "b", "bob", BOB)
    wire = Wire((ALICE, alice_stream), (BOB, bob_stream))
    try:
        payload = os.urandom(3 * 1024 * 1024)
        sending, receiving = BytesApp(payload), BytesApp()
        alice_host.plugins["XEP-0166"].register_application(sending)
        bob_host.plugins["XEP-0166"].register_application(receiving)
        jingle = alice_host.plugins["XEP-0166"]
        session = jingle.create_session(alice, JID(BOB))
        jingle.add_content(
            session, sending, domish.Element((NS_APP, "description")), senders=Senders.INITIATOR
        )
        await jingle.initiate(alice, session)
        assert await receiving.receiver.done is None
        assert bytes(receiving.receiver.data) == payload
        assert sending.sender is not None and sending.sender.closed == (None,)
        await jingle.terminate(alice, session, Reason.SUCCESS)
        await settle()
        assert receiving.events[-1] == ("ended", session.sid, "success")
        for host in (alice_host, bob_host):
            assert host.plugins["XEP-0065"].server is None
    finally:
        wire.close()
        await alice_host.stop()
        await bob_host.stop()


class Signals:
    """The bridge signals a host emits, to wait for (no polling)."""

    def __init__(self, host: Any) -> None:
        self.queues: dict[str, asyncio.Queue[tuple[Any, ...]]] = {}
        emit = host.bridge.emit

        def recording(signal: str, *args: Any) -> None:
            emit(signal, *args)
            self.queues.setdefault(signal, asyncio.Queue()).put_nowait(args)

        host.bridge.emit = recording

    async def next(self, signal: str) -> tuple[Any, ...]:
        return await self.queues.setdefault(signal, asyncio.Queue()).get()


@aio
async def test_file_transfer_over_loopback_socks5(tmp_path: Path) -> None:
    """XEP-0234 over a real loopback SOCKS5 connection: alice offers a 5 MB file with the
    s5b transport, bob accepts it into a directory, the file arrives whole, its sha-256
    is verified and both progress reports finish."""
    alice_host, alice, alice_stream = await loopback_host(tmp_path / "a", "alice", ALICE)
    bob_host, bob, bob_stream = await loopback_host(tmp_path / "b", "bob", BOB)
    alice_signals, bob_signals = Signals(alice_host), Signals(bob_host)
    wire = Wire((ALICE, alice_stream), (BOB, bob_stream))
    try:
        content = os.urandom(5 * 1024 * 1024)
        source = tmp_path / "video.bin"
        source.write_bytes(content)
        downloads = tmp_path / "downloads"
        result = await alice_host.plugins["XEP-0234"].file_send(
            alice, JID(BOB), source, transport="s5b"
        )
        offer, action_id, *_ = await bob_signals.next("action_new")
        assert json.loads(offer)["session_id"] == result["session_id"]
        bob_host.actions.launch("bob", action_id, {"accept": True, "path": str(downloads)})
        _, received, _ = await bob_signals.next("progress_finished")
        _, sent, _ = await alice_signals.next("progress_finished")
        assert json.loads(received)["hash_verified"] is True
        assert json.loads(sent)["size"] == len(content)
        assert (downloads / "video.bin").read_bytes() == content
        for host in (alice_host, bob_host):
            assert host.plugins["XEP-0065"].server is None
    finally:
        wire.close()
        await alice_host.stop()
        await bob_host.stop()
