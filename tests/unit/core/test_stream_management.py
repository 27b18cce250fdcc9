"""XEP-0198 stream management on the fake stream and clock: enable, acks both ways, resumption
of the same session after a loss (unacked stanzas sent again, no roster or presence again), and
the fallback to a fresh session (unacked messages sent again with their original ids)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import error
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import client as jclient

from libervia.backend.tools import xml
from tests.conftest import aio
from tests.unit.core.fakes import FakeStream
from tests.unit.core.test_reconnect import Driver, host_with_bob, signals, turn, until

SM = "urn:xmpp:sm:3"
FEATURES = ((SM, "sm"),)


def drop(stream: FakeStream) -> None:
    """The connection breaks (not a clean close: a network failure, a reset)."""
    stream.transport.disconnecting = True
    stream.xs.connectionLost(Failure(error.ConnectionLost()))


def stanza(text: str):
    """A stanza to send, in the client namespace."""
    name = text[1:].split(" ", 1)[0].split(">", 1)[0]
    return xml.parse(text.replace(f"<{name}", f"<{name} xmlns='jabber:client'", 1))


def xmls(elements) -> list[str]:
    return [e.toXml(defaultUri="jabber:client") for e in elements]


async def sm_session(driver: Driver) -> FakeStream:
    """Connect bob with stream management enabled (resumable, id 'sm1')."""
    import asyncio

    pending = asyncio.ensure_future(driver.host.connect("bob"))
    stream = await driver.login(FEATURES)
    await pending
    early = xmls(driver.early)
    assert early[0] == f"<enable xmlns='{SM}' resume='true'/>"
    assert early[1].startswith("<iq type='get'") and "jabber:iq:roster" in early[1]
    assert early[2] == f"<r xmlns='{SM}'/>"  # the roster request is the first counted stanza
    stream.receive(f"<enabled xmlns='{SM}' id='sm1' resume='true' max='300'/>")
    # the server acknowledges the roster request and the initial presence
    stream.receive(f"<a xmlns='{SM}' h='2'/>")
    assert stream.sent_xml() == ["<presence/>"]
    assert not driver.host.plugins["XEP-0198"].handlers["bob"].unacked
    return stream


async def resume_stream(driver: Driver) -> tuple[FakeStream, object]:
    """The reconnection attempt of the last client: a new stream going through the
    initializers the client set up (as after TLS and SASL), returns the stream and the
    resumption's Deferred."""
    client = driver.clients[-1]
    stream = FakeStream()
    xs = stream.xs
    xs.features = {FEATURES[0]: None}
    xs.initializers = [jclient.BindInitializer(xs, True), jclient.SessionInitializer(xs)]
    for hook in client.authenticator.initializer_hooks:
        hook(xs, xs.initializers)
    client.factory.installBootstraps(xs)
    client._connected(xs)
    d = xs.initializers[0].initialize()
    return stream, d


