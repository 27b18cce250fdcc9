"""The Jingle application of XEP-0167: RTP contents whose media the frontend handles.

Each RTP content keeps a :class:`RtpContent` in ``content.app_data``: our media (from the
frontend's SDP) and the peer's (from its ``<description/>``). The ICE-UDP transport of
XEP-0176 builds the SDP given to the frontend from the transport it parsed and, through
:meth:`RtpApplication.remote_media`, the peer's RTP description kept here.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import ActionCancelled, InvalidInput, LiberviaError
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166 import (
    BaseApplicationHandler,
    Content,
    Reason,
    Role,
    Senders,
    Session,
)
from libervia.backend.plugins.plugin_xep_0166.elements import ReasonElement
from libervia.backend.plugins.plugin_xep_0166.errors import bad_request
from libervia.backend.plugins.plugin_xep_0176 import IceData, find_media, parse_sdp
from libervia.backend.tools.webrtc import jingle as wj
from libervia.backend.tools.webrtc.model import Media, SDPError

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0167 import XEP_0167

log = get_logger(__name__)

#: session-info payloads of ``urn:xmpp:jingle:apps:rtp:info:1`` (XEP-0167 §7)
INFO_TYPES = ("active", "hold", "unhold", "mute", "unmute", "ringing")
#: the payloads about one content (``creator`` and optional ``name``)
MUTING = ("mute", "unmute")
MEDIA_KINDS = ("audio", "video")
#: session.extra key of the call state
CALL_KEY = "XEP-0167_call"


@dataclass(eq=False)
class RtpContent:
    """``content.app_data`` of an RTP content."""

    #: the media kind: "audio" or "video"
    media: str
    #: ours, from the frontend's SDP (offer or answer)
    local: Media | None = None
    #: the peer's, from its <description/> (offer or answer)
    remote: Media | None = None


@dataclass(eq=False)
class CallState:
    """``session.extra[CALL_KEY]``: what a call waits for."""

    #: the question to the user (responder)
    action: Any = None
    #: the user accepted without SDP: resolved by ``call_answer_sdp``
    answer_sdp: asyncio.Future[None] | None = None
    #: the answer SDP was applied to the contents
    answered: bool = False


class FrontendMedia:
    """Source and sink of an RTP content: the frontend's WebRTC stack moves the media, the
    daemon only signals (the core wants endpoints before it starts a transport)."""

    async def read(self, size: int) -> bytes:
        raise LiberviaError("the media of a call are moved by the frontend")

    async def write(self, data: bytes) -> None:
        raise LiberviaError("the media of a call are moved by the frontend")

    def close(self, error: BaseException | None = None) -> None:
        pass


class RtpApplication(BaseApplicationHandler):
    """``urn:xmpp:jingle:apps:rtp:1``."""

    namespace: ClassVar[str] = wj.NS_RTP

    def __init__(self, plugin: XEP_0167) -> None:
        self.plugin = plugin
        self.host = plugin.host

    # --- state ------------------------------------------------------------------------------

    @staticmethod
    def state(session: Session) -> CallState:
        state: CallState = session.extra.setdefault(CALL_KEY, CallState())
        return state

    @staticmethod
    def rtp_contents(session: Session) -> list[Content]:
        return [c for c in session.contents.values() if isinstance(c.app_data, RtpContent)]

    def remote_media(self, content: Content) -> Media | None:
        """The peer's RTP media of a content (a copy: XEP-0176 completes it with the
        transport and direction when it builds the SDP for the frontend)."""
        data = content.app_data
        if not isinstance(data, RtpContent) or data.remote is None:
            return None
        return copy.deepcopy(data.remote)

    @staticmethod
    def set_endpoints(session: Session, content: Content) -> None:
        endpoint = FrontendMedia()
        if content.we_send(session):
            content.source = endpoint
        if content.peer_sends(session):
            content.sink = endpoint

    # --- parsing (before the peer's IQ is acknowledged) ------------------------------------

    def _parse(self, session: Session, content: Content, description: domish.Element) -> Media:
        # the description's author is the peer
        try:
            return wj.parse_description(
                description, content.name, author_is_initiator=session.role is Role.RESPONDER
            )
        except SDPError as e:
            raise bad_request(f"content {content.name!r}: {e}") from None

    def parse_description(
        self, client: Any, session: Session, content: Content, description: domish.Element
    ) -> None:
        media = self._parse(session, content, description)
        content.app_data = RtpContent(media.media, remote=media)

    def parse_accept(
        self, client: Any, session: Session, content: Content, description: domish.Element | None
    ) -> None:
        if description is None:
            raise bad_request(f"content {content.name!r}: session-accept without description")
        data: RtpContent = content.app_data
        media = self._parse(session, content, description)
        if media.media != data.media:
            raise bad_request(f"content {content.name!r}: {media.media} answers {data.media}")
        data.remote = media
        # the responder may restrict the senders in its answer (e.g. it only receives the
        # video); the core keeps the offered value, the answer's <content/> says it
        parent = getattr(description, "parent", None)
        senders = parent.getAttribute("senders") if parent is not None else None
        if parent is not None and parent.name == "content" and senders:
            try:
                content.senders = Senders(senders)
            except ValueError:
                raise bad_request(f"content {content.name!r}: invalid senders") from None

    def session_info_supported(self, payload: domish.Element) -> bool:
        return payload.uri == wj.NS_RTP_INFO and payload.name in INFO_TYPES

    # --- outgoing calls ---------------------------------------------------------------------

    async def on_accepted(self, client: Any, session: Session, content: Content) -> None:
        self.set_endpoints(session, content)
        # every content's answer was parsed: the frontend gets the whole SDP once
        self.plugin.ice.call_setup(client, session)

    # --- incoming calls ---------------------------------------------------------------------

    async def on_session_initiate(
        self, client: Any, session: Session, contents: list[Content]
    ) -> None:
        if any(not isinstance(c.app_data, RtpContent) for c in session.contents.values()):
            await self.jingle.terminate(
                client, session, Reason.UNSUPPORTED_APPLICATIONS, "a call has only RTP contents"
            )
            return
        if any(not isinstance(c.transport_data, IceData) for c in contents):
            await self.jingle.terminate(
                client, session, Reason.UNSUPPORTED_TRANSPORTS, "calls need ICE-UDP"
            )
            return
        state = self.state(session)
        accepted = self._pre_accepted(client, session)
        answer = accepted if accepted is not None and "sdp" in accepted else None
        if answer is None:
            data = self.action_data(client, session, contents)
            if accepted is not None:
                # the user accepted the XEP-0353 proposal: the frontend only owes its SDP
                # answer to this offer, it must not ask again (and nothing rings any more)
                data["pre_accepted"] = True
            state.action = self.host.actions.new(client, data)
            if accepted is None:
                background(self._ringing(client, session), f"ringing {session.sid}")
            try:
                answer = await state.action.answer
            except ActionCancelled:
                return
            finally:
                state.action = None
        if session.is_ended:
            return
        if not isinstance(answer, dict) or answer.get("accept") is not True:
            await self.jingle.terminate(client, session, Reason.DECLINE)
            return
        if "sdp" in answer:
            try:
                self.use_answer(client, session, answer["sdp"])
            except InvalidInput as e:
                log.info("call %s: unusable answer: %s", session.sid, e)
                await self.jingle.terminate(client, session, Reason.FAILED_APPLICATION, str(e))
                return
        else:
            state.answer_sdp = asyncio.get_event_loop().create_future()
            try:
                await state.answer_sdp
            except ActionCancelled:
                return
            finally:
                state.answer_sdp = None
        if session.is_ended:
            return
        for content in contents:
            self.set_endpoints(session, content)
        await self.jingle.accept(client, session)

    def _pre_accepted(self, client: Any, session: Session) -> dict[str, Any] | None:
        """The answer given during a XEP-0353 proposal of this call (None when the call was
        not proposed, or not accepted). With the frontend's ``sdp`` it answers the call;
        without it, the frontend is given the offer with ``pre_accepted``."""
        if "XEP-0353" not in self.host.plugins:
            return None
        accepted = self.host.plugins["XEP-0353"].take_accepted(client, session)
        if accepted is None:
            return None
        return dict(accepted.answer)

    async def _ringing(self, client: Any, session: Session) -> None:
        try:
            await self.send_info(client, session, "ringing")
        except LiberviaError as e:
            log.info("call %s: ringing not delivered: %s", session.sid, e)

    def action_data(self, client: Any, session: Session, contents: list[Content]) -> dict[str, Any]:
        """The ``action_new`` data of an incoming call."""
        peer = session.peer
        media = [c.app_data.media for c in contents]
        subtype = "video" if "video" in media else "audio"
        in_roster = client.roster is not None and client.roster.get(peer) is not None
        message = f"{peer.userhost()} is calling you ({subtype})"
        return {
            "type": "call",
            "subtype": subtype,
            "session_id": session.sid,
            "from_jid": peer.full(),
            "in_roster": in_roster,
            "media": media,
            "sdp": self.plugin.ice.remote_sdp(session),
            "message": message,
        }

    def use_answer(self, client: Any, session: Session, answer_sdp: Any) -> None:
        """Apply the frontend's answer to every content (our media, senders, BUNDLE).

        Raises:
            InvalidInput: not an SDP, or a content without its media in it.
        """
        if not isinstance(answer_sdp, str):
            raise InvalidInput("the answer sdp must be a string")
        description = parse_sdp(answer_sdp)
        contents = self.rtp_contents(session)
        found = []
        for content in contents:
            media = find_media(description, content, (content.app_data.media,))
            if not media.transport.ufrag or not media.transport.pwd:
                raise InvalidInput(f"the answer has no ICE ufrag/pwd for {content.name!r}")
            if media.transport.fingerprint is None:
                raise InvalidInput(f"the answer has no DTLS fingerprint for {content.name!r}")
            found.append(media)
        for content in contents:
            assert content.transport is not None
            content.transport.use_answer(client, session, content, {"sdp": answer_sdp})
        # the BUNDLE group of the answer, restricted to the contents of the call
        names = {c.name for c in contents}
        session.local_payloads = wj.build_groups(
            [(sem, [n for n in mids if n in names]) for sem, mids in description.groups]
        )
        for content, media in zip(contents, found, strict=True):
            content.app_data.local = content.transport_data.local
            content.senders = Senders(wj.senders_of(media.direction, author_is_initiator=False))
        self.state(session).answered = True

    def build_accept(self, client: Any, session: Session, content: Content) -> domish.Element:
        data: IceData = content.transport_data
        if data.local is None:
            raise InvalidInput(f"content {content.name!r}: no answer from the frontend")
        return wj.build_description(data.local, author_is_initiator=False)

    # --- session-info -----------------------------------------------------------------------

    async def send_info(
        self,
        client: Any,
        session: Session,
        info_type: str,
        creator: str | None = None,
        name: str | None = None,
    ) -> None:
        element = domish.Element((wj.NS_RTP_INFO, info_type))
        if info_type in MUTING:
            element["creator"] = creator or Role.INITIATOR.value
            if name is not None:
                element["name"] = name
        await self.jingle.session_info(client, session, element)

    async def on_session_info(self, client: Any, session: Session, payload: domish.Element) -> None:
        extra: dict[str, str] = {}
        if payload.name in MUTING:
            for attr in ("creator", "name"):
                value = payload.getAttribute(attr)
                if value is not None:
                    extra[attr] = value
        self.host.bridge.emit(
            "call_info", session.sid, payload.name, json.dumps(extra), client.profile
        )

    # --- end --------------------------------------------------------------------------------

    def on_session_ended(self, client: Any, session: Session, reason: ReasonElement) -> None:
        state = session.extra.get(CALL_KEY)
        if not isinstance(state, CallState):
            return
        text = f"the call ended: {reason.condition.value}"
        if state.action is not None and state.action.pending:
            state.action.cancel(text)
        if state.answer_sdp is not None and not state.answer_sdp.done():
            state.answer_sdp.set_exception(ActionCancelled(text))
            state.answer_sdp.exception()  # retrieved: nobody else needs it
