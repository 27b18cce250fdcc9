"""XEP-0167: Jingle RTP sessions — audio/video calls whose media the frontend handles.

The frontend (a browser, aiortc, GStreamer...) runs WebRTC; the daemon converts its SDP to
Jingle and back (:mod:`libervia.backend.tools.webrtc`) and signals: one content per audio or
video m= line (content name = the mid), an RTP ``<description/>`` (payload types, header
extensions, sources...), the XEP-0176 ICE-UDP transport (candidates trickled in
``transport-info``, see :mod:`..plugin_xep_0176`), the XEP-0338 BUNDLE ``<group/>``.

Calling: ``call_start(entity, {"sdp": offer})``. To a **bare** JID the call rings every device
of the callee with Jingle Message Initiation (XEP-0353, when the plugin is loaded; ``"jmi":
false`` in the call data disables it): a ``<propose/>`` with one RTP ``<description
media=.../>`` per media kind of the offer goes to the bare JID and ``call_start`` returns its
id at once, which is the session id. The callee's devices that ring are reported with the
``call_info`` signal (``ringing``, extra ``{"from_jid": device}``); on ``<proceed/>`` the
session-initiate goes to that device with this sid (``<finish/>`` follows the session's end);
``<reject/>`` (``call_ended`` with its reason, ``decline`` without), no answer within
``call_ring_timeout`` (option, 60 s by default: ``<retract/>``, ``call_ended`` ``timeout``;
not the 300 s of other JMI proposals, a phone does not ring for five minutes), an undeliverable
propose (``connectivity-error``) or ``call_end`` before any answer (``<retract/>``, ``cancel``)
end the call. To a full JID (or without JMI: the bare JID's best available device) it returns
the session id once the session-initiate was acknowledged. The frontend trickles its
candidates with ``ice_candidates_add`` (during a proposal they are kept and sent after the
session-initiate); when the peer accepts, ``call_setup`` brings its answer SDP and
``ice_candidates_new`` its candidates. Data channels (``m=application``) are refused: file
transfer over WebRTC has its own path (``file_send``, XEP-0343).

Being called: the user is asked with ``action_new`` (type ``call``, the offer SDP in
``"sdp"``) and the caller gets ``<ringing/>``. ``action_launch`` answers ``{"accept": true,
"sdp": answer}`` (session-accept at once), ``{"accept": true}`` (then the answer comes with
``call_answer_sdp``) or ``{"accept": false}`` (session-terminate ``decline``).
A call proposed with XEP-0353 and accepted here whose session never comes (the caller hung
up as we proceeded, another device of ours got it, no session-initiate in time) ends with
``call_ended`` for its session id too.

During the call: ``call_info`` sends the session-infos of XEP-0167 §7 (active, hold, unhold,
mute, unmute, ringing) and the ``call_info`` signal reports the peer's; ``call_end`` ends it
(``success`` when active; ``decline`` for a call we did not answer, ``cancel`` for one the
peer did not answer). ``call_ended`` (XEP-0176) tells how any call ended.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import (
    InvalidInput,
    LiberviaError,
    NotFound,
    OperationTimeout,
)
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166 import Reason, Role, Senders, Session, State
from libervia.backend.plugins.plugin_xep_0166.elements import ReasonElement
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
from libervia.backend.plugins.plugin_xep_0353 import Proposal, ProposalEnded, ProposalState
from libervia.backend.tools.webrtc import jingle as wj
from libervia.backend.tools.webrtc.model import SessionDescription

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
#: client.extra key: our calls proposed with XEP-0353 that no device answered yet, by sid
PROPOSED_KEY = "XEP-0167_proposed"
#: seconds a call proposed with XEP-0353 rings before it is retracted (``call_ring_timeout``)
RING_TIMEOUT = 60.0


class XEP_0167:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.jingle = host.plugins["XEP-0166"]
        self.ice = host.plugins["XEP-0176"]
        self.ring_timeout = host.config.get_float("call_ring_timeout", RING_TIMEOUT, minimum=1)
        self.app = RtpApplication(self)
        self.jingle.register_application(self.app)
        disco = host.plugins["XEP-0030"]
        for feature in (wj.NS_RTP_AUDIO, wj.NS_RTP_VIDEO):
            disco.add_feature(feature)
        register_bridge(self, host.bridge)
        if "XEP-0353" in host.plugins:
            host.plugins["XEP-0353"].on_accepted_unstarted(wj.NS_RTP, self._accepted_unstarted)

    # --- helpers ----------------------------------------------------------------------------

    def find_call(self, client: Any, session_id: str) -> Session:
        """Our live call of that sid.

        Raises:
            NotFound: no such session, or not a call. InvalidInput: an empty session id, or
                a call that no device of the callee answered yet (XEP-0353 proposal).
        """
        if not isinstance(session_id, str) or not session_id:
            raise InvalidInput("a session id is needed")
        if session_id in self.proposed(client):
            raise InvalidInput(f"call {session_id} is not answered by any device yet")
        session = self.ice.find_session(client, session_id)
        if not self.app.rtp_contents(session):
            raise NotFound(f"session {session_id!r} is not a call")
        return session

    # --- calling ----------------------------------------------------------------------------

    async def call_start(self, client: Any, peer: JID, call_data: Any) -> str:
        """Call ``peer`` with the frontend's offer (``{"sdp": offer, "jmi"?: bool}``); returns
        the session id: at once when the call is proposed to every device of a bare JID
        (XEP-0353), else once the session-initiate was acknowledged.

        Raises:
            InvalidInput: no or bad SDP, no audio/video, a data channel in it; ``jmi`` not a
                boolean, true with a full JID or without the XEP-0353 plugin.
            NotFound: without JMI, a bare JID without available device.
            XMPPError, OperationTimeout, NotConnected: the call could not be delivered.
        """
        if not isinstance(call_data, dict) or not isinstance(call_data.get("sdp"), str):
            raise InvalidInput('call_data must be {"sdp": the frontend\'s offer}')
        jmi = call_data.get("jmi")
        if jmi is not None and not isinstance(jmi, bool):
            raise InvalidInput("jmi must be a boolean")
        if jmi and "XEP-0353" not in self.host.plugins:
            raise InvalidInput("Jingle Message Initiation (XEP-0353) is not available")
        if jmi and peer.resource:
            raise InvalidInput("jmi rings every device of a bare JID: give a bare JID")
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
        if not peer.resource and jmi is not False and "XEP-0353" in self.host.plugins:
            return await self._propose(client, peer.userhostJID(), description)
        peer = self.jingle.resolve_peer(client, peer)
        session = self.jingle.create_session(client, peer)
        self._add_contents(session, description)
        await self.jingle.initiate(client, session)
        return session.sid

    def _add_contents(self, session: Session, description: SessionDescription) -> None:
        """One content per media of the frontend's offer, the BUNDLE group, the call state."""
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

    # --- calling every device (XEP-0353) ----------------------------------------------------

    @staticmethod
    def proposed(client: Any) -> dict[str, Session]:
        """Our calls proposed with XEP-0353 that no device answered yet, by sid: each is a
        session prepared with the callee's bare JID as peer, initiated with the full JID of
        the device that proceeds."""
        proposed: dict[str, Session] = client.extra.setdefault(PROPOSED_KEY, {})
        return proposed

    @staticmethod
    def propose_descriptions(description: SessionDescription) -> list[domish.Element]:
        """The ``<propose/>``'s descriptions: one RTP ``<description media=.../>`` per media
        kind of the offer, in its order (XEP-0353 §3.1, as Conversations and Dino send and
        expect them)."""
        kinds = list(dict.fromkeys(m.media for m in description.media))
        elements = []
        for kind in kinds:
            element = domish.Element((wj.NS_RTP, "description"))
            element["media"] = kind
            elements.append(element)
        return elements

    async def _propose(self, client: Any, bare: JID, description: SessionDescription) -> str:
        jmi = self.host.plugins["XEP-0353"]
        sid = str(uuid.uuid4())  # the propose id, then the sid: UUID v4 (XEP-0353)
        # the session exists before any device answers (its candidates are kept), with the
        # bare JID as peer until then; it is not live for the Jingle core yet
        session = Session(sid, bare, client.jid, Role.INITIATOR)
        self._add_contents(session, description)
        self.proposed(client)[sid] = session
        self.ice.prepared(client)[sid] = session
        try:
            await jmi.propose(
                client,
                bare,
                self.propose_descriptions(description),
                sid,
                on_ringing=lambda device: self._device_ringing(client, session, device),
                timeout=self.ring_timeout,
            )
        except BaseException:
            self._forget_proposed(client, session)
            raise
        background(self._call_when_proceeded(client, session), f"call proposal {sid}")
        return sid

    def _forget_proposed(self, client: Any, session: Session) -> None:
        for registry in (self.proposed(client), self.ice.prepared(client)):
            if registry.get(session.sid) is session:
                del registry[session.sid]

    def _device_ringing(self, client: Any, session: Session, device: JID) -> None:
        """A device of the callee rings (``<ringing/>``): the same signal as the
        session-info ringing of a call, with the device."""
        if session.is_ended:
            return
        extra = json.dumps({"from_jid": device.full()})
        self.host.bridge.emit("call_info", session.sid, "ringing", extra, client.profile)

    def _end_proposed(self, client: Any, session: Session, reason: Reason, text: str) -> None:
        """The proposed call ends before any session-initiate: ``call_ended`` (through the
        ICE transport's stop, as for any call)."""
        self._forget_proposed(client, session)
        self.jingle.end_locally(client, session, ReasonElement(reason, text or None))

    async def _call_when_proceeded(self, client: Any, session: Session) -> None:
        """Wait for a device's ``<proceed/>``, then send it the session-initiate."""
        jmi = self.host.plugins["XEP-0353"]
        bare, sid = session.peer, session.sid
        try:
            device = await jmi.wait_proceed(client, bare, sid)
        except ProposalEnded as e:  # rejected, or withdrawn (hang-up, lost tie-break)
            default = Reason.DECLINE if e.state is ProposalState.REJECTED else Reason.CANCEL
            self._end_proposed(client, session, e.condition or default, str(e))
            return
        except OperationTimeout as e:  # we retracted it (<timeout/>)
            self._end_proposed(client, session, Reason.TIMEOUT, str(e))
            return
        except LiberviaError as e:  # the propose bounced, the profile disconnected
            log.info("%s: call %s to %s: %s", client.profile, sid, bare.full(), e)
            self._end_proposed(client, session, Reason.CONNECTIVITY_ERROR, str(e))
            return
        self._forget_proposed(client, session)
        if session.is_ended:
            # hung up while the proceed arrived: the callee's device waits for a session
            assert session.reason is not None
            jmi.finish(client, device, sid, session.reason.condition)
            return
        log.info("%s: call %s: %s proceeds", client.profile, sid, device.full())
        session.peer = device
        jmi.track(client, session)  # <finish/> when the session ends
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:  # the session ended (call_ended told it)
            log.info("%s: call %s not delivered to %s: %s", client.profile, sid, device, e)
            if not session.is_ended:
                self.jingle.end_locally(
                    client, session, ReasonElement(Reason.FAILED_APPLICATION, str(e))
                )

    def _accepted_unstarted(
        self, client: Any, proposal: Proposal, reason: Reason, text: str
    ) -> None:
        """A call proposed to us (XEP-0353) that our user accepted ends before its session
        (the caller hung up as we proceeded, the call went to another device of ours, no
        session-initiate came...): the frontend that accepted waits for the offer of that
        session id, ``call_ended`` tells it, as for any call."""
        data = {"reason": reason.value, "fallback": False, "text": text}
        self.host.bridge.emit("call_ended", proposal.sid, json.dumps(data), client.profile)

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
        ``cancel`` when the peer did not; ``data["reason"]`` (a Jingle reason) overrides. A
        call no device answered yet (XEP-0353 proposal) is retracted.

        Raises:
            NotFound: unknown call. InvalidInput: bad data.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidInput("data must be an object")
        reason_value = data.get("reason")
        text = data.get("text")
        if text is not None and not isinstance(text, str):
            raise InvalidInput("text must be a string")
        if reason_value is not None and (
            not isinstance(reason_value, str) or reason_value not in END_REASONS
        ):
            raise InvalidInput(f"unknown Jingle reason {str(reason_value)[:40]!r}")
        proposed = self.proposed(client).get(session_id) if isinstance(session_id, str) else None
        if proposed is not None:
            reason = Reason(reason_value) if reason_value is not None else Reason.CANCEL
            # <retract/> (False when a device proceeded meanwhile: it gets a <finish/>)
            self.host.plugins["XEP-0353"].retract(client, proposed.peer, session_id, reason)
            self._end_proposed(client, proposed, reason, text or "")
            return
        session = self.find_call(client, session_id)
        if reason_value is not None:
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