@aio
async def test_acks_both_ways(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    try:
        stream = await sm_session(driver)
        client = driver.clients[-1]
        handler = host.plugins["XEP-0198"].handlers["bob"]
        # the server asks: nothing received since <enabled/> (the roster result came before)
        stream.receive(f"<r xmlns='{SM}'/>")
        assert stream.sent_xml() == [f"<a xmlns='{SM}' h='0'/>"]
        stream.receive("<message from='alice@localhost/pc' id='m0'><body>hi</body></message>")
        stream.receive(f"<r xmlns='{SM}'/>")
        assert stream.sent_xml() == [f"<a xmlns='{SM}' h='1'/>"]
        # our stanzas stay queued until acknowledged; one request at a time
        client.send(stanza("<message to='alice@localhost' id='m1'><body>1</body></message>"))
        client.send(stanza("<message to='alice@localhost' id='m2'><body>2</body></message>"))
        assert stream.sent_xml() == [
            "<message to='alice@localhost' id='m1'><body>1</body></message>",
            f"<r xmlns='{SM}'/>",
            "<message to='alice@localhost' id='m2'><body>2</body></message>",
        ]
        assert [e["id"] for _, e in handler.unacked] == ["m1", "m2"]
        stream.receive(f"<a xmlns='{SM}' h='3'/>")  # m1 only: ask again for m2
        assert [e["id"] for _, e in handler.unacked] == ["m2"]
        assert stream.sent_xml() == [f"<r xmlns='{SM}'/>"]
        stream.receive(f"<a xmlns='{SM}' h='4'/>")
        assert not handler.unacked
        assert stream.sent_xml() == []
    finally:
        await host.stop()


@aio
async def test_resume_after_a_loss(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    try:
        stream = await sm_session(driver)
        client = driver.clients[-1]
        stream.receive("<message from='alice@localhost/pc' id='m0'><body>hi</body></message>")
        client.send(stanza("<message to='alice@localhost' id='m1'><body>1</body></message>"))
        client.send(stanza("<message to='alice@localhost' id='m2'><body>2</body></message>"))
        stream.sent()
        connected = len(signals(host, "connected"))
        drop(stream)
        await turn()
        # taken over by stream management: no disconnected signal, reconnecting at once
        assert signals(host, "disconnected") == []
        assert not host.is_connected("bob")
        await driver.attempts(2)
        # connecting meanwhile makes no second session: the session is being resumed
        assert await host.connect("bob") is True
        assert len(driver.clients) == 1 and len(driver.reactor.connections) == 2
        stream, resuming = await resume_stream(driver)
        # h: alice's message
        assert stream.sent_xml() == [f"<resume xmlns='{SM}' previd='sm1' h='1'/>"]
        stream.receive(f"<resumed xmlns='{SM}' previd='sm1' h='3'/>")  # m1 arrived, not m2
        assert resuming.called
        assert not any(
            isinstance(i, jclient.BindInitializer | jclient.SessionInitializer)
            for i in stream.xs.initializers
        )
        client._authd(stream.xs)
        await until(lambda: host.is_connected("bob"))
        await turn()
        # m2 again (same id), then an ack request; no roster request, no presence
        assert stream.sent_xml() == [
            "<message to='alice@localhost' id='m2'><body>2</body></message>",
            f"<r xmlns='{SM}'/>",
        ]
        assert len(signals(host, "connected")) == connected
        assert signals(host, "disconnected") == []
        assert host.get_client("bob") is client
        # the counts go on
        stream.receive(f"<a xmlns='{SM}' h='4'/>")
        assert not host.plugins["XEP-0198"].handlers["bob"].unacked
        stream.receive(f"<r xmlns='{SM}'/>")
        assert stream.sent_xml() == [f"<a xmlns='{SM}' h='1'/>"]
    finally:
        await host.stop()


@aio
async def test_failed_resume_falls_back_to_a_fresh_session(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    try:
        stream = await sm_session(driver)
        client = driver.clients[-1]
        client.send(stanza("<message to='alice@localhost' id='m1'><body>1</body></message>"))
        client.send(stanza("<presence><show>away</show></presence>"))
        drop(stream)
        await turn()
        await driver.attempts(2)
        stream, resuming = await resume_stream(driver)
        assert stream.sent_xml() == [f"<resume xmlns='{SM}' previd='sm1' h='0'/>"]
        errors: list[Failure] = []
        resuming.addErrback(errors.append)
        stream.receive(
            f"<failed xmlns='{SM}'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        )
        (error,) = errors
        client.initializationFailed(error)  # as the authenticator does
        await until(lambda: signals(host, "disconnected") == [("bob",)])
        # the reconnection plugin takes over: a fresh session 1 s later
        await driver.advance(1.01)
        await driver.attempts(3)
        stream = await driver.login(FEATURES)
        assert xmls(driver.early)[0] == f"<enable xmlns='{SM}' resume='true'/>"
        stream.sent()
        stream.receive(f"<enabled xmlns='{SM}' id='sm2' resume='true'/>")
        # the message the lost session never got acknowledged, with its id (not the presence)
        assert stream.sent_xml() == [
            "<message to='alice@localhost' id='m1'><body>1</body></message>",
        ]
        assert len(signals(host, "connected")) == 2
    finally:
        await host.stop()


@aio
async def test_without_server_support_nothing_changes(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    try:
        stream = await driver.connect()
        assert all("urn:xmpp:sm" not in x for x in xmls(driver.early))
        stream.transport.loseConnection()
        await until(lambda: signals(host, "disconnected") == [("bob",)])
    finally:
        await host.stop()


@aio
async def test_resumption_retried_while_the_server_is_unreachable(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path, stream_resume_window="5")
    try:
        stream = await sm_session(driver)
        client = driver.clients[-1]
        drop(stream)
        await driver.attempts(2)
        driver.refuse()  # unreachable: again 1 s later, still no disconnected signal
        await turn()
        await driver.advance(0.99)
        assert len(driver.reactor.connections) == 2
        await driver.advance(0.02)
        await driver.attempts(3)
        stream, resuming = await resume_stream(driver)
        stream.receive(f"<resumed xmlns='{SM}' previd='sm1' h='0'/>")
        client._authd(stream.xs)
        await until(lambda: host.is_connected("bob"))
        assert signals(host, "disconnected") == []

        # unreachable for longer than the window (1 + 2 s, then 4 s would pass 5 s): a fresh
        # session through the reconnection plugin
        drop(stream)
        await driver.attempts(4)
        driver.refuse()
        await turn()
        await driver.advance(1.01)
        await driver.attempts(5)
        driver.refuse()
        await turn()
        await driver.advance(2.01)
        await driver.attempts(6)
        driver.refuse()
        await until(lambda: signals(host, "disconnected") == [("bob",)])
        await driver.advance(1.01)
        await driver.attempts(7)
        await driver.login(FEATURES)
        assert len(driver.clients) == 2
    finally:
        await host.stop()


@aio
async def test_user_disconnect_between_resumption_attempts(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    try:
        stream = await sm_session(driver)
        drop(stream)
        await driver.attempts(2)
        driver.refuse()
        await turn()
        await host.disconnect("bob")
        assert signals(host, "disconnected") == [("bob",)]
        await driver.advance(1000)
        assert len(driver.reactor.connections) == 2
        assert driver.reactor.getDelayedCalls() == []
    finally:
        await host.stop()


@aio
async def test_no_resumption_after_a_stream_error(tmp_path: Path) -> None:
    """The server shuts down (stream error): no resumption attempt, the reconnection plugin
    takes over at once."""
    host, driver = await host_with_bob(tmp_path)
    try:
        stream = await sm_session(driver)
        stream.receive(
            "<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "</stream:error>"
        )
        await until(lambda: signals(host, "disconnected") == [("bob",)])
        assert len(driver.reactor.connections) == 1
        await driver.advance(1.01)
        await driver.attempts(2)
    finally:
        await host.stop()


@aio
async def test_no_resumption_after_a_clean_close(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    try:
        stream = await sm_session(driver)
        stream.transport.loseConnection()  # the server closed the connection cleanly
        await until(lambda: signals(host, "disconnected") == [("bob",)])
        assert len(driver.reactor.connections) == 1
    finally:
        await host.stop()


@aio
async def test_enable_refused(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    try:
        import asyncio

        pending = asyncio.ensure_future(host.connect("bob"))
        stream = await driver.login(FEATURES)
        await pending
        stream.receive(
            f"<failed xmlns='{SM}'><unexpected-request "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        )
        handler = host.plugins["XEP-0198"].handlers["bob"]
        assert not handler.enabled and not handler.unacked
        stream.sent()
        driver.clients[-1].send(
            stanza("<message to='alice@localhost' id='m1'><body>1</body></message>")
        )
        # no counting, no ack request
        assert stream.sent_xml() == [
            "<message to='alice@localhost' id='m1'><body>1</body></message>"
        ]
        stream.receive(f"<r xmlns='{SM}'/>")
        assert stream.sent_xml() == []
        drop(stream)  # not resumable: an ordinary loss
        await until(lambda: signals(host, "disconnected") == [("bob",)])
    finally:
        await host.stop()
