"""XEP-0261: Jingle In-Band Bytestreams transport (``urn:xmpp:jingle:transports:ibb:1``).

The fallback transport: always usable, lowest priority. The initiator offers a block size
(``ibb_block_size`` option, default 4096) and a bytestream sid; the responder may lower the
block size in its answer (we never accept more than 8192, like Conversations). Once
negotiated, the **Jingle initiator** sends the XEP-0047 ``<open/>`` whoever sends the data;
the sender then writes the whole source and closes the bytestream, the receiver's sink gets
the bytes and the end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import LiberviaError
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0047 import (
    DEFAULT_BLOCK_SIZE,
    XEP_0047,
    IBBSession,
    parse_block_size,
)
from libervia.backend.plugins.plugin_xep_0166 import (
    BaseTransportHandler,
    Content,
    Role,
    Session,
    TransportFailed,
)
from libervia.backend.plugins.plugin_xep_0166.errors import JingleError, bad_request

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle In-Band Bytestreams",
    "import_name": "XEP-0261",
    "type": "XEP",
    "protocols": ["XEP-0261"],
    "dependencies": ["XEP-0166", "XEP-0047"],
    "main": "XEP_0261",
    "handler": False,
    "description": "Jingle transport over in-band bytestreams (the fallback)",
}

NS_JINGLE_IBB = "urn:xmpp:jingle:transports:ibb:1"
#: the largest block size we accept (Conversations' value)
MAX_ACCEPTED_BLOCK_SIZE = 8192
MAX_SID_LENGTH = 256


@dataclass
class IBBTransportData:
    """What was negotiated for one content."""

    sid: str
    block_size: int
    ibb: IBBSession | None = None


def transport_element(data: IBBTransportData) -> domish.Element:
    element = domish.Element((NS_JINGLE_IBB, "transport"))
    element["block-size"] = str(data.block_size)
    element["sid"] = data.sid
    return element


def parse_transport(element: domish.Element) -> IBBTransportData:
    """Read a ``<transport/>`` (block-size and sid required, IQ stanzas only).

    Raises:
        JingleError: bad-request when malformed, feature-not-implemented for messages.
    """
    try:
        block_size = parse_block_size(element.getAttribute("block-size"))
    except ValueError as e:
        raise bad_request(str(e)) from None
    sid = element.getAttribute("sid")
    if not sid or len(sid) > MAX_SID_LENGTH:
        raise bad_request("invalid IBB sid")
    if (element.getAttribute("stanza") or "iq") != "iq":
        raise JingleError("feature-not-implemented", text="only IQ stanzas are supported")
    return IBBTransportData(sid, block_size)


class JingleIBB(BaseTransportHandler):
    """The Jingle IBB transport."""

    namespace = NS_JINGLE_IBB
    priority = 0

    def __init__(self, ibb: XEP_0047, block_size: int) -> None:
        self.ibb = ibb
        self.block_size = block_size

    def _data(self, content: Content) -> IBBTransportData:
        data = content.transport_data
        assert isinstance(data, IBBTransportData), "IBB transport not negotiated"
        return data

    async def offer(self, client: Any, session: Session, content: Content) -> domish.Element:
        data = IBBTransportData(uuid.uuid4().hex, self.block_size)
        content.transport_data = data
        return transport_element(data)

    def parse_offer(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        data = parse_transport(element)
        data.block_size = min(data.block_size, MAX_ACCEPTED_BLOCK_SIZE)
        content.transport_data = data

    async def accept(self, client: Any, session: Session, content: Content) -> domish.Element:
        data = self._data(content)

        def opened(ibb_session: IBBSession) -> None:
            data.ibb = ibb_session
            if content.we_send(session):
                self._send(client, session, content, ibb_session)

        self.ibb.expect(
            client,
            session.peer,
            data.sid,
            data.block_size,
            content.sink if content.peer_sends(session) else None,
            opened,
        )
        return transport_element(data)

    def parse_accept(
        self, client: Any, session: Session, content: Content, element: domish.Element | None
    ) -> None:
        if element is None:
            raise bad_request("missing IBB transport")
        data = self._data(content)
        answer = parse_transport(element)
        if answer.sid != data.sid:
            raise bad_request("IBB sid changed")
        if answer.block_size > data.block_size:
            raise bad_request("the responder may only lower the block size")
        data.block_size = answer.block_size

    async def start(self, client: Any, session: Session, content: Content) -> None:
        if session.role is not Role.INITIATOR:
            return  # the initiator opens; our side was ready since accept()
        data = self._data(content)
        sink = content.sink if content.peer_sends(session) else None
        try:
            data.ibb = await self.ibb.open(client, session.peer, data.sid, data.block_size, sink)
        except LiberviaError as e:
            raise TransportFailed(f"IBB bytestream refused: {e}") from None
        if content.we_send(session):
            self._send(client, session, content, data.ibb)

    def _send(
        self, client: Any, session: Session, content: Content, ibb_session: IBBSession
    ) -> None:
        background(
            self._pump(client, content, ibb_session), f"ibb send {session.sid}/{content.name}"
        )

    async def _pump(self, client: Any, content: Content, ibb_session: IBBSession) -> None:
        source = content.source
        assert source is not None
        try:
            await self.ibb.send_from(client, ibb_session, source)
        except Exception as e:
            source.close(e)
            return
        await self.ibb.close(client, ibb_session)
        source.close(None)

    def stop(self, client: Any, session: Session, content: Content) -> None:
        data = content.transport_data
        if not isinstance(data, IBBTransportData):
            return
        self.ibb.unexpect(client, session.peer, data.sid)
        if data.ibb is not None and not data.ibb.closed:
            background(self.ibb.close(client, data.ibb), f"ibb close {data.sid}")


class XEP_0261:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        block_size = host.config.get_int("ibb_block_size", DEFAULT_BLOCK_SIZE)
        block_size = max(1, min(block_size, MAX_ACCEPTED_BLOCK_SIZE))
        self.transport = JingleIBB(host.plugins["XEP-0047"], block_size)
        host.plugins["XEP-0166"].register_transport(self.transport)
