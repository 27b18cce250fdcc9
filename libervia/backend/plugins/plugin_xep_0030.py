"""XEP-0030: Service Discovery.

Answers ``disco#info``/``disco#items`` queries about us (identity ``client/pc``, and the
features plugins register with :meth:`XEP_0030.add_feature`), and asks other entities
(:meth:`XEP_0030.get_infos`, :meth:`XEP_0030.get_items`), with a per-profile cache of infos.
"""

from __future__ import annotations

from typing import Any

from twisted.words.protocols.jabber.jid import JID
from wokkel import disco
from wokkel.iwokkel import IDisco
from zope.interface import implementer

from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Service Discovery",
    "import_name": "XEP-0030",
    "type": "XEP",
    "protocols": ["XEP-0030"],
    "dependencies": [],
    "main": "XEP_0030",
    "handler": True,
    "description": "Discover the identities, features and items of XMPP entities",
}

IDENTITY = ("client", "pc", "Libervia")
CACHE_KEY = "XEP-0030_infos"


class XEP_0030:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.features: set[str] = {disco.NS_DISCO_INFO, disco.NS_DISCO_ITEMS}
        #: nodes answered with our own infos (entity capabilities: "node#ver")
        self.info_nodes: set[str] = set()

    def add_feature(self, feature: str) -> None:
        """Announce a feature (a namespace) in our disco#info."""
        self.features.add(feature)

    def get_handler(self, client: Any) -> Any:
        return DiscoResponder(self)

    def own_infos(self) -> tuple[list[tuple[str, str, str, str]], list[str]]:
        """Our identities (category, type, lang, name) and features, as we announce them."""
        category, type_, name = IDENTITY
        return [(category, type_, "", name)], sorted(self.features)

    def cache_infos(self, client: Any, entity: JID, info: disco.DiscoInfo, node: str = "") -> None:
        """Remember an entity's infos for this session (e.g. known from its capabilities)."""
        client.extra.setdefault(CACHE_KEY, {})[(entity.full(), node)] = info

    def cached_infos(self, client: Any, entity: JID, node: str = "") -> disco.DiscoInfo | None:
        """An entity's infos when already known this session (from a query or its
        capabilities), without asking it."""
        cache: dict[tuple[str, str], disco.DiscoInfo] = client.extra.get(CACHE_KEY, {})
        return cache.get((entity.full(), node))

    async def get_infos(
        self, client: Any, entity: JID | None = None, node: str = "", use_cache: bool = True
    ) -> disco.DiscoInfo:
        """The disco#info of an entity (our server when ``entity`` is None).

        Raises:
            XMPPError, OperationTimeout, NotConnected: see LiberviaClient.send_iq.
        """
        target = entity or JID(client.jid.host)
        cache: dict[tuple[str, str], disco.DiscoInfo] = client.extra.setdefault(CACHE_KEY, {})
        key = (target.full(), node)
        if use_cache and key in cache:
            return cache[key]
        iq = make_iq("get", target)
        query = iq.addElement((disco.NS_DISCO_INFO, "query"))
        if node:
            query["node"] = node
        result = await client.send_iq(iq)
        info = disco.DiscoInfo.fromElement(_query(result, disco.NS_DISCO_INFO))
        cache[key] = info
        return info

    async def get_items(
        self, client: Any, entity: JID | None = None, node: str = ""
    ) -> disco.DiscoItems:
        """The disco#items of an entity (our server when ``entity`` is None)."""
        target = entity or JID(client.jid.host)
        iq = make_iq("get", target)
        query = iq.addElement((disco.NS_DISCO_ITEMS, "query"))
        if node:
            query["node"] = node
        result = await client.send_iq(iq)
        return disco.DiscoItems.fromElement(_query(result, disco.NS_DISCO_ITEMS))

    async def has_feature(self, client: Any, feature: str, entity: JID | None = None) -> bool:
        return feature in (await self.get_infos(client, entity)).features


def _query(result: Any, namespace: str) -> Any:
    query = next(result.elements(namespace, "query"), None)
    if query is None:
        from wokkel.disco import DiscoInfo  # noqa: F401

        from libervia.backend.core.exceptions import XMPPError

        raise XMPPError("the answer has no query element", "bad-request")
    return query


@implementer(IDisco)
class DiscoResponder(disco.DiscoHandler):
    """Answers disco queries; also the IDisco provider of our identity and features."""

    def __init__(self, plugin: XEP_0030) -> None:
        super().__init__()
        self.plugin = plugin

    def getDiscoInfo(self, requestor: JID, target: JID, nodeIdentifier: str = "") -> Any:  # noqa: N802,N803
        if nodeIdentifier and nodeIdentifier not in self.plugin.info_nodes:
            return []
        return [disco.DiscoIdentity(*IDENTITY)] + [
            disco.DiscoFeature(f) for f in sorted(self.plugin.features)
        ]

    def getDiscoItems(self, requestor: JID, target: JID, nodeIdentifier: str = "") -> Any:  # noqa: N802,N803
        return []
