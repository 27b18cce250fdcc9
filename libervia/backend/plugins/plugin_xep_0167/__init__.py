"""XEP-0167: Jingle RTP sessions — audio/video calls whose media the frontend handles.

The frontend (a browser, aiortc, GStreamer...) runs WebRTC; the daemon converts its SDP to
Jingle and back (:mod:`libervia.backend.tools.webrtc`) and signals: one content per audio or
video m= line (content name = the mid), an RTP ``<description/>`` (payload types, header
extensions, sources...), the XEP-0176 ICE-UDP transport (candidates trickled in
``transport-info``, see :mod:`..plugin_xep_0176`), the XEP-0338 BUNDLE ``<group/>``.

Calling: ``call_start(entity, {"sdp": offer})`` returns the session id once the
session-initiate was acknowledged; the frontend then trickles its candidates with
``ice_candidates_add``; when the peer accepts, ``call_setup`` brings its answer SDP and
``ice_candidates_new`` its candidates. Data channels (``m=application``) are refused: file
transfer over WebRTC has its own path (``file_send``, XEP-0343).

Being called: the user is asked with ``action_new`` (type ``call``, the offer SDP in
``"sdp"``) and the caller gets ``<ringing/>``. ``action_launch`` answers ``{"accept": true,
"sdp": answer}`` (session-accept at once), ``{"accept": true}`` (then the answer comes with
``call_answer_sdp``) or ``{"accept": false}`` (session-terminate ``decline``).

During the call: ``call_info`` sends the session-infos of XEP-0167 §7 (active, hold, unhold,
mute, unmute, ringing) and the ``call_info`` signal reports the peer's; ``call_end`` ends it
(``success`` when active; ``decline`` for a call we did not answer, ``cancel`` for one the
peer did not answer). ``call_ended`` (XEP-0176) tells how any call ended.
"""

from __future__ import annotations

from typing import Any

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166 import Reason, Role, Senders, Session, State
from libervia.backend.plugins.plugin_xep_0167.application import (
    CALL_KEY,
    INFO_TYPES,
    MEDIA_KINDS,
    MUTING,
    CallState,
    RtpApplication,
    RtpContent,
)
from libervia.backend.plugins.plugin_xep_0167.bridge import register_bridge
from libervia.backend.plugins.plugin_xep_0176 import IceData, parse_sdp
from libervia.backend.tools.webrtc import jingle as wj

__all__ = ["XEP_0167", "RtpApplication", "RtpContent", "INFO_TYPES"]

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle RTP sessions",
    "import_name": "XEP-0167",
    "type": "XEP",
    "protocols": ["XEP-0167"],
    "dependencies": ["XEP-0166", "XEP-0176", "XEP-0030"],
    "recommendations": ["XEP-0353"],
    "main": "XEP_0167",
    "handler": False,
    "description": "Audio/video calls: the frontend handles the media, the daemon signals",
}

#: reasons a frontend may give to ``call_end``
END_REASONS = frozenset(r.value for r in Reason)


