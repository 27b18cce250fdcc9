"""Fakes for core unit tests: a clock-driven reactor, a fake XML stream, a host on a temporary
SQLite database built by the migrations.

The fake stream is a real Twisted ``XmlStream`` on a ``StringTransport``: stanzas we send are
read back as literal XML (:meth:`FakeStream.sent`), stanzas "from the server" are fed as
literal XML (:meth:`FakeStream.receive`) through the real parser. Ids are deterministic.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface import implementer

from libervia.backend.core.config import Config
from libervia.backend.core.main import LiberviaBackend, NullBridge
from libervia.backend.core.xmpp import ConnectionSettings, LiberviaClient
from libervia.backend.tools import xml


@implementer(IReactorTCP)
class FakeReactor(task.Clock):
    """A clock that records TCP connection attempts instead of making them."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[tuple[str, int, Any]] = []

    def connectTCP(self, host: str, port: int, factory: Any, *a: Any, **kw: Any) -> Any:  # noqa: N802
        self.connections.append((host, port, factory))

        class Connector:
            def disconnect(self) -> None:
                pass

        return Connector()


class _Transport(StringTransport):
    """A StringTransport whose closing reaches the protocol (like a real connection)."""

    def loseConnection(self) -> None:  # noqa: N802
        if not self.disconnecting:
            super().loseConnection()
            self.protocol.connectionLost(Failure(ConnectionDone()))

    abortConnection = loseConnection  # noqa: N815


class FakeStream:
    """An XmlStream whose wire is a StringTransport; attach it to a client to 'log in'."""

    def __init__(self) -> None:
        self.xs = xmlstream.XmlStream(xmlstream.Authenticator())
        self.transport = _Transport()
        self.transport.protocol = self.xs
        self.xs.makeConnection(self.transport)
        self.xs.dataReceived(
            "<stream:stream xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' "
            "version='1.0'>"
        )
        self.transport.clear()
        self._ids = itertools.count(1)

    def attach(self, client: LiberviaClient) -> None:
        client.authenticator.jid = client.settings.jid
        client.factory.installBootstraps(self.xs)  # as the real factory does on a new stream
        client._connected(self.xs)
        client._authd(self.xs)

    def sent(self) -> list[domish.Element]:
        """The stanzas sent since the last call, parsed."""
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        if not data:
            return []
        root = xml.parse(f"<wrapper xmlns='jabber:client'>{data}</wrapper>")
        return list(root.elements())

    def sent_xml(self) -> list[str]:
        return [e.toXml(defaultUri="jabber:client") for e in self.sent()]

    def receive(self, text: str) -> None:
        """Feed a stanza as if the server sent it."""
        self.xs.dataReceived(text)


def config_for(tmp_path: Path) -> Config:
    path = tmp_path / "libervia.conf"
    path.write_text(f"[DEFAULT]\nlocal_dir = {tmp_path}\n")
    return Config.load(path)


async def started_host(tmp_path: Path, reactor: FakeReactor | None = None) -> LiberviaBackend:
    host = LiberviaBackend(config_for(tmp_path), reactor=reactor or FakeReactor())
    bridge = NullBridge()
    bridge.keep = True
    host.bridge = bridge
    await host.start()
    return host


async def logged_in(
    host: LiberviaBackend,
    profile: str,
    jid: str,
    roster_items: str = "",
    server_features: tuple[str, ...] = (),
) -> tuple[LiberviaClient, FakeStream]:
    """A profile's client, 'logged in' on a fake stream, roster answered, presence sent.

    The disco#info of the server and of the account's bare JID are known in advance (no
    query is sent): ``server_features`` only (none by default: no carbons, no archive...).
    """
    if not host.storage.has_profile(profile):
        await host.profiles.create(profile, "")
    settings = ConnectionSettings(jid=JID(jid), password="pw", host="127.0.0.1")
    client = await host.prepare_client(profile, settings)
    from wokkel.disco import DiscoFeature, DiscoInfo

    from libervia.backend.plugins.plugin_xep_0030 import CACHE_KEY

    info = DiscoInfo()
    for feature in server_features:
        info.append(DiscoFeature(feature))
    for entity in (client.jid.host, client.jid.userhost()):
        client.extra.setdefault(CACHE_KEY, {})[(entity, "")] = info
    stream = FakeStream()
    stream.attach(client)
    from libervia.backend.core.aio import background

    ready = background(host.client_ready(client), "test ready")
    import asyncio

    await asyncio.sleep(0)
    roster_get = stream.sent()[0]
    stream.receive(
        f"<iq type='result' id='{roster_get['id']}' to='{jid}'>"
        f"<query xmlns='jabber:iq:roster'>{roster_items}</query></iq>"
    )
    await ready
    return client, stream
