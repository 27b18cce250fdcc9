"""XEP-0092: Software Version.

Answers version queries (name and version; the operating system is not disclosed), and asks
other entities (``software_version_get`` bridge method).
"""

from __future__ import annotations

from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core import constants as C
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq, parse_jid_arg

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Software Version",
    "import_name": "XEP-0092",
    "type": "XEP",
    "protocols": ["XEP-0092"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0092",
    "handler": True,
    "description": "Tell our software version and ask other entities theirs",
}

NS_VERSION = "jabber:iq:version"


class XEP_0092:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        host.plugins["XEP-0030"].add_feature(NS_VERSION)
        host.bridge.add_method(
            "software_version_get",
            self._get_version,
            args=[("entity_jid", "s", "whom to ask (empty: our server)"), ("profile_key", "s")],
            returns="(sss)",
            doc="Software name, version and operating system of an XMPP entity (XEP-0092); "
            "empty strings for what it does not tell.",
        )

    def get_handler(self, client: Any) -> Any:
        return VersionHandler(str(self.host.version))

    async def get_version(self, client: Any, entity: JID | None = None) -> tuple[str, str, str]:
        """(name, version, os) of ``entity`` (our server when None).

        Raises:
            XMPPError, OperationTimeout: see LiberviaClient.send_iq.
        """
        iq = make_iq("get", entity or JID(client.jid.host))
        iq.addElement((NS_VERSION, "query"))
        result = await client.send_iq(iq)
        query = next(result.elements(NS_VERSION, "query"), None)
        values = {"name": "", "version": "", "os": ""}
        if query is not None:
            for child in query.elements(NS_VERSION):
                if child.name in values:
                    values[child.name] = str(child)[:1000]
        return values["name"], values["version"], values["os"]

    async def _get_version(self, entity_jid: str, profile_key: str) -> list[str]:
        client = await self.host.client_of(profile_key)
        entity = parse_jid_arg(entity_jid, "entity") if entity_jid else None
        return list(await self.get_version(client, entity))


class VersionHandler(XMPPHandler):
    def __init__(self, version: str) -> None:
        super().__init__()
        self.version = version

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        self.xmlstream.addObserver(f'/iq[@type="get"]/query[@xmlns="{NS_VERSION}"]', self._on_query)

    def _on_query(self, iq: domish.Element) -> None:
        iq.handled = True
        response = toResponse(iq, "result")
        query = response.addElement((NS_VERSION, "query"))
        query.addElement("name", content=C.APP_NAME)
        query.addElement("version", content=self.version)
        self.xmlstream.send(response)
