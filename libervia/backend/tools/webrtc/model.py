"""What an SDP offer/answer and its Jingle form share: a neutral, typed model.

:mod:`.sdp` parses and builds SDP text, :mod:`.jingle` builds and parses the Jingle
elements (XEP-0167 RTP descriptions, XEP-0176 ICE-UDP transports, XEP-0320 fingerprints,
XEP-0338 groups, XEP-0339 sources, the ``webrtc-datachannel:1`` wrapper); both go through
these classes, so that a conversion SDP -> Jingle -> SDP keeps what both formats can say.

Candidates also travel over the bridge (``ice_candidates_new`` / ``ice_candidates_add``) as
the dicts of :meth:`Candidate.to_dict` / :meth:`Candidate.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SDPError(ValueError):
    """Malformed or unsupported SDP, Jingle WebRTC element or candidate."""


CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
#: media types of m= lines we convert (others are refused)
MEDIA_TYPES = ("audio", "video", "application")
DATACHANNEL_PROTOCOLS = ("UDP/DTLS/SCTP", "DTLS/SCTP", "TCP/DTLS/SCTP")


@dataclass
class Candidate:
    """One ICE candidate (RFC 8839 ``a=candidate`` / XEP-0176 ``<candidate/>``)."""

    foundation: str
    component_id: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    rel_addr: str | None = None
    rel_port: int | None = None
    generation: int | None = None
    #: XEP-0176 id (not in SDP; made when missing)
    id: str | None = None
    network: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The bridge form (keys of optional values absent when unset)."""
        return {key: value for key, value in self.__dict__.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Any) -> Candidate:
        """A candidate from its bridge form.

        Raises:
            SDPError: not a dict, missing or badly typed fields.
        """
        if not isinstance(data, dict):
            raise SDPError("a candidate must be a JSON object")
        try:
            candidate = cls(
                foundation=str(data["foundation"]),
                component_id=int(data["component_id"]),
                transport=str(data.get("transport", "udp")).lower(),
                priority=int(data["priority"]),
                address=str(data["address"]),
                port=int(data["port"]),
                type=str(data.get("type", "host")),
                rel_addr=str(data["rel_addr"]) if data.get("rel_addr") is not None else None,
                rel_port=int(data["rel_port"]) if data.get("rel_port") is not None else None,
                generation=int(data["generation"]) if data.get("generation") is not None else None,
                id=str(data["id"]) if data.get("id") is not None else None,
                network=int(data["network"]) if data.get("network") is not None else None,
            )
        except KeyError as e:
            raise SDPError(f"candidate without {e.args[0]}") from None
        except (TypeError, ValueError) as e:
            raise SDPError(f"invalid candidate: {e}") from None
        candidate.check()
        return candidate

    def check(self) -> None:
        """Raises SDPError when a value is out of range."""
        if self.type not in CANDIDATE_TYPES:
            raise SDPError(f"unknown candidate type {self.type!r}")
        if not 0 < self.port < 65536 or not 0 < self.component_id < 257:
            raise SDPError("candidate port or component out of range")
        if not self.address or not self.foundation:
            raise SDPError("candidate without address or foundation")
        # these values are written as SDP tokens: no space or line break may hide in them
        tokens = (self.address, self.foundation, self.transport, self.rel_addr or "")
        if any(c.isspace() or c == "\x00" for token in tokens for c in token):
            raise SDPError("space in a candidate address, foundation or protocol")
        if self.rel_port is not None and not 0 <= self.rel_port < 65536:
            raise SDPError("candidate rel-port out of range")
        if not 0 <= self.priority < 2**32:
            raise SDPError("candidate priority out of range")


@dataclass
class Fingerprint:
    """A DTLS certificate fingerprint (XEP-0320) and the DTLS role (``setup``)."""

    hash: str
    value: str
    setup: str = "actpass"


@dataclass
class IceTransport:
    """The ICE (and DTLS) parameters of one media (XEP-0176 ``<transport/>``)."""

    ufrag: str = ""
    pwd: str = ""
    options: list[str] = field(default_factory=list)
    fingerprint: Fingerprint | None = None
    candidates: list[Candidate] = field(default_factory=list)
    #: XEP-0176 ``<remote-candidate/>``: the peer's candidate of the pair the initiator
    #: selected once ICE completed, as (component, address, port)
    remote_candidate: tuple[int, str, int] | None = None


@dataclass
class PayloadType:
    """An RTP payload type (``a=rtpmap``, ``a=fmtp``, ``a=rtcp-fb``)."""

    id: int
    name: str = ""
    clockrate: int | None = None
    channels: int | None = None
    ptime: int | None = None
    maxptime: int | None = None
    #: fmtp parameters, in order (a parameter without ``=`` has an empty value)
    parameters: dict[str, str] = field(default_factory=dict)
    #: (type, subtype or "") pairs of ``a=rtcp-fb``
    feedback: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class HeaderExtension:
    """An RTP header extension (``a=extmap`` / XEP-0294)."""

    id: int
    uri: str
    #: "sendrecv" (default), "sendonly", "recvonly" or "inactive"
    direction: str = "sendrecv"


@dataclass
class Source:
    """An RTP source (``a=ssrc`` / XEP-0339): its ssrc and attributes (cname, msid...)."""

    ssrc: int
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceGroup:
    """``a=ssrc-group`` / XEP-0339 ``<ssrc-group/>``."""

    semantics: str
    ssrcs: list[int] = field(default_factory=list)


@dataclass
class Media:
    """One m= section / one Jingle content."""

    #: the mid, i.e. the Jingle content name
    name: str
    #: "audio", "video" or "application"
    media: str
    protocol: str = "UDP/TLS/RTP/SAVPF"
    port: int = 9
    direction: str = "sendrecv"
    transport: IceTransport = field(default_factory=IceTransport)
    payload_types: list[PayloadType] = field(default_factory=list)
    rtcp_mux: bool = False
    extensions: list[HeaderExtension] = field(default_factory=list)
    extmap_allow_mixed: bool = False
    sources: list[Source] = field(default_factory=list)
    source_groups: list[SourceGroup] = field(default_factory=list)
    #: ``a=msid`` (stream and track ids, WebRTC unified plan)
    msid: str | None = None
    #: b=AS (kbit/s)
    bandwidth: int | None = None
    #: data channels: ``a=sctp-port`` / ``a=max-message-size``
    sctp_port: int | None = None
    max_message_size: int | None = None

    @property
    def is_datachannel(self) -> bool:
        return self.media == "application"


@dataclass
class SessionDescription:
    """A whole offer or answer."""

    media: list[Media] = field(default_factory=list)
    #: (semantics, mids) of ``a=group`` lines (XEP-0338), e.g. ("BUNDLE", ["0", "1"])
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    session_id: str = "0"
    session_version: str = "0"
    msid_semantic: str | None = None

    def find(self, name: str) -> Media | None:
        return next((m for m in self.media if m.name == name), None)
