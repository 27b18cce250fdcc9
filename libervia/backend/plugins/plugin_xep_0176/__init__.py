"""XEP-0176: Jingle ICE-UDP transport, and the WebRTC glue shared by calls and data channels.

The frontend runs WebRTC (browser, aiortc, GStreamer...); the daemon converts its SDP to
Jingle and back (:mod:`libervia.backend.tools.webrtc`) and relays ICE candidates:

* ``ice_candidates_add(session_id, candidates, profile)``: candidates gathered by the
  frontend (or new ufrag/pwd: an ICE restart), sent in ``transport-info``;
* signal ``ice_candidates_new(session_id, candidates, profile)``: the peer's candidates;
* signal ``call_setup(session_id, setup_data, profile)``: the peer's answer for the
  initiator (``{"role": "initiator", "sdp": ...}``);
* signal ``call_ended(session_id, data, profile)``: the session (or its WebRTC transport,
  replaced by another one: ``"fallback": true``) ended.

``candidates`` are serialised dicts ``{content name: {"ufrag", "pwd", "candidates": [...],
"restart": bool, "remote_candidate"?: {"component_id", "address", "port"}}}`` (the pair
the initiator selected, XEP-0176 ``<remote-candidate/>``), candidates as
:meth:`~libervia.backend.tools.webrtc.model.Candidate.to_dict`. Candidates of a session
prepared but not initiated yet (a call proposed with XEP-0353, see :meth:`XEP_0176.prepared`)
are kept and sent after its session-initiate.
XEP-0320 DTLS fingerprints travel in the ICE-UDP transport.
"""

from __future__ import annotations

import json
from typing import Any

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166 import Content, Role, Session
from libervia.backend.plugins.plugin_xep_0176.ice import (
    IceData,
    IceUdpTransport,
    find_media,
    parse_sdp,
)
from libervia.backend.tools.webrtc import jingle as wj
from libervia.backend.tools.webrtc import sdp
from libervia.backend.tools.webrtc.model import Candidate, SDPError, SessionDescription

__all__ = ["XEP_0176", "IceData", "IceUdpTransport", "find_media", "parse_sdp"]

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle ICE-UDP transport",
    "import_name": "XEP-0176",
    "type": "XEP",
    "protocols": ["XEP-0176", "XEP-0320", "XEP-0338"],
    "dependencies": ["XEP-0166", "XEP-0030"],
    "main": "XEP_0176",
    "handler": False,
    "description": "ICE-UDP and DTLS signalling for WebRTC frontends",
}

#: session.extra key: the WebRTC signals already emitted for the session
EMITTED_KEY = "webrtc_emitted"
#: client.extra key: sessions of ours built but not initiated yet, by sid (a call proposed
#: with XEP-0353 waits for a device's proceed): the frontend may already add candidates
PREPARED_KEY = "webrtc_prepared"
MAX_CANDIDATES_ADD = 64


