"""Reconnection with backoff (plugin RECONNECT) on the fake clock: lost connections come back,
failed attempts back off, user disconnections and stopping cancel, wrong passwords stop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import error
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import sasl as jsasl

from libervia.backend.core.exceptions import ConfigError
from libervia.backend.core.main import LiberviaBackend
from libervia.backend.core.xmpp import LiberviaClient
from libervia.backend.plugins.plugin_reconnect import Backoff
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, FakeStream, config_for

JID_ = "bob@localhost"


async def turn() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


async def until(condition: Any) -> None:
    """Let the loop run until ``condition()`` (database calls finish in aiosqlite's thread)."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0)


def signals(host: LiberviaBackend, name: str) -> list[tuple[Any, ...]]:
    return [args for signal, args in host.bridge.emitted if signal == name]


class Driver:
    """Records the clients the host prepares, and completes or fails their logins."""

    def __init__(self, host: LiberviaBackend, reactor: FakeReactor) -> None:
        self.host = host
        self.reactor = reactor
        self.clients: list[LiberviaClient] = []
        self.last: LiberviaClient | None = None
        prepare = host.prepare_client

        async def recording(name: str, settings: Any) -> LiberviaClient:
            client = await prepare(name, settings)
            self.clients.append(client)
            return client

        host.prepare_client = recording  # type: ignore[method-assign]
        # no jitter: the delays are exact
        host.plugins["RECONNECT"]._rand = lambda: 0.5

    async def login(self, features: tuple[tuple[str, str], ...] = ()) -> FakeStream:
        """Complete the pending login of the last client (roster answered).

        ``features``: the stream features the server offers; what the client sent during
        the login (before the roster answer) is kept in ``self.early``.
        """
        await until(
            lambda: (
                bool(self.clients)
                and self.clients[-1] is not self.last
                and self.clients[-1]._connector is not None  # connecting
            )
        )
        client = self.last = self.clients[-1]
        connected = len(signals(self.host, "connected"))
        stream = FakeStream()
        stream.xs.features = dict.fromkeys(features)
        stream.attach(client)
        await until(lambda: b"jabber:iq:roster" in stream.transport.value())
        self.early = stream.sent()
        roster_get = next(e for e in self.early if e.name == "iq")
        stream.receive(
            f"<iq type='result' id='{roster_get['id']}'><query xmlns='jabber:iq:roster'/></iq>"
        )
        # the connection is complete once announced (after every profile_connected hook)
        await until(lambda: len(signals(self.host, "connected")) > connected)
        return stream

    async def connect(self) -> FakeStream:
        pending = asyncio.ensure_future(self.host.connect("bob"))
        await turn()
        stream = await self.login()
        await pending
        return stream

    def refuse(self) -> None:
        """The last connection attempt is refused (server down)."""
        factory = self.reactor.connections[-1][2]
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))

    async def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)
        await turn()

    async def attempts(self, count: int) -> None:
        """Wait until ``count`` connections were attempted in all."""
        await until(lambda: len(self.reactor.connections) >= count)
        assert len(self.reactor.connections) == count


# plugins that query the server at each connection (their answers are not what is tested)
QUIET = "XEP-0115 XEP-0280 XEP-0313"


async def host_with_bob(tmp_path: Path, **options: str) -> tuple[LiberviaBackend, Driver]:
    reactor = FakeReactor()
    config = config_for(tmp_path)
    for name, value in {"plugins_disabled": QUIET, **options}.items():
        config.parser.set("DEFAULT", name, value)
    host = LiberviaBackend(config, reactor=reactor)
    host.bridge.keep = True  # type: ignore[attr-defined]
    await host.start()
    await host.profiles.create("bob", "")
    await host.params.set("Connection", "JabberID", JID_, "bob")
    return host, Driver(host, reactor)


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    backoff = Backoff(initial=1, maximum=300, jitter=0.2)
    assert [backoff.delay(n, lambda: 0.5) for n in range(10)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
    ]
    assert backoff.delay(1000, lambda: 0.5) == 300
    assert backoff.delay(0, lambda: 0.0) == pytest.approx(0.8)
    assert backoff.delay(0, lambda: 1.0) == pytest.approx(1.2)
    assert backoff.delay(20, lambda: 1.0) == pytest.approx(360)