class XEP_0167:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.jingle = host.plugins["XEP-0166"]
        self.ice = host.plugins["XEP-0176"]
        self.app = RtpApplication(self)
        self.jingle.register_application(self.app)
        disco = host.plugins["XEP-0030"]
        for feature in (wj.NS_RTP_AUDIO, wj.NS_RTP_VIDEO):
            disco.add_feature(feature)
        register_bridge(self, host.bridge)

    # --- helpers ----------------------------------------------------------------------------

    def find_call(self, client: Any, session_id: str) -> Session:
        """Our live call of that sid.

        Raises:
            NotFound: no such session, or not a call. InvalidInput: an empty session id.
        """
        if not isinstance(session_id, str) or not session_id:
            raise InvalidInput("a session id is needed")
        session = self.ice.find_session(client, session_id)
        if not self.app.rtp_contents(session):
            raise NotFound(f"session {session_id!r} is not a call")
        return session

    # --- calling ----------------------------------------------------------------------------

    async def call_start(self, client: Any, peer: JID, call_data: Any) -> str:
        """Call ``peer`` with the frontend's offer (``{"sdp": offer}``); returns the session
        id once the session-initiate was acknowledged.

        Raises:
            InvalidInput: no or bad SDP, no audio/video, a data channel in it.
            NotFound: a bare JID without available device.
            XMPPError, OperationTimeout, NotConnected: the call could not be delivered.
        """
        if not isinstance(call_data, dict) or not isinstance(call_data.get("sdp"), str):
            raise InvalidInput('call_data must be {"sdp": the frontend\'s offer}')
        description = parse_sdp(call_data["sdp"])
        if any(m.is_datachannel for m in description.media):
            raise InvalidInput(
                "a call carries audio and video only: data channels (m=application) go "
                "through file_send with webrtc"
            )
        if not description.media:
            raise InvalidInput("the offer has no audio or video")
        for media in description.media:
            if media.media not in MEDIA_KINDS:
                raise InvalidInput(f"unsupported media {media.media!r}")
            if not media.transport.ufrag or not media.transport.pwd:
                raise InvalidInput(f"media {media.name!r} has no ICE ufrag/pwd")
            if media.transport.fingerprint is None:
                raise InvalidInput(f"media {media.name!r} has no DTLS fingerprint")
            if not media.payload_types:
                raise InvalidInput(f"media {media.name!r} has no payload type")
            if not media.name or len(media.name) > 256:
                raise InvalidInput("every media needs a mid of at most 256 characters")
        peer = self.jingle.resolve_peer(client, peer)
        session = self.jingle.create_session(client, peer)
        for media in description.media:
            content = self.jingle.add_content(
                session,
                self.app,
                wj.build_description(media, author_is_initiator=True),
                senders=Senders(wj.senders_of(media.direction, author_is_initiator=True)),
                name=media.name,
                app_data=RtpContent(media.media, local=media),
                transport=wj.NS_ICE_UDP,
            )
            content.transport_data = IceData(local=media)
        names = {m.name for m in description.media}
        session.local_payloads = wj.build_groups(
            [(sem, [n for n in mids if n in names]) for sem, mids in description.groups]
        )
        session.extra[CALL_KEY] = CallState()
        await self.jingle.initiate(client, session)
        return session.sid

    # --- answering --------------------------------------------------------------------------

    def answer_sdp(self, client: Any, session_id: str, answer: Any) -> None:
        """``call_answer_sdp``: the frontend's answer to a call the user accepted without
        one; the session-accept follows.

        Raises:
            NotFound: unknown call.
            InvalidInput: the call is not waiting for an answer, or the SDP does not fit it
                (the call keeps waiting: the frontend may send a better one).
        """
        session = self.find_call(client, session_id)
        state = session.extra.get(CALL_KEY)
        if (
            session.role is not Role.RESPONDER
            or session.state is not State.PENDING
            or not isinstance(state, CallState)
            or state.answer_sdp is None
            or state.answer_sdp.done()
        ):
            raise InvalidInput(f"call {session_id} is not waiting for an answer SDP")
        self.app.use_answer(client, session, answer)
        state.answer_sdp.set_result(None)

    # --- during the call --------------------------------------------------------------------

    async def call_end(self, client: Any, session_id: str, data: Any = None) -> None:
        """End a call: ``success`` when active; ``decline`` when we did not answer it yet;
        ``cancel`` when the peer did not; ``data["reason"]`` (a Jingle reason) overrides.

        Raises:
            NotFound: unknown call. InvalidInput: bad data.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidInput("data must be an object")
        session = self.find_call(client, session_id)
        reason_value = data.get("reason")
        text = data.get("text")
        if text is not None and not isinstance(text, str):
            raise InvalidInput("text must be a string")
        if reason_value is not None:
            if not isinstance(reason_value, str) or reason_value not in END_REASONS:
                raise InvalidInput(f"unknown Jingle reason {str(reason_value)[:40]!r}")
            reason = Reason(reason_value)
        elif session.state is State.ACTIVE:
            reason = Reason.SUCCESS
        elif session.role is Role.RESPONDER:
            reason = Reason.DECLINE
        else:
            reason = Reason.CANCEL
        await self.jingle.terminate(client, session, reason, text or None)

    async def call_info(
        self, client: Any, session_id: str, info_type: str, extra: Any = None
    ) -> None:
        """Send a XEP-0167 session-info (active, hold, unhold, mute, unmute, ringing); mute and
        unmute are about one content (``extra``: ``{"name", "creator"?}``) or all of them.

        Raises:
            NotFound: unknown call or content. InvalidInput: bad info type or extra.
        """
        if info_type not in INFO_TYPES:
            raise InvalidInput(f"info_type must be one of {', '.join(INFO_TYPES)}")
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise InvalidInput("extra must be an object")
        session = self.find_call(client, session_id)
        creator, name = None, None
        if info_type in MUTING:
            creator, name = self._muted(session, extra)
        elif set(extra) & {"name", "creator"}:
            raise InvalidInput(f"{info_type} is about the whole call: no name or creator")
        await self.app.send_info(client, session, info_type, creator, name)

    def _muted(self, session: Session, extra: dict[str, Any]) -> tuple[str, str | None]:
        """(creator, name or None for all) of a mute/unmute."""
        name = extra.get("name")
        creator = extra.get("creator")
        if creator is not None and creator not in (Role.INITIATOR.value, Role.RESPONDER.value):
            raise InvalidInput("creator must be initiator or responder")
        if name is None:
            if creator is None:
                creators = {c.creator.value for c in self.app.rtp_contents(session)}
                creator = creators.pop() if len(creators) == 1 else Role.INITIATOR.value
            return creator, None
        if not isinstance(name, str):
            raise InvalidInput("name must be a string")
        matching = [
            c
            for c in self.app.rtp_contents(session)
            if c.name == name and (creator is None or c.creator.value == creator)
        ]
        if not matching:
            raise NotFound(f"call {session.sid} has no content {name!r}")
        return matching[0].creator.value, name
