"""The ICE state of one WebRTC content and the XEP-0176 transport handler.

The frontend's WebRTC stack (a browser, aiortc...) gathers candidates and checks
connectivity; the daemon only signals. For each content (one m= section) we keep an
:class:`IceData`: our media (from the frontend's SDP: ufrag, pwd, fingerprint, candidates)
and the peer's. Candidates always travel in ``transport-info``, one per IQ, never in
session-initiate / session-accept (Conversations ignores embedded ones, fact sheet §2.1):
ours only once the stanza carrying our description was acknowledged (:meth:`after_sent`;
a responder's frontend may trickle before it gives its answer: they wait for it), the peer's
are queued until the frontend has the peer's description (initiator: with
``call_setup``; responder: once it answered) and then relayed with ``ice_candidates_new``.
A change of the peer's ufrag/pwd is an ICE restart: relayed with ``"restart": true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput, LiberviaError
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166 import (
    Action,
    BaseTransportHandler,
    Content,
    Role,
    Session,
)
from libervia.backend.plugins.plugin_xep_0166.elements import ContentElement
from libervia.backend.plugins.plugin_xep_0166.errors import bad_request
from libervia.backend.tools.webrtc import jingle as wj
from libervia.backend.tools.webrtc import sdp
from libervia.backend.tools.webrtc.model import (
    Candidate,
    IceTransport,
    Media,
    SDPError,
    SessionDescription,
)

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0176 import XEP_0176

log = get_logger(__name__)

#: most candidates kept per content from the peer (a flood is refused)
MAX_REMOTE_CANDIDATES = 64
#: most candidates kept per content from a responder's frontend before its answer
MAX_EARLY_CANDIDATES = 64


@dataclass(eq=False)
class IceData:
    """``content.transport_data`` of an ICE-based content."""

    #: our media, from the frontend's SDP (None for a responder until the user answers)
    local: Media | None = None
    #: the peer's media, from its offer or answer
    remote: Media | None = None
    #: our description was acknowledged: our candidates may be sent
    sent: bool = False
    out_queue: list[Candidate] = field(default_factory=list)
    #: the frontend has the peer's description: its candidates may be relayed
    frontend_ready: bool = False
    in_queue: list[Candidate] = field(default_factory=list)
    remote_count: int = 0
    #: ICE restarts seen from the peer
    restarts: int = 0
    #: the pair the initiator selected (its ``<remote-candidate/>``: one of ours)
    remote_selected: tuple[int, str, int] | None = None
    #: responder: candidates the frontend gave before its answer (``local`` still None),
    #: and the ufrag/pwd it gave with them, if any; taken by :meth:`IceUdpTransport.use_answer`
    early: list[Candidate] = field(default_factory=list)
    early_credentials: tuple[str, str] | None = None


def find_media(description: SessionDescription, content: Content, kinds: tuple[str, ...]) -> Media:
    """The media of ``description`` for ``content``: same mid, else the only one of
    ``kinds``.

    Raises:
        InvalidInput: none matches.
    """
    media = description.find(content.name)
    if media is not None and media.media in kinds:
        return media
    matching = [m for m in description.media if m.media in kinds]
    if len(matching) == 1:
        return matching[0]
    raise InvalidInput(f"the SDP has no {'/'.join(kinds)} media for content {content.name!r}")


def parse_sdp(text: Any) -> SessionDescription:
    """The frontend's SDP. Raises InvalidInput with the reason."""
    try:
        return sdp.parse(text)
    except SDPError as e:
        raise InvalidInput(f"invalid SDP: {e}") from None


