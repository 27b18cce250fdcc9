"""XEP-0199: XMPP Ping.

Answers pings, and pings other entities (``ping`` bridge method: the round trip in seconds).
"""

from __future__ import annotations

from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq, parse_jid_arg

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "XMPP Ping",
    "import_name": "XEP-0199",
    "type": "XEP",
    "protocols": ["XEP-0199"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0199",
    "handler": True,
    "description": "Answer pings and ping other entities",
}

NS_PING = "urn:xmpp:ping"


class XEP_0199:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        host.plugins["XEP-0030"].add_feature(NS_PING)
        host.bridge.add_method(
            "ping",
            self._ping,
            args=[("entity_jid", "s", "whom to ping (empty: our server)"), ("profile_key", "s")],
            returns="d",
            doc="Ping an XMPP entity (XEP-0199); returns the round trip in seconds.",
        )

    def get_handler(self, client: Any) -> Any:
        return PingHandler()

    async def ping(self, client: Any, entity: JID | None = None, timeout: float = 30) -> float:
        """Ping ``entity`` (our server when None); the round trip in seconds.

        Raises:
            XMPPError: the entity answered an error (e.g. not reachable).
            OperationTimeout: no answer within ``timeout``.
        """
        iq = make_iq("get", entity or JID(client.jid.host))
        iq.addElement((NS_PING, "ping"))
        start = client.reactor.seconds()
        await client.send_iq(iq, timeout)
        return float(client.reactor.seconds() - start)

    async def _ping(self, entity_jid: str, profile_key: str) -> float:
        client = await self.host.client_of(profile_key)
        entity = parse_jid_arg(entity_jid, "entity") if entity_jid else None
        return await self.ping(client, entity)


class PingHandler(XMPPHandler):
    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        self.xmlstream.addObserver(f'/iq[@type="get"]/ping[@xmlns="{NS_PING}"]', self._on_ping)

    def _on_ping(self, iq: domish.Element) -> None:
        iq.handled = True
        self.xmlstream.send(toResponse(iq, "result"))
