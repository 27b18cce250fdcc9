"""SDP text <-> model (libervia.backend.tools.webrtc.sdp), against golden SDPs.

Golden files (tests/unit/webrtc/data/):

* ``aiortc_av_offer.sdp``: aiortc 1.16 offer, audio + video + data channel;
* ``aiortc_datachannel_offer.sdp`` / ``aiortc_datachannel_answer.sdp``: aiortc 1.16 data
  channel only (host candidate 127.0.0.1, no ICE servers);
* ``browser_av_offer.sdp``: Chrome style audio + video (trickle, extmap-allow-mixed, msid,
  transport-cc, ssrc-group FID, candidates with generation / network-id, tcp and relay);
* ``browser_av_session_fingerprint_offer.sdp``: Firefox style, session-level fingerprint and
  ice-options, extmap directions, ``/1`` channels;
* ``conversations_datachannel.sdp``: what Conversations feeds libwebrtc (fact sheet §4.1): no
  a=mid, no candidates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libervia.backend.tools.webrtc import sdp
from libervia.backend.tools.webrtc.model import (
    Candidate,
    SDPError,
    SessionDescription,
)

DATA = Path(__file__).parent / "data"
GOLDEN = [
    "aiortc_av_offer.sdp",
    "aiortc_datachannel_answer.sdp",
    "aiortc_datachannel_offer.sdp",
    "browser_av_offer.sdp",
    "browser_av_session_fingerprint_offer.sdp",
    "conversations_datachannel.sdp",
]


def load(name: str) -> str:
    return (DATA / name).read_text()


def parsed(name: str) -> SessionDescription:
    return sdp.parse(load(name))


def lines_of(text: str) -> list[str]:
    return [line for line in text.replace("\r\n", "\n").split("\n") if line]


def test_golden_files_present() -> None:
    for name in GOLDEN:
        assert (DATA / name).is_file()


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN)
def test_round_trip_equal(name: str) -> None:
    first = parsed(name)
    text = sdp.build(first)
    second = sdp.parse(text)
    assert second == first
    # and building again is stable
    assert sdp.build(second) == text


@pytest.mark.parametrize("name", GOLDEN)
def test_built_sdp_has_mid_everywhere(name: str) -> None:
    description = parsed(name)
    text = sdp.build(description)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = lines_of(text)
    assert lines[0] == "v=0"
    sections = "\n".join(lines).split("\nm=")[1:]
    assert len(sections) == len(description.media)
    for section, media in zip(sections, description.media, strict=True):
        assert f"a=mid:{media.name}" in section.split("\n")


@pytest.mark.parametrize("name", GOLDEN)
def test_build_without_candidates(name: str) -> None:
    description = parsed(name)
    text = sdp.build(description, candidates=False)
    assert "a=candidate" not in text
    again = sdp.parse(text)
    assert all(not m.transport.candidates for m in again.media)
    # everything else is kept
    for media in again.media:
        media.transport.candidates = description.find(media.name).transport.candidates
    assert again == description


@pytest.mark.parametrize("name", GOLDEN)
def test_every_media_has_credentials_and_sha256(name: str) -> None:
    for media in parsed(name).media:
        transport = media.transport
        assert transport.ufrag and transport.pwd
        assert transport.fingerprint is not None
        assert transport.fingerprint.hash == "sha-256"
        assert len(transport.fingerprint.value.split(":")) == 32


# --- what matters is kept: aiortc ------------------------------------------------------------


def test_aiortc_av_offer() -> None:
    description = parsed("aiortc_av_offer.sdp")
    assert description.groups == [("BUNDLE", ["0", "1", "2"])]
    assert description.msid_semantic == "WMS *"
    audio, video, data = description.media
    assert [m.media for m in description.media] == ["audio", "video", "application"]
    assert [m.name for m in description.media] == ["0", "1", "2"]
    assert audio.port == 52746 and audio.protocol == "UDP/TLS/RTP/SAVPF"
    assert audio.transport.ufrag == "txfY"
    assert audio.transport.pwd == "wxVmY10hh4swmhGJW03KoV"
    # sha-256 is preferred over the sha-384 / sha-512 also offered
    assert audio.transport.fingerprint.hash == "sha-256"
    assert audio.transport.fingerprint.value.startswith("5A:7C:4F:F5")
    assert audio.transport.fingerprint.setup == "actpass"
    assert audio.rtcp_mux and audio.direction == "sendrecv"
    assert [(p.id, p.name, p.clockrate, p.channels) for p in audio.payload_types] == [
        (96, "opus", 48000, 2),
        (9, "G722", 8000, None),
        (0, "PCMU", 8000, None),
        (8, "PCMA", 8000, None),
    ]
    assert [(e.id, e.uri) for e in audio.extensions] == [
        (1, "urn:ietf:params:rtp-hdrext:sdes:mid"),
        (2, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
    ]
    assert audio.sources[0].ssrc == 3171031884
    assert audio.sources[0].parameters == {"cname": "7ec4b1f9-7d7e-41c8-93a4-b8cbae1457b9"}
    (candidate,) = audio.transport.candidates
    assert candidate == Candidate(
        foundation="16572de626da4e5384a0ce2d0d93678a",
        component_id=1,
        transport="udp",
        priority=2130706431,
        address="127.0.0.1",
        port=52746,
        type="host",
    )
    assert [g.semantics for g in video.source_groups] == ["FID"]
    assert video.source_groups[0].ssrcs == [3983903366, 612486663]
    vp8 = video.payload_types[0]
    assert vp8.name == "VP8" and vp8.feedback == [("nack", ""), ("nack", "pli"), ("goog-remb", "")]
    h264 = next(p for p in video.payload_types if p.id == 99)
    assert h264.parameters == {
        "level-asymmetry-allowed": "1",
        "packetization-mode": "1",
        "profile-level-id": "42001f",
    }
    assert next(p for p in video.payload_types if p.id == 98).parameters == {"apt": "97"}
    assert data.is_datachannel and data.protocol == "UDP/DTLS/SCTP"
    assert data.sctp_port == 5000 and data.max_message_size == 262144
    assert not data.payload_types


@pytest.mark.parametrize(
    "name, setup",
    [("aiortc_datachannel_offer.sdp", "actpass"), ("aiortc_datachannel_answer.sdp", "active")],
)
def test_aiortc_datachannel(name: str, setup: str) -> None:
    description = parsed(name)
    assert description.groups == [("BUNDLE", ["0"])]
    (media,) = description.media
    assert media.name == "0" and media.is_datachannel
    assert media.protocol == "UDP/DTLS/SCTP"
    assert media.sctp_port == 5000 and media.max_message_size == 262144
    assert media.transport.fingerprint.setup == setup
    assert len(media.transport.candidates) == 1
    assert media.transport.candidates[0].address == "127.0.0.1"
    text = sdp.build(description)
    for line in ("a=sctp-port:5000", "a=max-message-size:262144", f"a=setup:{setup}"):
        assert line in lines_of(text)
    assert "m=application" in text and "webrtc-datachannel" in text


def test_conversations_datachannel() -> None:
    description = parsed("conversations_datachannel.sdp")
    (media,) = description.media
    # no a=mid: the index is the name, which matches the BUNDLE group
    assert media.name == "0"
    assert description.groups == [("BUNDLE", ["0"])]
    assert media.transport.ufrag == "Q0xz"
    assert media.transport.pwd == "k3v5Jd0mQa8LxWv1Rr7yTt2e"
    assert media.transport.options == ["trickle"]
    assert media.transport.candidates == []
    assert media.sctp_port == 5000 and media.max_message_size == 262144
    built = lines_of(sdp.build(description))
    assert "a=mid:0" in built
    assert "a=ice-options:trickle" in built
    assert not any(line.startswith("a=candidate") for line in built)


# --- what matters is kept: browsers ----------------------------------------------------------


def test_browser_offer_transport() -> None:
    description = parsed("browser_av_offer.sdp")
    assert description.groups == [("BUNDLE", ["0", "1"])]
    audio, video = description.media
    transport = audio.transport
    assert (transport.ufrag, transport.pwd) == ("Q0xz", "k3v5Jd0mQa8LxWv1Rr7yTt2e")
    assert transport.options == ["trickle"]
    assert transport.fingerprint.hash == "sha-256"
    assert transport.fingerprint.setup == "actpass"
    host, tcp, srflx, relay = transport.candidates
    assert host.generation == 0 and host.network == 1 and host.rel_addr is None
    assert tcp.transport == "tcp" and tcp.port == 9
    assert (srflx.type, srflx.rel_addr, srflx.rel_port) == ("srflx", "192.0.2.10", 54400)
    assert (relay.type, relay.address, relay.port) == ("relay", "198.51.100.20", 61002)
    assert (relay.rel_addr, relay.rel_port) == ("203.0.113.7", 54400)
    built = lines_of(sdp.build(description))
    assert (
        "a=candidate:1188431702 1 udp 1686052607 203.0.113.7 54400 typ srflx raddr 192.0.2.10"
        " rport 54400 generation 0 network-id 1"
    ) in built
    assert len(video.transport.candidates) == 2


def test_browser_offer_rtp() -> None:
    audio, video = parsed("browser_av_offer.sdp").media
    assert audio.rtcp_mux and video.rtcp_mux
    assert audio.direction == video.direction == "sendrecv"
    assert audio.msid == (
        "5c9d2b1e-7f3a-4d8e-9b21-3f0a6c4e8d17 0b8f3c2a-91d4-4e6b-a7f0-2c5d8e1b9a34"
    )
    opus = audio.payload_types[0]
    assert (opus.id, opus.name, opus.clockrate, opus.channels) == (111, "opus", 48000, 2)
    assert opus.parameters == {"minptime": "10", "useinbandfec": "1"}
    assert opus.feedback == [("transport-cc", "")]
    assert [p.id for p in audio.payload_types] == [111, 63, 9, 0, 8, 13, 110, 126]
    assert next(p for p in audio.payload_types if p.id == 63).parameters == {"111/111": ""}
    assert [(e.id, e.direction) for e in video.extensions if e.direction != "sendrecv"] == [
        (5, "sendonly"),
        (6, "recvonly"),
    ]
    assert len(video.extensions) == 9
    vp8 = video.payload_types[0]
    assert vp8.feedback == [
        ("goog-remb", ""),
        ("transport-cc", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
    ]
    (group,) = video.source_groups
    assert (group.semantics, group.ssrcs) == ("FID", [2741372389, 3904525815])
    assert [s.ssrc for s in video.sources] == [2741372389, 3904525815]
    assert video.sources[0].parameters == {
        "cname": "fM3pW8kQ2xZr7tYb",
        "msid": "5c9d2b1e-7f3a-4d8e-9b21-3f0a6c4e8d17 6e2a1d9c-3b5f-4a87-8c0e-d41f7b29e6a5",
    }
    built = lines_of(sdp.build(parsed("browser_av_offer.sdp")))
    for line in (
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=extmap:5/sendonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
        "a=ssrc-group:FID 2741372389 3904525815",
        "a=ssrc:3904525815 cname:fM3pW8kQ2xZr7tYb",
        "a=extmap-allow-mixed",
        "a=rtcp-mux",
    ):
        assert line in built


def test_session_level_fingerprint_and_options() -> None:
    description = parsed("browser_av_session_fingerprint_offer.sdp")
    audio, video = description.media
    for media in (audio, video):
        assert media.transport.fingerprint.hash == "sha-256"
        assert media.transport.fingerprint.value.startswith("8A:F2:2F")
        assert media.transport.fingerprint.setup == "actpass"
        assert media.transport.options == ["trickle"]
        assert media.transport.ufrag == "8AmX"
    assert video.direction == "recvonly"
    assert audio.payload_types[1].channels == 1
    assert audio.payload_types[4].parameters == {"0-15": ""}
    (group,) = video.source_groups
    assert group.ssrcs == [3185245938, 1797421591]
    # the fingerprint is written per media
    built = sdp.build(description)
    assert built.count("a=fingerprint:sha-256 8A:F2:2F") == 2
    assert "a=recvonly" in lines_of(built)


def test_media_level_values_win() -> None:
    text = load("browser_av_session_fingerprint_offer.sdp")
    audio_part, video_part = text.split("m=video")
    video_part = video_part.replace("a=ice-ufrag:8AmX", "a=ice-ufrag:vid0").replace(
        "a=setup:actpass", "a=fingerprint:sha-256 AA:BB\na=setup:passive"
    )
    text = audio_part + "m=video" + video_part
    audio, video = sdp.parse(text).media
    assert audio.transport.ufrag == "8AmX"
    assert video.transport.ufrag == "vid0"
    assert (video.transport.fingerprint.value, video.transport.fingerprint.setup) == (
        "AA:BB",
        "passive",
    )


def test_legacy_dtls_sctp() -> None:
    text = (
        "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=application 5000 DTLS/SCTP 5000\r\nc=IN IP4 0.0.0.0\r\na=mid:data\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
        "a=fingerprint:sha-256 AA:BB\r\na=setup:active\r\n"
        "a=sctpmap:5000 webrtc-datachannel 1024\r\n"
    )
    (media,) = sdp.parse(text).media
    assert media.is_datachannel and media.protocol == "DTLS/SCTP"
    assert media.name == "data" and media.sctp_port == 5000
    assert media.transport.fingerprint.setup == "active"
    # without a=sctpmap, the format is the port
    (media,) = sdp.parse(text.replace("a=sctpmap:5000 webrtc-datachannel 1024\r\n", "")).media
    assert media.sctp_port == 5000
    again = sdp.parse(sdp.build(sdp.parse(text)))
    assert again.media[0].sctp_port == 5000


def test_candidate_helpers() -> None:
    value = (
        "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0"
        " rport 0 generation 0 ufrag Q0xz network-id 3 network-cost 10"
    )
    candidate = sdp.parse_candidate(value)
    assert (candidate.rel_addr, candidate.rel_port) == ("0.0.0.0", 0)
    assert candidate.generation == 0 and candidate.network == 3
    assert sdp.parse_candidate("a=" + value) == candidate
    assert sdp.parse_candidate(value.removeprefix("candidate:")) == candidate
    assert sdp.parse_candidate(sdp.build_candidate(candidate)) == candidate
    # the bridge form round trips too
    assert Candidate.from_dict(candidate.to_dict()) == candidate


# --- malformed input -------------------------------------------------------------------------

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "v="),
        ("o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n", "v="),
        (HEAD + "garbage\r\n", "garbage"),
        (HEAD + AUDIO + "a=candidate:1 1 udp 1 192.0.2.1 9 host\r\n", "candidate"),
        (HEAD + AUDIO + "a=candidate:1 1 udp 1 192.0.2.1 nine typ host\r\n", "nine"),
        (HEAD + AUDIO + "a=candidate:1 1 udp 1 192.0.2.1 9 typ weird\r\n", "weird"),
        (HEAD + AUDIO + "a=candidate:1 1 udp 1 192.0.2.1 70000 typ host\r\n", "range"),
        (HEAD + "a=candidate:1 1 udp 1 192.0.2.1 9 typ host\r\n", "media"),
        (HEAD + "m=audio nine UDP/TLS/RTP/SAVPF 111\r\n", "nine"),
        (HEAD + "m=audio 99999 UDP/TLS/RTP/SAVPF 111\r\n", "range"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF opus\r\n", "opus"),
        (HEAD + "m=text 9 RTP/AVP 0\r\n", "text"),
        (HEAD + "m=application 9 RTP/AVP 0\r\n", "RTP/AVP"),
        (HEAD + "m=audio 9\r\n", "m="),
        (HEAD + AUDIO + "a=mid:a\r\n" + AUDIO + "a=mid:a\r\n", "mid"),
        (HEAD + AUDIO + "a=fingerprint:sha-256\r\n", "fingerprint"),
        (HEAD + AUDIO + "a=rtpmap:111 opus/fast\r\n", "fast"),
        (HEAD + AUDIO + "a=extmap:x urn:foo\r\n", "extmap"),
        (HEAD + AUDIO + "a=ssrc:abc cname:x\r\n", "ssrc"),
        (HEAD + AUDIO + "a=ssrc-group:FID 1 two\r\n", "two"),
        (HEAD + AUDIO + "a=ssrc-group:\r\n", "ssrc-group"),
        (HEAD + "a=group:\r\n", "group"),
        (HEAD + "m=application 9 DTLS/SCTP 5000\r\na=sctpmap:\r\n", "sctpmap"),
        (HEAD + "m=application 9 UDP/DTLS/SCTP x\r\na=sctp-port:x\r\n", "sctp-port"),
        (HEAD + "m=application 9 UDP/DTLS/SCTP x\r\na=max-message-size:big\r\n", "big"),
        (HEAD + AUDIO + "b=AS:lots\r\n", "lots"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(SDPError) as exc_info:
        sdp.parse(text)
    assert message in str(exc_info.value)


def test_not_a_string() -> None:
    with pytest.raises(SDPError):
        sdp.parse(b"v=0\r\n")  # type: ignore[arg-type]


def test_too_long() -> None:
    text = HEAD + AUDIO + "a=x-padding:" + "x" * sdp.MAX_SDP + "\r\n"
    with pytest.raises(SDPError, match="longer"):
        sdp.parse(text)


def test_too_many_media() -> None:
    ok = HEAD + "".join(f"{AUDIO}a=mid:m{i}\r\n" for i in range(sdp.MAX_MEDIA))
    assert len(sdp.parse(ok).media) == sdp.MAX_MEDIA
    with pytest.raises(SDPError, match=f"more than {sdp.MAX_MEDIA} media"):
        sdp.parse(ok + AUDIO)


def test_unknown_attributes_ignored() -> None:
    description = sdp.parse(HEAD + "a=x-foo:bar\r\n" + AUDIO + "a=x-bar\r\na=rtcp-rsize\r\n")
    assert description.media[0].payload_types[0].name == "opus"


def test_build_refuses_line_injection() -> None:
    """Values that come from a peer's Jingle must not smuggle SDP lines in."""
    description = parsed("conversations_datachannel.sdp")
    description.media[0].transport.ufrag = "abcd\r\na=candidate:1 1 udp 1 10.0.0.1 9 typ host"
    with pytest.raises(SDPError, match="line break"):
        sdp.build(description)
    description = parsed("conversations_datachannel.sdp")
    description.media[0].name = "0\na=setup:passive"
    with pytest.raises(SDPError):
        sdp.build(description)