class IceUdpTransport(BaseTransportHandler):
    """XEP-0176 ICE-UDP for RTP sessions (XEP-0167); base of the data-channel transport."""

    namespace: ClassVar[str] = wj.NS_ICE_UDP
    #: a datagram transport: never chosen for byte streams
    priority: ClassVar[int] = -1
    #: media kinds this transport carries
    media_kinds: ClassVar[tuple[str, ...]] = ("audio", "video")

    def __init__(self, plugin: XEP_0176) -> None:
        self.plugin = plugin

    # --- elements (overridden by the data-channel wrapper) ----------------------------------

    def build_element(self, media: Media, transport: IceTransport) -> domish.Element:
        return wj.build_transport(transport, candidates=True)

    def parse_element(self, element: domish.Element, require_credentials: bool) -> Media:
        """The peer's transport as a media (kind unknown here: "audio")."""
        media = Media(name="", media="audio")
        media.transport = wj.parse_transport(element, require_credentials)
        return media

    def _parse(self, element: domish.Element, require_credentials: bool) -> Media:
        try:
            return self.parse_element(element, require_credentials)
        except SDPError as e:
            raise bad_request(str(e)) from None

    # --- negotiation ------------------------------------------------------------------------

    def is_usable(self, client: Any, content: Content) -> bool:
        data = content.transport_data
        return (
            isinstance(data, IceData)
            and data.local is not None
            and data.local.media in self.media_kinds
        )

    def _our_element(self, data: IceData) -> domish.Element:
        assert data.local is not None
        local = data.local.transport
        data.out_queue = list(local.candidates)
        bare = IceTransport(local.ufrag, local.pwd, list(local.options), local.fingerprint)
        return self.build_element(data.local, bare)

    async def offer(self, client: Any, session: Session, content: Content) -> domish.Element:
        data = content.transport_data
        if not isinstance(data, IceData) or data.local is None:
            raise InvalidInput(f"content {content.name!r} has no WebRTC description")
        return self._our_element(data)

    def parse_offer(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        remote = self._parse(element, require_credentials=True)
        remote.name = content.name
        data = IceData(remote=remote)
        data.in_queue = list(remote.transport.candidates)
        remote.transport.candidates = []
        content.transport_data = data

    def use_answer(
        self, client: Any, session: Session, content: Content, answer: dict[str, Any]
    ) -> None:
        if "sdp" not in answer:
            raise InvalidInput("this offer needs a WebRTC answer (sdp): use a WebRTC frontend")
        description = parse_sdp(answer["sdp"])
        media = find_media(description, content, self.media_kinds)
        if not media.transport.ufrag or not media.transport.pwd:
            raise InvalidInput("the SDP answer has no ICE ufrag/pwd")
        media.name = content.name
        data = content.transport_data
        assert isinstance(data, IceData)
        self._take_early(session, data, media)
        data.local = media
        session.local_payloads = wj.build_groups(description.groups)

    @staticmethod
    def _take_early(session: Session, data: IceData, media: Media) -> None:
        """The candidates the frontend trickled before its answer join the answer's (sent
        after the session-accept, as any), unless they came with other ICE credentials."""
        early, data.early = data.early, []
        credentials, data.early_credentials = data.early_credentials, None
        if not early:
            return
        transport = media.transport
        if credentials is not None and credentials != (transport.ufrag, transport.pwd):
            log.info(
                "session %s: %d candidates given with other ICE credentials than the "
                "answer's: dropped",
                session.sid,
                len(early),
            )
            return
        known = {_endpoint(c) for c in transport.candidates}
        for candidate in early:
            if _endpoint(candidate) not in known:
                known.add(_endpoint(candidate))
                transport.candidates.append(candidate)

    async def accept(self, client: Any, session: Session, content: Content) -> domish.Element:
        data = content.transport_data
        if not isinstance(data, IceData) or data.local is None:
            raise InvalidInput(f"content {content.name!r}: no WebRTC answer from the frontend")
        return self._our_element(data)

    def parse_accept(
        self, client: Any, session: Session, content: Content, element: domish.Element | None
    ) -> None:
        if element is None:
            raise bad_request("session-accept without transport")
        remote = self._parse(element, require_credentials=True)
        remote.name = content.name
        data = content.transport_data
        assert isinstance(data, IceData)
        data.remote = remote
        data.in_queue.extend(remote.transport.candidates)
        remote.transport.candidates = []

    async def after_sent(self, client: Any, session: Session, content: Content) -> None:
        data = content.transport_data
        if not isinstance(data, IceData):
            return
        data.sent = True
        if session.role is Role.RESPONDER:
            self.frontend_ready(client, session, content)
        queued, data.out_queue = data.out_queue, []
        for candidate in queued:
            await self.send_candidates(client, session, content, [candidate])

    # --- candidates -------------------------------------------------------------------------

    async def send_candidates(
        self,
        client: Any,
        session: Session,
        content: Content,
        candidates: list[Candidate],
        credentials: bool = False,
        selected: tuple[int, str, int] | None = None,
    ) -> None:
        """One transport-info (ufrag/pwd always, as XEP-0176 §4 asks; fingerprint only
        with ``credentials``, for an ICE restart; ``selected``: a ``<remote-candidate/>``)."""
        data = content.transport_data
        assert isinstance(data, IceData) and data.local is not None
        local = data.local.transport
        transport = IceTransport(local.ufrag, local.pwd, candidates=list(candidates))
        transport.remote_candidate = selected
        if credentials:
            transport.fingerprint = local.fingerprint
        element = self.build_element(data.local, transport)
        try:
            await self.jingle.send_action(
                client,
                session,
                Action.TRANSPORT_INFO,
                [ContentElement(content.creator, content.name, transport=element)],
            )
        except LiberviaError as e:
            log.info("session %s: candidate not delivered: %s", session.sid, e)

    def frontend_ready(self, client: Any, session: Session, content: Content) -> None:
        """The frontend has the peer's description: relay the queued candidates."""
        data = content.transport_data
        if not isinstance(data, IceData) or data.frontend_ready:
            return
        data.frontend_ready = True
        queued, data.in_queue = data.in_queue, []
        if queued:
            self.plugin.emit_candidates(client, session, content, queued)

    async def on_transport_info(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        data = content.transport_data
        if not isinstance(data, IceData) or data.remote is None:
            return
        try:
            info = self.parse_element(element, require_credentials=False)
        except SDPError as e:
            log.info("session %s: bad transport-info from %s: %s", session.sid, session.peer, e)
            return
        remote = data.remote.transport
        restart = bool(info.transport.ufrag) and (
            info.transport.ufrag != remote.ufrag or info.transport.pwd != remote.pwd
        )
        if restart:
            remote.ufrag, remote.pwd = info.transport.ufrag, info.transport.pwd
            if info.transport.fingerprint is not None:
                remote.fingerprint = info.transport.fingerprint
            data.restarts += 1
            data.in_queue = []
        candidates = info.transport.candidates
        room = MAX_REMOTE_CANDIDATES - data.remote_count
        if len(candidates) > room:
            log.warning("session %s: too many candidates from %s", session.sid, session.peer)
            candidates = candidates[: max(room, 0)]
        data.remote_count += len(candidates)
        selected = info.transport.remote_candidate
        if selected is not None:
            data.remote_selected = selected
        if not data.frontend_ready:
            data.in_queue.extend(candidates)
            return
        if candidates or restart or selected is not None:
            self.plugin.emit_candidates(client, session, content, candidates, restart)

    async def add_local_candidates(
        self,
        client: Any,
        session: Session,
        content: Content,
        candidates: list[Candidate],
        ufrag: str | None,
        pwd: str | None,
        selected: tuple[int, str, int] | None = None,
    ) -> None:
        """Candidates (or new credentials: an ICE restart) from the frontend; ``selected``:
        the peer's candidate of the pair ICE selected, sent as ``<remote-candidate/>``
        (initiator only, XEP-0176 §5.4)."""
        data = content.transport_data
        if not isinstance(data, IceData) or (
            data.local is None and session.role is not Role.RESPONDER
        ):
            raise InvalidInput(f"content {content.name!r} has no local WebRTC description")
        if selected is not None and session.role is not Role.INITIATOR:
            raise InvalidInput("only the initiator tells the selected candidate pair")
        if data.local is None:
            # the callee's frontend trickles before giving its answer: kept until it does
            if len(data.early) + len(candidates) > MAX_EARLY_CANDIDATES:
                raise InvalidInput(
                    f"content {content.name!r}: too many candidates before the answer"
                )
            if ufrag and pwd:
                data.early_credentials = (ufrag, pwd)
            data.early.extend(candidates)
            return
        if selected is not None:
            await self.send_candidates(client, session, content, [], selected=selected)
            if not candidates and not (ufrag and pwd):
                return
        local = data.local.transport
        restart = bool(ufrag and pwd) and (ufrag != local.ufrag or pwd != local.pwd)
        if restart:
            assert ufrag is not None and pwd is not None
            local.ufrag, local.pwd = ufrag, pwd
        local.candidates.extend(candidates)
        if not data.sent:
            data.out_queue.extend(candidates)
            return
        if restart:
            await self.send_candidates(client, session, content, candidates, credentials=True)
            return
        for candidate in candidates:
            await self.send_candidates(client, session, content, [candidate])

    def stop(self, client: Any, session: Session, content: Content) -> None:
        self.plugin.ended(client, session, content)


def _endpoint(candidate: Candidate) -> tuple[int, str, str, int, str]:
    """What identifies a candidate whatever its id (made when missing) or generation."""
    return (
        candidate.component_id,
        candidate.transport.lower(),
        candidate.address,
        candidate.port,
        candidate.type,
    )
