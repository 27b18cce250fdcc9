"""Jingle elements <-> :mod:`.model`: the Jingle half of the SDP <-> Jingle conversion.

* XEP-0176 ICE-UDP ``<transport/>`` (ufrag, pwd, candidates) with the XEP-0320
  ``<fingerprint/>`` and the ICE options of Conversations (``trickle``, ``renomination``);
* XEP-0167 RTP ``<description/>``: payload types and parameters, XEP-0293 ``rtcp-fb``,
  XEP-0294 header extensions, ``rtcp-mux``, bandwidth, XEP-0339 sources and groups;
* XEP-0338 ``<group/>`` (children of ``<jingle/>``);
* the ``urn:xmpp:jingle:transports:webrtc-datachannel:1`` wrapper (the format Conversations
  speaks, fact sheet §2): ``sctp-port`` and ``max-message-size`` on the outer element, the
  ICE-UDP transport inside.

Parsing is tolerant of what real clients omit (fact sheet §8.5: no ``generation`` or
``network``, UUID candidate ids) and strict about what would break a session (missing
ufrag/pwd when required, bad numbers): :class:`~.model.SDPError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from twisted.words.xish import domish

from libervia.backend.tools.webrtc.model import (
    Candidate,
    Fingerprint,
    HeaderExtension,
    IceTransport,
    Media,
    PayloadType,
    SDPError,
    Source,
    SourceGroup,
)

NS_ICE_UDP = "urn:xmpp:jingle:transports:ice-udp:1"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_ICE_OPTION = "http://gultsch.de/xmpp/drafts/jingle/transports/ice-udp/option"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_RTP_AUDIO = "urn:xmpp:jingle:apps:rtp:audio"
NS_RTP_VIDEO = "urn:xmpp:jingle:apps:rtp:video"
NS_RTP_INFO = "urn:xmpp:jingle:apps:rtp:info:1"
NS_RTCP_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
NS_RTP_HDREXT = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
NS_SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
NS_GROUP = "urn:xmpp:jingle:apps:grouping:0"
NS_DATACHANNEL = "urn:xmpp:jingle:transports:webrtc-datachannel:1"

ICE_OPTIONS = ("trickle", "renomination")
#: defaults for a data-channel transport without the attributes (RFC 8841)
DEFAULT_SCTP_PORT = 5000
DEFAULT_MAX_MESSAGE_SIZE = 65536

# XEP-0294 senders <-> SDP extmap direction (seen from the element's author)
_EXT_SENDERS = {"sendrecv": "both", "sendonly": "initiator", "recvonly": "responder"}


def _int(element: domish.Element, name: str, default: int | None = None) -> int | None:
    value = element.getAttribute(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SDPError(f"{element.name}/@{name} is not a number: {value!r}") from None


def _required(element: domish.Element, name: str) -> str:
    value = element.getAttribute(name)
    if not value:
        raise SDPError(f"{element.name} without {name}")
    return value


# --- senders <-> direction -------------------------------------------------------------------


def direction_of(senders: str, author_is_initiator: bool) -> str:
    """The SDP direction of a content with these Jingle ``senders``, in an SDP written by
    the initiator (``author_is_initiator``) or the responder."""
    if senders == "both":
        return "sendrecv"
    if senders == "none":
        return "inactive"
    if senders not in ("initiator", "responder"):
        raise SDPError(f"unknown senders {senders!r}")
    author = "initiator" if author_is_initiator else "responder"
    return "sendonly" if senders == author else "recvonly"


def senders_of(direction: str, author_is_initiator: bool) -> str:
    """The Jingle ``senders`` of an SDP direction (the inverse of :func:`direction_of`)."""
    if direction == "sendrecv":
        return "both"
    if direction == "inactive":
        return "none"
    if direction not in ("sendonly", "recvonly"):
        raise SDPError(f"unknown direction {direction!r}")
    author, other = (
        ("initiator", "responder") if author_is_initiator else ("responder", "initiator")
    )
    return author if direction == "sendonly" else other


# --- ICE-UDP transport -----------------------------------------------------------------------


def build_candidate(candidate: Candidate) -> domish.Element:
    element = domish.Element((NS_ICE_UDP, "candidate"))
    element["component"] = str(candidate.component_id)
    element["foundation"] = candidate.foundation
    element["generation"] = str(candidate.generation or 0)
    element["id"] = candidate.id or f"c{uuid.uuid4().hex}"  # an NCName
    element["ip"] = candidate.address
    if candidate.network is not None:
        element["network"] = str(candidate.network)
    element["port"] = str(candidate.port)
    element["priority"] = str(candidate.priority)
    element["protocol"] = candidate.transport.lower()
    element["type"] = candidate.type
    if candidate.rel_addr is not None and candidate.rel_port is not None:
        element["rel-addr"] = candidate.rel_addr
        element["rel-port"] = str(candidate.rel_port)
    return element


def parse_candidate(element: domish.Element) -> Candidate:
    candidate = Candidate(
        foundation=_required(element, "foundation"),
        component_id=_int(element, "component") or 0,
        transport=(element.getAttribute("protocol") or "udp").lower(),
        priority=_int(element, "priority") or 0,
        address=_required(element, "ip"),
        port=_int(element, "port") or 0,
        type=element.getAttribute("type") or "host",
        rel_addr=element.getAttribute("rel-addr"),
        rel_port=_int(element, "rel-port"),
        generation=_int(element, "generation"),
        id=element.getAttribute("id"),
        network=_int(element, "network"),
    )
    candidate.check()
    return candidate


def build_transport(transport: IceTransport, candidates: bool = False) -> domish.Element:
    """An ICE-UDP ``<transport/>``; ``candidates``: include them (we trickle them in
    transport-info instead, as Conversations expects)."""
    element = domish.Element((NS_ICE_UDP, "transport"))
    if transport.ufrag:
        element["ufrag"] = transport.ufrag
    if transport.pwd:
        element["pwd"] = transport.pwd
    if transport.fingerprint is not None:
        fp = element.addElement((NS_DTLS, "fingerprint"), content=transport.fingerprint.value)
        fp["hash"] = transport.fingerprint.hash
        fp["setup"] = transport.fingerprint.setup
    for option in transport.options:
        if option in ICE_OPTIONS:
            element.addElement((NS_ICE_OPTION, option))
    if candidates:
        for candidate in transport.candidates:
            element.addChild(build_candidate(candidate))
    if transport.remote_candidate is not None:
        component, address, port = transport.remote_candidate
        remote = element.addElement("remote-candidate")
        remote["component"] = str(component)
        remote["ip"] = address
        remote["port"] = str(port)
    return element


def parse_transport(element: domish.Element, require_credentials: bool = False) -> IceTransport:
    """An ICE-UDP ``<transport/>`` (candidates and ``remote-candidate`` included)."""
    if element.uri != NS_ICE_UDP or element.name != "transport":
        raise SDPError("not an ICE-UDP transport")
    transport = IceTransport(
        ufrag=element.getAttribute("ufrag") or "", pwd=element.getAttribute("pwd") or ""
    )
    if require_credentials and not (transport.ufrag and transport.pwd):
        raise SDPError("ICE-UDP transport without ufrag and pwd")
    for child in element.elements():
        if child.uri == NS_DTLS and child.name == "fingerprint":
            value = str(child).strip()
            if not value:
                raise SDPError("empty fingerprint")
            transport.fingerprint = Fingerprint(
                (child.getAttribute("hash") or "sha-256").lower(),
                value,
                child.getAttribute("setup") or "actpass",
            )
        elif child.uri == NS_ICE_OPTION and child.name in ICE_OPTIONS:
            transport.options.append(child.name)
        elif child.uri == NS_ICE_UDP and child.name == "candidate":
            transport.candidates.append(parse_candidate(child))
        elif child.uri == NS_ICE_UDP and child.name == "remote-candidate":
            transport.remote_candidate = parse_remote_candidate(child)
    return transport


def parse_remote_candidate(element: domish.Element) -> tuple[int, str, int]:
    """(component, address, port) of a ``<remote-candidate/>``."""
    component = _int(element, "component")
    port = _int(element, "port")
    address = _required(element, "ip")
    if component is None or not 0 < component < 257 or port is None or not 0 < port < 65536:
        raise SDPError("remote-candidate without a valid component and port")
    if any(c.isspace() for c in address):
        raise SDPError("remote-candidate with a malformed ip")
    return component, address, port


# --- webrtc-datachannel:1 wrapper ------------------------------------------------------------


def build_datachannel_transport(media: Media, candidates: bool = False) -> domish.Element:
    """The ``webrtc-datachannel:1`` transport of an ``application`` media."""
    element = domish.Element((NS_DATACHANNEL, "transport"))
    element["sctp-port"] = str(media.sctp_port or DEFAULT_SCTP_PORT)
    element["max-message-size"] = str(media.max_message_size or DEFAULT_MAX_MESSAGE_SIZE)
    element.addChild(build_transport(media.transport, candidates))
    return element


def parse_datachannel_transport(
    element: domish.Element, require_credentials: bool = True
) -> tuple[IceTransport, int, int]:
    """(ICE transport, sctp port, max message size) of a ``webrtc-datachannel:1`` transport."""
    if element.uri != NS_DATACHANNEL or element.name != "transport":
        raise SDPError("not a webrtc-datachannel transport")
    sctp_port = _int(element, "sctp-port", DEFAULT_SCTP_PORT)
    max_size = _int(element, "max-message-size", DEFAULT_MAX_MESSAGE_SIZE)
    assert sctp_port is not None and max_size is not None
    if not 0 < sctp_port < 65536 or max_size < 0:
        raise SDPError("sctp-port or max-message-size out of range")
    inner = next(element.elements(NS_ICE_UDP, "transport"), None)
    if inner is None:
        raise SDPError("webrtc-datachannel transport without an ICE-UDP transport")
    return parse_transport(inner, require_credentials), sctp_port, max_size


# --- RTP description (XEP-0167 and friends) --------------------------------------------------


def build_payload_type(payload: PayloadType) -> domish.Element:
    element = domish.Element((NS_RTP, "payload-type"))
    element["id"] = str(payload.id)
    if payload.name:
        element["name"] = payload.name
    for attr in ("clockrate", "channels", "ptime", "maxptime"):
        value = getattr(payload, attr)
        if value is not None:
            element[attr] = str(value)
    for key, value in payload.parameters.items():
        param = element.addElement("parameter")
        param["name"] = key
        param["value"] = value
    for fb_type, subtype in payload.feedback:
        fb = element.addElement((NS_RTCP_FB, "rtcp-fb"))
        fb["type"] = fb_type
        if subtype:
            fb["subtype"] = subtype
    return element


def parse_payload_type(element: domish.Element) -> PayloadType:
    payload_id = _int(element, "id")
    if payload_id is None or not 0 <= payload_id < 128:
        raise SDPError("payload-type without a valid id")
    payload = PayloadType(
        payload_id,
        name=element.getAttribute("name") or "",
        clockrate=_int(element, "clockrate"),
        channels=_int(element, "channels"),
        ptime=_int(element, "ptime"),
        maxptime=_int(element, "maxptime"),
    )
    for child in element.elements():
        if child.name == "parameter" and child.getAttribute("name"):
            payload.parameters[child["name"]] = child.getAttribute("value") or ""
        elif child.uri == NS_RTCP_FB and child.name == "rtcp-fb" and child.getAttribute("type"):
            payload.feedback.append((child["type"], child.getAttribute("subtype") or ""))
    return payload


def build_description(media: Media, author_is_initiator: bool = True) -> domish.Element:
    """The XEP-0167 ``<description/>`` of an audio or video media."""
    element = domish.Element((NS_RTP, "description"))
    element["media"] = media.media
    if media.sources:
        element["ssrc"] = str(media.sources[0].ssrc)
    for payload in media.payload_types:
        element.addChild(build_payload_type(payload))
    if media.bandwidth is not None:
        bandwidth = element.addElement("bandwidth", content=str(media.bandwidth))
        bandwidth["type"] = "AS"
    if media.rtcp_mux:
        element.addElement("rtcp-mux")
    for ext in media.extensions:
        hdrext = element.addElement((NS_RTP_HDREXT, "rtp-hdrext"))
        hdrext["id"] = str(ext.id)
        hdrext["uri"] = ext.uri
        if ext.direction != "sendrecv" and ext.direction in _EXT_SENDERS:
            hdrext["senders"] = senders_of(ext.direction, author_is_initiator)
    if media.extmap_allow_mixed:
        element.addElement((NS_RTP_HDREXT, "extmap-allow-mixed"))
    for source in media.sources:
        source_el = element.addElement((NS_SSMA, "source"))
        source_el["ssrc"] = str(source.ssrc)
        for key, value in source.parameters.items():
            param = source_el.addElement("parameter")
            param["name"] = key
            if value:
                param["value"] = value
    for group in media.source_groups:
        group_el = element.addElement((NS_SSMA, "ssrc-group"))
        group_el["semantics"] = group.semantics
        for ssrc in group.ssrcs:
            group_el.addElement("source")["ssrc"] = str(ssrc)
    return element


def parse_description(
    element: domish.Element, name: str, author_is_initiator: bool = True
) -> Media:
    """An audio/video :class:`~.model.Media` from a XEP-0167 ``<description/>`` (the
    transport, direction and name are set by the caller's content)."""
    if element.uri != NS_RTP or element.name != "description":
        raise SDPError("not an RTP description")
    media_type = element.getAttribute("media")
    if media_type not in ("audio", "video"):
        raise SDPError(f"unsupported RTP media {media_type!r}")
    media = Media(name=name, media=media_type)
    sources: dict[int, Source] = {}
    #: XEP-0293 rtcp-fb children of <description/> apply to every payload type
    common_feedback: list[tuple[str, str]] = []
    for child in element.elements():
        if child.uri == NS_RTP and child.name == "payload-type":
            media.payload_types.append(parse_payload_type(child))
        elif child.uri == NS_RTCP_FB and child.name == "rtcp-fb" and child.getAttribute("type"):
            common_feedback.append((child["type"], child.getAttribute("subtype") or ""))
        elif child.uri == NS_RTP and child.name == "rtcp-mux":
            media.rtcp_mux = True
        elif child.uri == NS_RTP and child.name == "bandwidth":
            try:
                media.bandwidth = int(str(child).strip())
            except ValueError:
                raise SDPError("bandwidth is not a number") from None
        elif child.uri == NS_RTP_HDREXT and child.name == "rtp-hdrext":
            ext_id = _int(child, "id")
            if ext_id is None or not child.getAttribute("uri"):
                raise SDPError("rtp-hdrext without id or uri")
            senders = child.getAttribute("senders") or "both"
            media.extensions.append(
                HeaderExtension(ext_id, child["uri"], direction_of(senders, author_is_initiator))
            )
        elif child.uri == NS_RTP_HDREXT and child.name == "extmap-allow-mixed":
            media.extmap_allow_mixed = True
        elif child.uri == NS_SSMA and child.name == "source":
            ssrc = _int(child, "ssrc")
            if ssrc is None:
                raise SDPError("source without ssrc")
            source = sources.setdefault(ssrc, Source(ssrc))
            for param in child.elements():
                if param.name == "parameter" and param.getAttribute("name"):
                    source.parameters[param["name"]] = param.getAttribute("value") or ""
        elif child.uri == NS_SSMA and child.name == "ssrc-group":
            ssrcs = [_int(s, "ssrc") for s in child.elements() if s.name == "source"]
            media.source_groups.append(
                SourceGroup(
                    child.getAttribute("semantics") or "", [s for s in ssrcs if s is not None]
                )
            )
    media.sources = list(sources.values())
    for payload in media.payload_types:
        payload.feedback += [fb for fb in common_feedback if fb not in payload.feedback]
    if not media.payload_types:
        raise SDPError("RTP description without payload type")
    return media


# --- XEP-0338 groups -------------------------------------------------------------------------


def build_groups(groups: Iterable[tuple[str, list[str]]]) -> list[domish.Element]:
    elements = []
    for semantics, names in groups:
        group = domish.Element((NS_GROUP, "group"))
        group["semantics"] = semantics
        for name in names:
            group.addElement("content")["name"] = name
        elements.append(group)
    return elements


def parse_groups(payloads: Iterable[domish.Element]) -> list[tuple[str, list[str]]]:
    groups = []
    for element in payloads:
        if element.uri != NS_GROUP or element.name != "group":
            continue
        names = [
            c["name"] for c in element.elements() if c.name == "content" and c.hasAttribute("name")
        ]
        groups.append((element.getAttribute("semantics") or "BUNDLE", names))
    return groups
