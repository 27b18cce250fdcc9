"""Model <-> Jingle elements (libervia.backend.tools.webrtc.jingle), on real XML.

Every element built here is serialised with ``toXml()`` and parsed again with
:func:`libervia.backend.tools.xml.parse` before being read, so that namespaces are the ones
on the wire, not the ones domish remembers from building.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.words.xish import domish

from libervia.backend.tools import xml
from libervia.backend.tools.webrtc import jingle as wj
from libervia.backend.tools.webrtc import sdp
from libervia.backend.tools.webrtc.model import (
    DIRECTIONS,
    Candidate,
    Fingerprint,
    IceTransport,
    Media,
    SDPError,
    SessionDescription,
)
from tests.unit.webrtc.test_sdp import DATA, GOLDEN

GOLDEN_MEDIA = [
    (name, index)
    for name in GOLDEN
    for index in range(len(sdp.parse((DATA / name).read_text()).media))
]

NS_JINGLE = "urn:xmpp:jingle:1"


def parsed(name: str) -> SessionDescription:
    return sdp.parse((DATA / name).read_text())


def wire(element: domish.Element) -> domish.Element:
    """The element as a peer receives it: serialised, then parsed."""
    return xml.parse(element.toXml())


def expected_candidate(candidate: Candidate, jingle_id: str | None = None) -> Candidate:
    """What a candidate becomes through Jingle: generation 0 when absent, an id added."""
    expected = copy.deepcopy(candidate)
    if expected.generation is None:
        expected.generation = 0
    if jingle_id is not None:
        expected.id = jingle_id
    return expected


def expected_transport(transport: IceTransport, with_candidates: bool) -> IceTransport:
    expected = copy.deepcopy(transport)
    expected.options = [o for o in expected.options if o in wj.ICE_OPTIONS]
    if not with_candidates:
        expected.candidates = []
    return expected


def check_transport(
    parsed_transport: IceTransport, original: IceTransport, with_candidates: bool, ids: bool = True
) -> None:
    """``ids``: the candidates come from Jingle (SDP has no candidate id)."""
    expected = expected_transport(original, with_candidates)
    assert len(parsed_transport.candidates) == len(expected.candidates)
    for got, want in zip(parsed_transport.candidates, expected.candidates, strict=True):
        if ids:
            assert got.id  # always given one
        assert got == expected_candidate(want, got.id if want.id is None else None)
    expected.candidates = parsed_transport.candidates
    assert parsed_transport == expected


# --- ICE-UDP transports ----------------------------------------------------------------------


@pytest.mark.parametrize("with_candidates", [False, True])
@pytest.mark.parametrize("name, index", GOLDEN_MEDIA)
def test_transport_round_trip(name: str, index: int, with_candidates: bool) -> None:
    original = parsed(name).media[index].transport
    element = wire(wj.build_transport(original, candidates=with_candidates))
    assert (element.uri, element.name) == (wj.NS_ICE_UDP, "transport")
    candidates = list(element.elements(wj.NS_ICE_UDP, "candidate"))
    assert len(candidates) == (len(original.candidates) if with_candidates else 0)
    fingerprints = list(element.elements(wj.NS_DTLS, "fingerprint"))
    assert len(fingerprints) == 1 and fingerprints[0]["hash"] == "sha-256"
    check_transport(
        wj.parse_transport(element, require_credentials=True), original, with_candidates
    )


def test_candidate_attributes() -> None:
    srflx = parsed("browser_av_offer.sdp").media[0].transport.candidates[2]
    element = wire(wj.build_candidate(srflx))
    assert (element.uri, element.name) == (wj.NS_ICE_UDP, "candidate")
    assert {k: element[k] for k in element.attributes if k != "id"} == {
        "component": "1",
        "foundation": "1188431702",
        "generation": "0",
        "ip": "203.0.113.7",
        "network": "1",
        "port": "54400",
        "priority": "1686052607",
        "protocol": "udp",
        "type": "srflx",
        "rel-addr": "192.0.2.10",
        "rel-port": "54400",
    }
    assert element["id"]
    # aiortc candidates have no generation: 0 is written (fact sheet §7)
    aiortc = parsed("aiortc_datachannel_offer.sdp").media[0].transport.candidates[0]
    assert aiortc.generation is None and aiortc.network is None
    element = wire(wj.build_candidate(aiortc))
    assert element["generation"] == "0" and not element.hasAttribute("network")
    # a given id is kept
    aiortc.id = "ca1"
    assert wire(wj.build_candidate(aiortc))["id"] == "ca1"


# --- the webrtc-datachannel:1 wrapper (fact sheet §2.1) --------------------------------------


DATACHANNEL_MEDIA = [(n, i) for n, i in GOLDEN_MEDIA if parsed(n).media[i].is_datachannel]


@pytest.mark.parametrize("name, index", DATACHANNEL_MEDIA)
def test_datachannel_transport_structure(name: str, index: int) -> None:
    media = parsed(name).media[index]
    element = wire(wj.build_datachannel_transport(media))
    assert (element.uri, element.name) == (
        "urn:xmpp:jingle:transports:webrtc-datachannel:1",
        "transport",
    )
    assert dict(element.attributes) == {"sctp-port": "5000", "max-message-size": "262144"}
    children = list(element.elements())
    assert len(children) == 1
    (inner,) = children
    assert (inner.uri, inner.name) == ("urn:xmpp:jingle:transports:ice-udp:1", "transport")
    assert dict(inner.attributes) == {"ufrag": media.transport.ufrag, "pwd": media.transport.pwd}
    inner_children = list(inner.elements())
    fingerprints = [c for c in inner_children if c.name == "fingerprint"]
    assert len(fingerprints) == 1
    (fingerprint,) = fingerprints
    assert fingerprint.uri == "urn:xmpp:jingle:apps:dtls:0"
    assert dict(fingerprint.attributes) == {
        "hash": "sha-256",
        "setup": media.transport.fingerprint.setup,
    }
    assert str(fingerprint) == media.transport.fingerprint.value
    others = [(c.uri, c.name) for c in inner_children if c.name != "fingerprint"]
    expected_options = [o for o in media.transport.options if o in wj.ICE_OPTIONS]
    assert others == [
        ("http://gultsch.de/xmpp/drafts/jingle/transports/ice-udp/option", option)
        for option in expected_options
    ]
    # no candidates unless asked
    assert not list(inner.elements(wj.NS_ICE_UDP, "candidate"))
    # the XML itself: outer default namespace, inner ones declared on their elements
    text = element.toXml()
    assert text.startswith("<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'")


def test_conversations_transport_has_trickle() -> None:
    media = parsed("conversations_datachannel.sdp").media[0]
    inner = next(wire(wj.build_datachannel_transport(media)).elements())
    (trickle,) = inner.elements(wj.NS_ICE_OPTION, "trickle")
    assert not trickle.children and not trickle.attributes


@pytest.mark.parametrize("with_candidates", [False, True])
@pytest.mark.parametrize("name, index", DATACHANNEL_MEDIA)
def test_datachannel_round_trip(name: str, index: int, with_candidates: bool) -> None:
    media = parsed(name).media[index]
    element = wire(wj.build_datachannel_transport(media, candidates=with_candidates))
    inner = next(element.elements())
    assert len(list(inner.elements(wj.NS_ICE_UDP, "candidate"))) == (
        len(media.transport.candidates) if with_candidates else 0
    )
    transport, sctp_port, max_size = wj.parse_datachannel_transport(element)
    assert (sctp_port, max_size) == (media.sctp_port, media.max_message_size)
    check_transport(transport, media.transport, with_candidates)


def test_datachannel_defaults() -> None:
    media = Media(name="0", media="application", protocol="UDP/DTLS/SCTP")
    media.transport = IceTransport(
        "abcd", "0123456789abcdefghijkl", [], Fingerprint("sha-256", "AA:BB")
    )
    element = wire(wj.build_datachannel_transport(media))
    # always written: Conversations requires both (fact sheet §2.1)
    assert element["sctp-port"] == "5000"
    assert element["max-message-size"] == str(wj.DEFAULT_MAX_MESSAGE_SIZE)


FACT_SHEET_FP = ":".join(
    (
        "8A F2 2F CA FF 24 A2 B6 95 F0 4D 29 84 F5 CF 09"
        " 2F BF 4A A8 B9 07 C6 91 F1 E8 E0 09 95 5F 2A D7"
    ).split()
)
FACT_SHEET_INITIATE = f"""
<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'
           sctp-port='5000' max-message-size='262144'>
  <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'
             ufrag='8AmX' pwd='iPkdtiJz9rA2V1I8UMD8OGtr'>
    <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'
      >{FACT_SHEET_FP}</fingerprint>
    <trickle xmlns='http://gultsch.de/xmpp/drafts/jingle/transports/ice-udp/option'/>
  </transport>