class XEP_0176:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.jingle = host.plugins["XEP-0166"]
        self.transport = IceUdpTransport(self)
        self.jingle.register_transport(self.transport)
        host.plugins["XEP-0030"].add_feature(wj.NS_DTLS)
        self._register_bridge(host.bridge)

    # --- sessions ---------------------------------------------------------------------------

    def find_session(self, client: Any, session_id: str) -> Session:
        """Our live session of that sid. Raises NotFound."""
        for session in self.jingle.sessions(client).values():
            if session.sid == session_id:
                return session
        raise NotFound(f"no Jingle session {session_id!r}")

    @staticmethod
    def prepared(client: Any) -> dict[str, Session]:
        """Sessions of ours not initiated yet whose candidates the frontend may add (the
        application that prepared one removes it before initiating or ending it)."""
        prepared: dict[str, Session] = client.extra.setdefault(PREPARED_KEY, {})
        return prepared

    @staticmethod
    def ice_contents(session: Session) -> list[Content]:
        return [c for c in session.contents.values() if isinstance(c.transport_data, IceData)]

    def remote_description(self, session: Session, queued: bool = True) -> SessionDescription:
        """The peer's offer or answer as an SDP model (its queued candidates included when
        ``queued``: they are then delivered with it)."""
        description = SessionDescription(session_id=str(abs(hash(session.sid)) % 10**12))
        author_is_initiator = session.role is Role.RESPONDER
        for content in self.ice_contents(session):
            data: IceData = content.transport_data
            if data.remote is None:
                continue
            media = data.remote
            # an application describing the media itself (XEP-0167 RTP descriptions)
            # provides it with remote_media(content); its transport is the peer's
            describe = getattr(content.application, "remote_media", None)
            described = describe(content) if describe is not None else None
            if described is not None:
                described.name, described.transport = content.name, media.transport
                media = described
            media.direction = wj.direction_of(content.senders.value, author_is_initiator)
            if queued:
                media.transport.candidates = data.in_queue
                data.in_queue = []
            else:
                media.transport.candidates = []
            description.media.append(media)
        description.groups = wj.parse_groups(session.remote_payloads)
        if not description.groups and len(description.media) > 1:
            description.groups = [("BUNDLE", [m.name for m in description.media])]
        return description

    def remote_sdp(self, session: Session, queued: bool = True) -> str:
        return sdp.build(self.remote_description(session, queued))

    def _emitted(self, session: Session, what: str) -> bool:
        """True the first time ``what`` is asked for this session, then False."""
        done: set[str] = session.extra.setdefault(EMITTED_KEY, set())
        if what in done:
            return False
        done.add(what)
        return True

    def call_setup(self, client: Any, session: Session) -> None:
        """The peer answered our offer: give its SDP to the frontend (once)."""
        if not self._emitted(session, "setup"):
            return
        setup = {"role": "initiator", "sdp": self.remote_sdp(session)}
        for content in self.ice_contents(session):
            content.transport_data.frontend_ready = True
        self.host.bridge.emit("call_setup", session.sid, json.dumps(setup), client.profile)

    def emit_candidates(
        self,
        client: Any,
        session: Session,
        content: Content,
        candidates: list[Candidate],
        restart: bool = False,
    ) -> None:
        data: IceData = content.transport_data
        assert data.remote is not None
        remote = data.remote.transport
        media: dict[str, Any] = {
            "ufrag": remote.ufrag,
            "pwd": remote.pwd,
            "candidates": [c.to_dict() for c in candidates],
            "restart": restart,
        }
        if data.remote_selected is not None:
            component, address, port = data.remote_selected
            media["remote_candidate"] = {
                "component_id": component,
                "address": address,
                "port": port,
            }
        payload = {content.name: media}
        self.host.bridge.emit(
            "ice_candidates_new", session.sid, json.dumps(payload), client.profile
        )

    def ended(self, client: Any, session: Session, content: Content) -> None:
        """A WebRTC transport stopped: the session ended, or the transport was replaced."""
        if session.is_ended:
            if not self._emitted(session, "ended"):
                return
            reason = session.reason
            data: dict[str, Any] = {
                "reason": reason.condition.value if reason else "success",
                "fallback": False,
            }
            if reason is not None and reason.text:
                data["text"] = reason.text
        else:
            if not self._emitted(session, f"replaced {content.name}"):
                return
            data = {"reason": "transport-replaced", "fallback": True}
        self.host.bridge.emit("call_ended", session.sid, json.dumps(data), client.profile)

    async def add_candidates(self, client: Any, session_id: str, candidates: Any) -> None:
        """``ice_candidates_add``: the frontend's candidates, by content name.

        Raises:
            NotFound: unknown session or content. InvalidInput: malformed data.
        """
        try:
            session = self.find_session(client, session_id)
            started = True
        except NotFound:
            session = self.prepared(client).get(session_id)  # queued until it is initiated
            if session is None:
                raise
            started = False
        if not isinstance(candidates, dict) or not candidates:
            raise InvalidInput("candidates must be an object: content name -> candidates")
        if not started and any(
            isinstance(v, dict) and v.get("remote_candidate") is not None
            for v in candidates.values()
        ):
            raise InvalidInput(f"session {session_id} is not started: no selected pair yet")
        work = []
        for name, value in candidates.items():
            content = next((c for c in self.ice_contents(session) if c.name == name), None)
            if content is None:
                raise NotFound(f"session {session_id} has no WebRTC content {name!r}")
            if not isinstance(value, dict):
                raise InvalidInput(f"candidates of {name!r} must be an object")
            items = value.get("candidates", [])
            if not isinstance(items, list) or len(items) > MAX_CANDIDATES_ADD:
                raise InvalidInput(f"candidates of {name!r}: a list of at most 64")
            try:
                parsed = [Candidate.from_dict(item) for item in items]
            except SDPError as e:
                raise InvalidInput(str(e)) from None
            ufrag, pwd = value.get("ufrag"), value.get("pwd")
            if not all(v is None or isinstance(v, str) for v in (ufrag, pwd)):
                raise InvalidInput("ufrag and pwd must be strings")
            selected = _selected(value.get("remote_candidate"))
            work.append((content, parsed, ufrag, pwd, selected))
        for content, parsed, ufrag, pwd, selected in work:
            transport = content.transport
            assert isinstance(transport, IceUdpTransport)
            await transport.add_local_candidates(
                client, session, content, parsed, ufrag, pwd, selected
            )

    # --- bridge -----------------------------------------------------------------------------

    def _register_bridge(self, bridge: Any) -> None:
        host = self.host

        async def ice_candidates_add(session_id: str, candidates_s: str, profile_key: str) -> str:
            try:
                candidates = json.loads(candidates_s)
            except ValueError as e:
                raise InvalidInput(f"candidates is not valid JSON: {e}") from None
            client = await host.client_of(profile_key)
            await self.add_candidates(client, session_id, candidates)
            return "{}"

        bridge.add_method(
            "ice_candidates_add",
            ice_candidates_add,
            args=[
                ("session_id", "s", "the Jingle session id"),
                (
                    "candidates_s",
                    "s",
                    'serialised {content name: {"candidates": [...], "ufrag", "pwd"}} '
                    "(new ufrag/pwd: an ICE restart)",
                ),
                ("profile_key", "s"),
            ],
            returns="s",
            doc="Trickle ICE candidates gathered by the frontend to the peer (transport-info).",
        )
        bridge.add_signal(
            "ice_candidates_new",
            [
                ("session_id", "s"),
                (
                    "candidates",
                    "s",
                    'serialised {content name: {"ufrag", "pwd", "candidates": [...], '
                    '"restart": bool}}',
                ),
                ("profile", "s"),
            ],
            doc="ICE candidates from the peer, for the frontend's WebRTC stack.",
        )
        bridge.add_signal(
            "call_setup",
            [
                ("session_id", "s"),
                ("setup_data", "s", 'serialised {"role": "initiator", "sdp": peer answer}'),
                ("profile", "s"),
            ],
            doc="The peer accepted our WebRTC session (call or data channel): its answer SDP.",
        )
        bridge.add_signal(
            "call_ended",
            [
                ("session_id", "s"),
                (
                    "data",
                    "s",
                    'serialised {"reason": Jingle reason, "text"?: str, "fallback": bool} '
                    "(fallback: the WebRTC transport was replaced, the daemon moves the data)",
                ),
                ("profile", "s"),
            ],
            doc="A WebRTC session ended, or its WebRTC transport was replaced.",
        )


def _selected(value: Any) -> tuple[int, str, int] | None:
    """The ``remote_candidate`` of ``ice_candidates_add``: ``{"component_id", "address",
    "port"}`` (the peer's candidate of the selected pair).

    Raises:
        InvalidInput: malformed.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("remote_candidate must be an object")
    try:
        component = int(value.get("component_id", 1))
        address = str(value["address"])
        port = int(value["port"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("remote_candidate needs address and port") from None
    if not 0 < component < 257 or not 0 < port < 65536 or not address:
        raise InvalidInput("remote_candidate out of range")
    if any(c.isspace() for c in address):
        raise InvalidInput("remote_candidate address is malformed")
    return component, address, port
