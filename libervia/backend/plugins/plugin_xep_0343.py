"""XEP-0343: file transfer over WebRTC data channels, moved by the frontend.

The transport ``urn:xmpp:jingle:transports:webrtc-datachannel:1`` as Conversations speaks it
(fact sheet ``jingle-webrtc-datachannel.md``): an outer element with ``sctp-port`` and
``max-message-size`` wrapping an ICE-UDP transport (ufrag, pwd, DTLS fingerprint);
candidates only in ``transport-info`` (see :mod:`.plugin_xep_0176.ice`).

The daemon never touches the bytes: the frontend's WebRTC stack sends or receives the file
(for a web frontend the file is on the user's device). So:

* sending: ``file_send`` with extra ``{"webrtc": true, "call_data": {"sdp": offer}}`` makes
  the content's transport data from the offer; :meth:`DataChannelTransport.is_usable` is
  True only then (and when the peer does not lack the feature), otherwise the core picks
  SOCKS5 or IBB and the daemon moves the bytes as usual. When the peer accepts, the
  frontend gets ``call_setup`` with the answer and ``ice_candidates_new``;
* receiving: ``action_new`` carries ``"webrtc": {"sdp": offer}``; the frontend answers
  ``action_launch`` with ``"sdp"``; the daemon reserves the file (``"partial"`` in the
  progress metadata) and the frontend writes into it;
* both frontends report with ``file_webrtc_report(session_id, report, profile)``:
  ``{"state": "connected"}``, ``{"state": "progress", "position": n}``,
  ``{"state": "done", "size": n, "hash_algo": "sha-256", "hash": b64}`` or
  ``{"state": "failed", "error": text}``. The daemon checks sizes and hashes, sends the
  ``checksum``/``received`` session-infos and ends the session as for any transport.

Fallback: if the frontend does not report ``connected`` within ``webrtc_ice_timeout``
seconds (default 30; aiortc only fails after end-of-candidates, which Jingle lacks) or
reports ``failed``, the initiator replaces the transport with IBB (``transport-replace``) and
the daemon moves the bytes itself (the frontend is told with ``call_ended``,
``"fallback": true``); this needs the file on the daemon's machine.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166 import (
    Content,
    Reason,
    Role,
    Session,
    TransportFailed,
)
from libervia.backend.plugins.plugin_xep_0176 import IceData, IceUdpTransport, parse_sdp
from libervia.backend.plugins.plugin_xep_0261 import NS_JINGLE_IBB
from libervia.backend.tools.webrtc import jingle as wj
from libervia.backend.tools.webrtc.model import IceTransport, Media

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle WebRTC data channels",
    "import_name": "XEP-0343",
    "type": "XEP",
    "protocols": ["XEP-0343"],
    "dependencies": ["XEP-0166", "XEP-0176", "XEP-0234", "XEP-0261", "XEP-0030"],
    "main": "XEP_0343",
    "handler": False,
    "description": "File transfer over WebRTC data channels (the frontend moves the bytes)",
}

NS_DATACHANNEL = wj.NS_DATACHANNEL
DEFAULT_ICE_TIMEOUT = 30.0
REPORT_STATES = ("connected", "progress", "done", "failed")


@dataclass(eq=False)
class DataChannelData(IceData):
    """IceData of a data-channel content, plus the connection watch."""

    connected: bool = False
    timer: Any = None


class DataChannelTransport(IceUdpTransport):
    """``webrtc-datachannel:1``: the frontend moves the bytes."""

    namespace: ClassVar[str] = NS_DATACHANNEL
    #: above SOCKS5 (100): used whenever the frontend supplied an SDP
    priority: ClassVar[int] = 200
    fallback: ClassVar[str | None] = NS_JINGLE_IBB
    media_kinds: ClassVar[tuple[str, ...]] = ("application",)
    #: the bytes go through the frontend, not through content.source/sink
    frontend_moves_bytes: ClassVar[bool] = True

    def __init__(self, owner: XEP_0343) -> None:
        super().__init__(owner.ice)
        self.owner = owner

    def build_element(self, media: Media, transport: IceTransport) -> domish.Element:
        wrapper = Media(
            name=media.name,
            media="application",
            transport=transport,
            sctp_port=media.sctp_port,
            max_message_size=media.max_message_size,
        )
        return wj.build_datachannel_transport(wrapper, candidates=True)

    def parse_element(self, element: domish.Element, require_credentials: bool) -> Media:
        transport, sctp_port, max_size = wj.parse_datachannel_transport(
            element, require_credentials
        )
        media = Media(
            name="",
            media="application",
            protocol="UDP/DTLS/SCTP",
            sctp_port=sctp_port,
            max_message_size=max_size,
        )
        media.transport = transport
        return media

    def is_usable(self, client: Any, content: Content) -> bool:
        if not super().is_usable(client, content):
            return False
        session = content.session
        if session is None:
            return True
        infos = self.owner.disco.cached_infos(client, session.peer)
        return infos is None or NS_DATACHANNEL in infos.features

    def parse_offer(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        super().parse_offer(client, session, content, element)
        plain: IceData = content.transport_data
        data = DataChannelData(remote=plain.remote, in_queue=plain.in_queue)
        content.transport_data = data

    def action_data(self, client: Any, session: Session, content: Content) -> dict[str, Any]:
        return {"webrtc": {"sdp": self.plugin.remote_sdp(session)}}

    async def start(self, client: Any, session: Session, content: Content) -> None:
        if session.role is not Role.INITIATOR:
            return  # the frontend already has the offer and answered it
        self.plugin.call_setup(client, session)
        data = content.transport_data
        assert isinstance(data, DataChannelData)
        if not data.connected:
            data.timer = client.reactor.callLater(
                self.owner.ice_timeout, self._ice_timeout, client, session, content
            )

    def _ice_timeout(self, client: Any, session: Session, content: Content) -> None:
        data = content.transport_data
        if not isinstance(data, DataChannelData) or session.is_ended:
            return
        data.timer = None
        if content.transport is self and not data.connected:
            self.jingle.transport_failed(
                client,
                session,
                content,
                TransportFailed(f"WebRTC did not connect within {self.owner.ice_timeout:g} s"),
            )

    def stop(self, client: Any, session: Session, content: Content) -> None:
        data = content.transport_data
        if isinstance(data, DataChannelData) and data.timer is not None:
            if data.timer.active():
                data.timer.cancel()
            data.timer = None
        super().stop(client, session, content)


class XEP_0343:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.jingle = host.plugins["XEP-0166"]
        self.ice = host.plugins["XEP-0176"]
        self.disco = host.plugins["XEP-0030"]
        self.ft = host.plugins["XEP-0234"]
        self.ice_timeout = host.config.get_float("webrtc_ice_timeout", DEFAULT_ICE_TIMEOUT)
        self.transport = DataChannelTransport(self)
        self.jingle.register_transport(self.transport)
        self._register_bridge(host.bridge)

    # --- used by XEP-0234 -------------------------------------------------------------------

    def offer_data(self, session: Session, call_data: Any) -> tuple[str, DataChannelData]:
        """(content name, transport data) for a file offer from the frontend's call data
        (``{"sdp": offer}``); sets the session's BUNDLE group.

        Raises:
            InvalidInput: no SDP, or no data-channel media in it.
        """
        if not isinstance(call_data, dict) or not isinstance(call_data.get("sdp"), str):
            raise InvalidInput('call_data must be {"sdp": the frontend\'s offer}')
        description = parse_sdp(call_data["sdp"])
        channels = [m for m in description.media if m.is_datachannel]
        if len(channels) != 1:
            raise InvalidInput("the offer needs exactly one data channel (m=application)")
        (media,) = channels
        if not media.transport.ufrag or not media.transport.pwd:
            raise InvalidInput("the offer has no ICE ufrag/pwd")
        if media.transport.fingerprint is None:
            raise InvalidInput("the offer has no DTLS fingerprint")
        session.local_payloads = wj.build_groups(
            [(sem, [n for n in names if n == media.name]) for sem, names in description.groups]
        )
        return media.name, DataChannelData(local=media)

    # --- reports from the frontend ----------------------------------------------------------

    def _content(self, client: Any, session_id: str) -> tuple[Session, Content]:
        session = self.ice.find_session(client, session_id)
        for content in session.contents.values():
            if isinstance(content.transport_data, DataChannelData):
                return session, content
        raise NotFound(f"session {session_id} has no WebRTC data channel")

    def report(self, client: Any, session_id: str, report: Any) -> None:
        """``file_webrtc_report``.

        Raises:
            NotFound: unknown session. InvalidInput: malformed report.
        """
        if not isinstance(report, dict) or report.get("state") not in REPORT_STATES:
            raise InvalidInput(f"a report is an object with a state in {REPORT_STATES}")
        session, content = self._content(client, session_id)
        data: DataChannelData = content.transport_data
        if content.transport is not self.transport:
            log.info("session %s: report %s after the fallback, ignored", session_id, report)
            return
        transfer = content.app_data
        state = report["state"]
        if state == "connected":
            data.connected = True
            if data.timer is not None and data.timer.active():
                data.timer.cancel()
            data.timer = None
        elif state == "progress":
            position = report.get("position")
            if not isinstance(position, int) or isinstance(position, bool) or position < 0:
                raise InvalidInput("position must be a non-negative integer")
            size = transfer.info.size
            transfer.position = min(position, size) if size is not None else position
        elif state == "failed":
            error = str(report.get("error") or "the frontend's WebRTC connection failed")
            log.info("session %s: WebRTC failed on the frontend: %s", session_id, error)
            if session.role is Role.INITIATOR and not data.connected:
                self.transport.stop(client, session, content)
                self.jingle.transport_failed(client, session, content, TransportFailed(error))
            elif data.connected:
                self.ft.app.fail(
                    client, session, content, Reason.CONNECTIVITY_ERROR, TransportFailed(error)
                )
        else:
            self._done(client, session, content, report)

    def _done(self, client: Any, session: Session, content: Content, report: dict) -> None:
        size = report.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidInput("size must be an integer")
        algo = report.get("hash_algo")
        digest_b64 = report.get("hash")
        if not isinstance(algo, str) or not isinstance(digest_b64, str):
            raise InvalidInput("hash_algo and hash (base64) are needed")
        try:
            digest = base64.b64decode(digest_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("hash must be base64") from None
        self.ft.webrtc_done(client, session, content, size, algo.lower(), digest)

    def _register_bridge(self, bridge: Any) -> None:
        host = self.host

        async def file_webrtc_report(session_id: str, report_s: str, profile_key: str) -> str:
            try:
                report = json.loads(report_s)
            except ValueError as e:
                raise InvalidInput(f"report is not valid JSON: {e}") from None
            client = await host.client_of(profile_key)
            self.report(client, session_id, report)
            return "{}"

        bridge.add_method(
            "file_webrtc_report",
            file_webrtc_report,
            args=[
                ("session_id", "s", "the Jingle session id of the transfer"),
                (
                    "report",
                    "s",
                    'serialised {"state": "connected" | "progress" | "done" | "failed", '
                    '"position"?: int, "size"?: int, "hash_algo"?: str, "hash"?: base64, '
                    '"error"?: str}',
                ),
                ("profile_key", "s"),
            ],
            returns="s",
            doc="A frontend moving a file over a WebRTC data channel reports its progress "
            "and end (the daemon checks the hash and ends the session).",
        )