</transport>
"""

FACT_SHEET_CANDIDATES = [
    # §6.2 host, short id
    """<candidate xmlns='urn:xmpp:jingle:transports:ice-udp:1' component='1' foundation='1'
       generation='0' id='ca1' ip='192.0.2.10' port='50312' priority='2130706431'
       protocol='udp' type='host'/>""",
    # §6.2 srflx with rel-addr
    """<candidate xmlns='urn:xmpp:jingle:transports:ice-udp:1' component='1' foundation='2'
       generation='0' id='ca2' ip='203.0.113.7' port='61234' priority='1694498815'
       protocol='udp' type='srflx' rel-addr='192.0.2.10' rel-port='50312'/>""",
    # §6.3 UUID id (not an NCName), no network
    """<candidate xmlns='urn:xmpp:jingle:transports:ice-udp:1' component='1'
       foundation='3305271849' generation='0' id='0f4b2c7e-91a3-4c55-8d3e-2b7f6a1c9e10'
       ip='198.51.100.20' port='40012' priority='2122260223' protocol='udp' type='host'/>""",
]


def test_fact_sheet_session_initiate_transport() -> None:
    transport, sctp_port, max_size = wj.parse_datachannel_transport(xml.parse(FACT_SHEET_INITIATE))
    assert (sctp_port, max_size) == (5000, 262144)
    assert (transport.ufrag, transport.pwd) == ("8AmX", "iPkdtiJz9rA2V1I8UMD8OGtr")
    assert transport.options == ["trickle"]
    assert transport.fingerprint == Fingerprint("sha-256", FACT_SHEET_FP, "actpass")
    assert transport.candidates == []
    # and SDP for aiortc from it has a=mid and what Conversations sends
    media = Media(
        name="0",
        media="application",
        protocol="UDP/DTLS/SCTP",
        transport=transport,
        sctp_port=sctp_port,
        max_message_size=max_size,
    )
    text = sdp.build(SessionDescription(media=[media], groups=[("BUNDLE", ["0"])]))
    for line in ("a=mid:0", "a=ice-ufrag:8AmX", "a=setup:actpass", "a=sctp-port:5000"):
        assert line in text.split("\r\n")


def test_fact_sheet_candidates() -> None:
    host, srflx, uuid_host = (wj.parse_candidate(xml.parse(c)) for c in FACT_SHEET_CANDIDATES)
    assert host == Candidate(
        "1", 1, "udp", 2130706431, "192.0.2.10", 50312, "host", generation=0, id="ca1"
    )
    assert (srflx.type, srflx.rel_addr, srflx.rel_port) == ("srflx", "192.0.2.10", 50312)
    assert uuid_host.id == "0f4b2c7e-91a3-4c55-8d3e-2b7f6a1c9e10" and uuid_host.network is None
    # in SDP for libwebrtc / aiortc
    assert sdp.build_candidate(srflx) == (
        "candidate:2 1 udp 1694498815 203.0.113.7 61234 typ srflx"
        " raddr 192.0.2.10 rport 50312 generation 0"
    )
    # a transport-info: candidates inside the wrapped transport
    info = xml.parse(
        FACT_SHEET_INITIATE.replace("<fingerprint", "".join(FACT_SHEET_CANDIDATES) + "<fingerprint")
    )
    transport, _, _ = wj.parse_datachannel_transport(info)
    assert transport.candidates == [host, srflx, uuid_host]


CANDIDATE = {
    "component": "1",
    "foundation": "1",
    "ip": "192.0.2.10",
    "port": "50312",
    "priority": "2130706431",
    "protocol": "udp",
    "type": "host",
}


def candidate_element(**changes: str | None) -> domish.Element:
    attributes = {**CANDIDATE, **changes}
    element = domish.Element((wj.NS_ICE_UDP, "candidate"))
    for key, value in attributes.items():
        if value is not None:
            element[key] = value
    return wire(element)


def test_candidate_tolerant() -> None:
    candidate = wj.parse_candidate(candidate_element(generation=None, network=None, id=None))
    assert candidate.generation is None and candidate.network is None and candidate.id is None
    candidate = wj.parse_candidate(candidate_element(protocol="UDP"))
    assert candidate.transport == "udp"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"ip": None}, "ip"),
        ({"ip": ""}, "ip"),
        ({"foundation": None}, "foundation"),
        ({"port": "fifty"}, "port"),
        ({"port": None}, "port"),
        ({"port": "70000"}, "range"),
        ({"component": "x"}, "component"),
        ({"component": None}, "range"),
        ({"priority": "high"}, "priority"),
        ({"type": "magic"}, "magic"),
        ({"rel-port": "p"}, "rel-port"),
        ({"generation": "g"}, "generation"),
        ({"network": "n"}, "network"),
        ({"ip": "192.0.2.10\na=setup:passive"}, "candidate"),
        ({"foundation": "1 1 udp"}, "candidate"),
    ],
)
def test_candidate_strict(changes: dict[str, str | None], message: str) -> None:
    with pytest.raises(SDPError) as exc_info:
        wj.parse_candidate(candidate_element(**changes))
    assert message in str(exc_info.value)


def test_transport_credentials() -> None:
    element = wire(domish.Element((wj.NS_ICE_UDP, "transport")))
    assert wj.parse_transport(element).ufrag == ""
    with pytest.raises(SDPError, match="ufrag"):
        wj.parse_transport(element, require_credentials=True)
    element = xml.parse(FACT_SHEET_INITIATE.replace("ufrag='8AmX'", ""))
    with pytest.raises(SDPError, match="ufrag"):
        wj.parse_datachannel_transport(element)
    # a data channel transport needs the inner ICE-UDP one
    with pytest.raises(SDPError, match="ICE-UDP"):
        wj.parse_datachannel_transport(
            xml.parse("<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'/>")
        )
    outer = "<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'"
    for bad in ("sctp-port='x'", "sctp-port='0'", "sctp-port='70000'", "max-message-size='big'"):
        text = FACT_SHEET_INITIATE.replace(" sctp-port='5000' max-message-size='262144'", "")
        element = xml.parse(text.replace(outer, f"{outer} {bad}", 1))
        with pytest.raises(SDPError):
            wj.parse_datachannel_transport(element)
    # an empty fingerprint is refused
    text = FACT_SHEET_INITIATE.replace(FACT_SHEET_FP, " ")
    with pytest.raises(SDPError, match="fingerprint"):
        wj.parse_datachannel_transport(xml.parse(text))
    # wrong elements
    with pytest.raises(SDPError):
        wj.parse_transport(xml.parse(FACT_SHEET_INITIATE))
    with pytest.raises(SDPError):
        wj.parse_datachannel_transport(next(xml.parse(FACT_SHEET_INITIATE).elements()))


# --- RTP descriptions ------------------------------------------------------------------------

RTP_MEDIA = [(n, i) for n, i in GOLDEN_MEDIA if not parsed(n).media[i].is_datachannel]


def jingle_view(media: Media) -> Media:
    """What of an RTP media a <description/> carries (content name, senders and transport
    are the content's)."""
    view = copy.deepcopy(media)
    view.port, view.protocol, view.msid = 9, Media.__dataclass_fields__["protocol"].default, None
    view.direction = "sendrecv"
    view.transport = IceTransport()
    return view


@pytest.mark.parametrize("author_is_initiator", [True, False])
@pytest.mark.parametrize("name, index", RTP_MEDIA)
def test_description_round_trip(name: str, index: int, author_is_initiator: bool) -> None:
    media = parsed(name).media[index]
    element = wire(wj.build_description(media, author_is_initiator))
    assert (element.uri, element.name) == (wj.NS_RTP, "description")
    assert element["media"] == media.media
    back = wj.parse_description(element, media.name, author_is_initiator)
    assert back == jingle_view(media)


def test_description_elements() -> None:
    audio, video = parsed("browser_av_offer.sdp").media
    element = wire(wj.build_description(audio))
    opus = next(element.elements(wj.NS_RTP, "payload-type"))
    assert dict(opus.attributes) == {
        "id": "111",
        "name": "opus",
        "clockrate": "48000",
        "channels": "2",
    }
    params = {p["name"]: p["value"] for p in opus.elements(wj.NS_RTP, "parameter")}
    assert params == {"minptime": "10", "useinbandfec": "1"}
    (fb,) = opus.elements(wj.NS_RTCP_FB, "rtcp-fb")
    assert dict(fb.attributes) == {"type": "transport-cc"}
    assert len(list(element.elements(wj.NS_RTP, "rtcp-mux"))) == 1
    element = wire(wj.build_description(video, author_is_initiator=True))
    hdrexts = {e["id"]: e for e in element.elements(wj.NS_RTP_HDREXT, "rtp-hdrext")}
    assert hdrexts["5"]["senders"] == "initiator"  # sendonly in the initiator's offer
    assert hdrexts["6"]["senders"] == "responder"
    assert not hdrexts["4"].hasAttribute("senders")
    assert len(list(element.elements(wj.NS_RTP_HDREXT, "extmap-allow-mixed"))) == 1
    (group,) = element.elements(wj.NS_SSMA, "ssrc-group")
    assert group["semantics"] == "FID"
    assert [s["ssrc"] for s in group.elements(wj.NS_SSMA, "source")] == ["2741372389", "3904525815"]
    sources = list(element.elements(wj.NS_SSMA, "source"))
    assert [s["ssrc"] for s in sources] == ["2741372389", "3904525815"]
    params = {
        p["name"]: p.getAttribute("value") for p in sources[0].elements(wj.NS_SSMA, "parameter")
    }
    assert params["cname"] == "fM3pW8kQ2xZr7tYb"
    # written by the responder, the senders are swapped
    element = wire(wj.build_description(video, author_is_initiator=False))
    hdrexts = {e["id"]: e for e in element.elements(wj.NS_RTP_HDREXT, "rtp-hdrext")}
    assert hdrexts["5"]["senders"] == "responder"


def test_description_level_rtcp_fb() -> None:
    """XEP-0293: <rtcp-fb/> directly in <description/> applies to all payload types (what
    Conversations writes for ``a=rtcp-fb:*``)."""
    element = xml.parse(
        "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>"
        "<payload-type id='96' name='VP8' clockrate='90000'>"
        "<rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>"
        "</payload-type>"
        "<payload-type id='97' name='VP9' clockrate='90000'/>"
        "<rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack'/>"
        "<rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>"
        "</description>"
    )
    vp8, vp9 = wj.parse_description(element, "1").payload_types
    assert vp8.feedback == [("nack", "pli"), ("nack", "")]
    assert vp9.feedback == [("nack", ""), ("nack", "pli")]


def test_ssrc_zero_kept_in_group() -> None:
    element = xml.parse(
        RTP_DESC + ""
        "<payload-type id='0' name='PCMU' clockrate='8000'/>"
        "<ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>"
        "<source ssrc='0'/><source ssrc='12'/></ssrc-group>"
        "</description>"
    )
    (group,) = wj.parse_description(element, "0").source_groups
    assert group.ssrcs == [0, 12]


RTP_DESC = "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>"
RTP_DESC_TEXT = "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='text'>"
PCMU = RTP_DESC + "<payload-type id='0'/>"


@pytest.mark.parametrize(
    "xml_text, message",
    [
        (
            RTP_DESC_TEXT + "<payload-type id='0'/></description>",
            "text",
        ),
        ("<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>", "payload"),
        (
            RTP_DESC + "<payload-type id='x'/></description>",
            "id",
        ),
        (
            RTP_DESC + "<payload-type id='200'/></description>",
            "id",
        ),
        (
            RTP_DESC + "<payload-type id='0' clockrate='fast'/></description>",
            "clockrate",
        ),
        (
            PCMU + "<bandwidth type='AS'>lots</bandwidth></description>",
            "bandwidth",
        ),
        (
            PCMU + "<rtp-hdrext xmlns='" + wj.NS_RTP_HDREXT + "' uri='urn:x'/></description>",
            "rtp-hdrext",
        ),
        (
            PCMU
            + "<rtp-hdrext xmlns='"
            + wj.NS_RTP_HDREXT
            + "' id='1' uri='urn:x' senders='everybody'/></description>",
            "everybody",
        ),
        (
            PCMU + "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0'/></description>",
            "ssrc",
        ),
        ("<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/>", "RTP"),
    ],
)
def test_description_strict(xml_text: str, message: str) -> None:
    with pytest.raises(SDPError) as exc_info:
        wj.parse_description(xml.parse(xml_text), "0")
    assert message in str(exc_info.value)


# --- groups ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN)
def test_groups_round_trip(name: str) -> None:
    groups = parsed(name).groups
    jingle = domish.Element((NS_JINGLE, "jingle"))
    for element in wj.build_groups(groups):
        jingle.addChild(element)
    jingle = wire(jingle)
    elements = list(jingle.elements(wj.NS_GROUP, "group"))
    assert len(elements) == len(groups) == 1
    assert [c["name"] for c in elements[0].elements(wj.NS_GROUP, "content")] == groups[0][1]
    assert wj.parse_groups(jingle.elements()) == groups


def test_groups_ignore_other_payloads() -> None:
    payloads = [
        xml.parse("<foo xmlns='urn:example'/>"),
        xml.parse(
            "<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='LS'>"
            "<content name='a'/><content/></group>"
        ),
    ]
    assert wj.parse_groups(payloads) == [("LS", ["a"])]


# --- a whole session: SDP -> Jingle -> SDP ---------------------------------------------------


def to_jingle(description: SessionDescription, author_is_initiator: bool) -> domish.Element:
    jingle = domish.Element((NS_JINGLE, "jingle"))
    jingle["action"] = "session-initiate" if author_is_initiator else "session-accept"
    for media in description.media:
        content = jingle.addElement("content")
        content["creator"] = "initiator"
        content["name"] = media.name
        if media.is_datachannel:
            content["senders"] = "initiator"
            content.addChild(wj.build_datachannel_transport(media, candidates=True))
        else:
            content["senders"] = wj.senders_of(media.direction, author_is_initiator)
            content.addChild(wj.build_description(media, author_is_initiator))
            content.addChild(wj.build_transport(media.transport, candidates=True))
    for group in wj.build_groups(description.groups):
        jingle.addChild(group)
    return jingle


def from_jingle(jingle: domish.Element, author_is_initiator: bool) -> SessionDescription:
    description = SessionDescription()
    for content in jingle.elements(NS_JINGLE, "content"):
        name = content["name"]
        wrapper = next(content.elements(wj.NS_DATACHANNEL, "transport"), None)
        if wrapper is not None:
            transport, sctp_port, max_size = wj.parse_datachannel_transport(wrapper)
            media = Media(name, "application", protocol="UDP/DTLS/SCTP", transport=transport)
            media.sctp_port, media.max_message_size = sctp_port, max_size
        else:
            media = wj.parse_description(
                next(content.elements(wj.NS_RTP, "description")), name, author_is_initiator
            )
            media.transport = wj.parse_transport(next(content.elements(wj.NS_ICE_UDP, "transport")))
            media.direction = wj.direction_of(content["senders"], author_is_initiator)
        description.media.append(media)
    description.groups = wj.parse_groups(jingle.elements())
    return description


@pytest.mark.parametrize("author_is_initiator", [True, False])
@pytest.mark.parametrize("name", GOLDEN)
def test_session_through_jingle(name: str, author_is_initiator: bool) -> None:
    original = parsed(name)
    received = from_jingle(wire(to_jingle(original, author_is_initiator)), author_is_initiator)
    again = sdp.parse(sdp.build(received))
    assert again.groups == original.groups
    assert [m.name for m in again.media] == [m.name for m in original.media]
    for got, media in zip(again.media, original.media, strict=True):
        check_transport(got.transport, media.transport, with_candidates=True, ids=False)
        if media.is_datachannel:
            assert (got.sctp_port, got.max_message_size) == (
                media.sctp_port,
                media.max_message_size,
            )
        else:
            assert got.direction == media.direction
            got.transport = media.transport = IceTransport()
            got.direction = "sendrecv"
            assert got == jingle_view(media)


# --- senders <-> direction -------------------------------------------------------------------


@pytest.mark.parametrize("author_is_initiator", [True, False])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_direction_senders_inverse(direction: str, author_is_initiator: bool) -> None:
    senders = wj.senders_of(direction, author_is_initiator)
    assert senders in ("both", "none", "initiator", "responder")
    assert wj.direction_of(senders, author_is_initiator) == direction


@pytest.mark.parametrize("author_is_initiator", [True, False])
@pytest.mark.parametrize("senders", ["both", "none", "initiator", "responder"])
def test_senders_direction_inverse(senders: str, author_is_initiator: bool) -> None:
    assert (
        wj.senders_of(wj.direction_of(senders, author_is_initiator), author_is_initiator) == senders
    )


def test_direction_examples() -> None:
    # the initiator offers to send only: senders is the initiator, the responder receives
    assert wj.senders_of("sendonly", True) == "initiator"
    assert wj.direction_of("initiator", False) == "recvonly"
    assert wj.senders_of("sendonly", False) == "responder"
    assert wj.direction_of("responder", True) == "recvonly"


def test_direction_unknown() -> None:
    with pytest.raises(SDPError):
        wj.direction_of("everybody", True)
    with pytest.raises(SDPError):
        wj.senders_of("sendsome", True)


# --- property tests --------------------------------------------------------------------------

ATTRIBUTE_VALUES = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.sampled_from(
        [
            "host",
            "srflx",
            "prflx",
            "relay",
            "udp",
            "tcp",
            "0",
            "1",
            "65535",
            "65536",
            "1e3",
            " 1",
            "１",
        ]
    ),
)
CANDIDATE_KEYS = (
    "component",
    "foundation",
    "generation",
    "id",
    "ip",
    "network",
    "port",
    "priority",
    "protocol",
    "type",
    "rel-addr",
    "rel-port",
)