def test_backoff_options(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    config.parser.set("DEFAULT", "reconnect_delay", "0.5")
    config.parser.set("DEFAULT", "reconnect_delay_max", "10")
    assert Backoff.from_config(config) == Backoff(0.5, 10, 0.2, 120)
    config.parser.set("DEFAULT", "reconnect_jitter", "x")
    with pytest.raises(ConfigError):
        Backoff.from_config(config)


@aio
async def test_lost_connection_reconnects_with_backoff(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    reactor = driver.reactor
    try:
        stream = await driver.connect()
        assert signals(host, "connected") == [(JID_, "bob")]
        assert len(reactor.connections) == 1
        stream.transport.loseConnection()  # the server went away
        await turn()
        assert signals(host, "disconnected") == [("bob",)]
        assert host.plugins["RECONNECT"].pending("bob")
        await driver.advance(0.99)
        assert len(reactor.connections) == 1
        await driver.advance(0.02)  # 1 s: first attempt, refused
        await driver.attempts(2)
        driver.refuse()
        await turn()
        await driver.advance(1.99)
        assert len(reactor.connections) == 2
        await driver.advance(0.02)  # 2 s later: second attempt, refused
        await driver.attempts(3)
        driver.refuse()
        await turn()
        await driver.advance(4.01)  # then 4 s: the server is back
        await driver.attempts(4)
        await driver.login()
        await turn()
        assert signals(host, "connected") == [(JID_, "bob"), (JID_, "bob")]
        assert signals(host, "disconnected") == [("bob",)]
        assert not host.plugins["RECONNECT"].pending("bob")
        assert host.plugins["RECONNECT"]._profiles["bob"].history == [1, 2, 4]

        # lost again at once: the backoff goes on (8 s)
        driver.clients[-1].xmlstream.transport.loseConnection()
        await turn()
        await driver.advance(7.9)
        assert len(reactor.connections) == 4
        await driver.advance(0.2)
        await driver.attempts(5)
        stream = await driver.login()
        # a stable session (> reconnect_stable) resets it: 1 s again
        await driver.advance(200)
        stream.transport.loseConnection()
        await turn()
        await driver.advance(1.01)
        await driver.attempts(6)
        await driver.login()
    finally:
        await host.stop()


@aio
async def test_user_disconnect_stays_disconnected(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    reactor = driver.reactor
    try:
        await driver.connect()
        await host.disconnect("bob")
        await driver.advance(1000)
        assert len(reactor.connections) == 1
        assert signals(host, "disconnected") == [("bob",)]

        # lost, then the user disconnects during the backoff: cancelled
        await driver.connect()
        driver.clients[-1].xmlstream.transport.loseConnection()
        await turn()
        assert host.plugins["RECONNECT"].pending("bob")
        await host.disconnect("bob")
        assert not host.plugins["RECONNECT"].pending("bob")
        await driver.advance(1000)
        assert len(reactor.connections) == 2

        # lost, and the user disconnects while the attempt is connecting: it ends disconnected
        await driver.connect()
        driver.clients[-1].xmlstream.transport.loseConnection()
        await turn()
        await driver.advance(1.01)
        await driver.attempts(4)
        await host.disconnect("bob")
        await driver.login()
        await turn()
        assert not host.is_connected("bob")
        await driver.advance(1000)
        assert len(reactor.connections) == 4
    finally:
        await host.stop()


@aio
async def test_authentication_failure_stops_retrying(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    reactor = driver.reactor
    try:
        stream = await driver.connect()
        stream.transport.loseConnection()
        await turn()
        await driver.advance(1.01)
        await driver.attempts(2)
        # the password was changed meanwhile: the server refuses it
        driver.clients[-1].initializationFailed(Failure(jsasl.SASLAuthError("not-authorized")))
        await turn()
        ((profile, code, message),) = signals(host, "reconnect_failed")
        assert (profile, code) == ("bob", "AuthenticationFailed")
        assert "Connection/Password" in message
        assert not host.plugins["RECONNECT"].pending("bob")
        await driver.advance(10_000)
        assert len(reactor.connections) == 2
    finally:
        await host.stop()


@aio
async def test_stopping_cancels_pending_reconnections(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path)
    reactor = driver.reactor
    stream = await driver.connect()
    stream.transport.loseConnection()
    await turn()
    assert host.plugins["RECONNECT"].pending("bob")
    await host.stop()
    assert not host.plugins["RECONNECT"].pending("bob")
    reactor.advance(1000)
    await turn()
    assert len(reactor.connections) == 1
    assert reactor.getDelayedCalls() == []


@aio
async def test_disabled_by_option(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path, reconnect="false")
    reactor = driver.reactor
    try:
        stream = await driver.connect()
        stream.transport.loseConnection()
        await turn()
        await driver.advance(1000)
        assert len(reactor.connections) == 1
    finally:
        await host.stop()


@aio
async def test_keepalive_pings_an_idle_server_and_drops_a_dead_one(tmp_path: Path) -> None:
    host, driver = await host_with_bob(tmp_path, keepalive_interval="10", keepalive_timeout="5")
    try:
        stream = await driver.connect()
        stream.sent()
        await driver.advance(9)
        # a stanza from the server is activity: no ping 10 s after login
        stream.receive("<message from='alice@localhost/pc' type='chat'><body>hi</body></message>")
        await driver.advance(1.5)
        assert stream.sent() == []
        await driver.advance(9)  # 10 s idle: ping
        (ping,) = stream.sent()
        assert ping.toXml(defaultUri="jabber:client") == (
            f"<iq type='get' to='localhost' id='{ping['id']}'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        await driver.advance(4.9)
        stream.receive(f"<iq type='result' id='{ping['id']}' from='localhost'/>")
        await turn()
        assert host.is_connected("bob")
        # the server is frozen: the next ping gets no answer
        await driver.advance(10.1)
        (ping,) = stream.sent()
        await driver.advance(4.9)
        assert host.is_connected("bob")
        await driver.advance(0.2)
        assert not host.is_connected("bob")
        assert signals(host, "disconnected") == [("bob",)]
        # ... and the reconnection kicks in
        await driver.advance(1.01)
        await driver.attempts(2)
        stream = await driver.login()
        stream.sent()
        await driver.advance(10.1)
        assert len(stream.sent()) == 1  # the new stream is watched too
    finally:
        await host.stop()