# --- property tests --------------------------------------------------------------------------

SDP_LINES = st.sampled_from(
    [line for name in GOLDEN for line in lines_of(load(name))]
    + [
        "a=group:",
        "a=ssrc-group:",
        "a=sctpmap:",
        "a=candidate:",
        "m=",
        "a=rtpmap:",
        "a=fmtp:",
        "a=extmap:",
        "a=ssrc:",
        "a=rtcp-fb:",
        "a=ptime:",
        "b=AS:",
    ]
)


@settings(
    derandomize=True, max_examples=300, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(st.text(max_size=300))
def test_parse_arbitrary_text(text: str) -> None:
    for candidate in (text, "v=0\n" + text):
        try:
            sdp.parse(candidate)
        except SDPError:
            pass


@settings(
    derandomize=True, max_examples=300, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(st.lists(st.one_of(SDP_LINES, st.text(max_size=40)), max_size=30), st.text(max_size=20))
def test_parse_mutated_sdp(lines: list[str], suffix: str) -> None:
    """SDP-looking input (real lines, truncated or with noise) only raises SDPError, and
    what parses builds and parses back to the same model."""
    lines = [
        line[: len(line) - len(suffix) % 7] + suffix if i % 3 == 0 else line
        for i, line in enumerate(lines)
    ]
    text = "v=0\r\n" + "\r\n".join(lines)
    try:
        description = sdp.parse(text)
    except SDPError:
        return
    try:
        built = sdp.build(description)
    except SDPError:
        return
    assert sdp.parse(built) == description