def xml_safe(value: str | None) -> str | None:
    """domish refuses to serialise characters XML 1.0 cannot carry."""
    if value is None:
        return None
    return "".join(
        c for c in value if c in "\t\n\r" or " " <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd"
    )


@settings(
    derandomize=True, max_examples=300, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(st.fixed_dictionaries(dict.fromkeys(CANDIDATE_KEYS, ATTRIBUTE_VALUES)))
def test_parse_candidate_random(attributes: dict[str, str | None]) -> None:
    element = candidate_element(**{k: xml_safe(v) for k, v in attributes.items()})
    try:
        candidate = wj.parse_candidate(element)
    except SDPError:
        return
    # what is accepted can be written to SDP and read back
    assert sdp.parse_candidate(sdp.build_candidate(candidate)).address == candidate.address
    assert wj.parse_candidate(wire(wj.build_candidate(candidate))) == expected_candidate(
        candidate, candidate.id or None
    )


@settings(
    derandomize=True, max_examples=200, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(
    st.fixed_dictionaries({"ufrag": ATTRIBUTE_VALUES, "pwd": ATTRIBUTE_VALUES}),
    st.fixed_dictionaries(
        {"hash": ATTRIBUTE_VALUES, "setup": ATTRIBUTE_VALUES, "text": ATTRIBUTE_VALUES}
    ),
    st.lists(st.fixed_dictionaries(dict.fromkeys(CANDIDATE_KEYS, ATTRIBUTE_VALUES)), max_size=3),
    st.fixed_dictionaries({"sctp-port": ATTRIBUTE_VALUES, "max-message-size": ATTRIBUTE_VALUES}),
    st.booleans(),
)
def test_parse_transport_random(
    credentials: dict[str, str | None],
    fingerprint: dict[str, str | None],
    candidates: list[dict[str, str | None]],
    wrapper_attributes: dict[str, str | None],
    require_credentials: bool,
) -> None:
    transport = domish.Element((wj.NS_ICE_UDP, "transport"))
    for key, value in credentials.items():
        if value is not None:
            transport[key] = xml_safe(value)
    fp = transport.addElement(
        (wj.NS_DTLS, "fingerprint"), content=xml_safe(fingerprint["text"] or "")
    )
    for key in ("hash", "setup"):
        if fingerprint[key] is not None:
            fp[key] = xml_safe(fingerprint[key])
    for attributes in candidates:
        element = transport.addElement((wj.NS_ICE_UDP, "candidate"))
        for key, value in attributes.items():
            if value is not None:
                element[key] = xml_safe(value)
    wrapper = domish.Element((wj.NS_DATACHANNEL, "transport"))
    for key, value in wrapper_attributes.items():
        if value is not None:
            wrapper[key] = xml_safe(value)
    wrapper.addChild(transport)
    wrapper = wire(wrapper)
    try:
        wj.parse_transport(next(wrapper.elements()), require_credentials)
    except SDPError:
        pass
    try:
        parsed_transport, sctp_port, max_size = wj.parse_datachannel_transport(
            wrapper, require_credentials
        )
    except SDPError:
        return
    # what is accepted never breaks the SDP given to the WebRTC stack
    media = Media("0", "application", protocol="UDP/DTLS/SCTP", transport=parsed_transport)
    media.sctp_port, media.max_message_size = sctp_port, max_size
    try:
        text = sdp.build(SessionDescription(media=[media]))
    except SDPError:
        return
    sdp.parse(text)
