"""Candidates between the bridge's dicts, aiortc and SDP; the ICE configuration (pure: no
network, no peer connection)."""

from __future__ import annotations

from typing import Any

import aioice.ice
import pytest
from aiortc import RTCIceServer

from libervia.frontends.webrtc import (
    WebRTCConfig,
    candidate_from_dict,
    candidate_to_dict,
    candidates_from_sdp,
    candidates_from_signal,
    host_addresses,
    strip_candidates,
)
from libervia.frontends.webrtc import config as webrtc_config
from libervia.frontends.webrtc.candidates import candidate_sdp_value
from libervia.frontends.webrtc.endpoint import chunk_size, remote_max_message_size

HOST = {
    "foundation": "16572de626da4e5384a0ce2d0d93678a",
    "component_id": 1,
    "transport": "udp",
    "priority": 2130706431,
    "address": "127.0.0.1",
    "port": 49438,
    "type": "host",
}
SRFLX = {
    "foundation": "2",
    "component_id": 1,
    "transport": "udp",
    "priority": 1694498815,
    "address": "203.0.113.7",
    "port": 61234,
    "type": "srflx",
    "rel_addr": "192.0.2.10",
    "rel_port": 50312,
}

SDP = (
    "v=0\r\no=- 4004444443 4004444443 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\na=msid-semantic:WMS *\r\n"
    "m=application 49438 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n"
    "a=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    "a=candidate:16572de626da4e5384a0ce2d0d93678a 1 udp 2130706431 127.0.0.1 49438 typ host\r\n"
    "a=candidate:2 1 udp 1694498815 203.0.113.7 61234 typ srflx raddr 192.0.2.10 rport 50312\r\n"
    "a=end-of-candidates\r\na=ice-ufrag:L5UB\r\na=ice-pwd:B8FVuj2PLh6Am9iaX98l6F\r\n"
    "a=fingerprint:sha-256 FA:48:5F:2C\r\na=setup:actpass\r\n"
)


@pytest.mark.parametrize("cand", [HOST, SRFLX])
def test_round_trip(cand: dict[str, Any]) -> None:
    """dict -> aiortc candidate (sdpMid, sdpMLineIndex 0) -> the same dict."""
    candidate = candidate_from_dict(cand, "0")
    assert (candidate.sdpMid, candidate.sdpMLineIndex) == ("0", 0)
    assert (candidate.ip, candidate.port, candidate.type) == (
        cand["address"],
        cand["port"],
        cand["type"],
    )
    assert candidate_to_dict(candidate) == cand


def test_optional_fields_and_strings() -> None:
    """generation and id are accepted (aiortc keeps no generation); numbers as strings,
    transport/type case are tolerated."""
    cand = {**SRFLX, "generation": 0, "id": "0f4b2c7e-91a3", "port": "61234", "type": "SRFLX"}
    cand["transport"] = "UDP"
    assert candidate_sdp_value(cand) == (
        "2 1 udp 1694498815 203.0.113.7 61234 typ srflx raddr 192.0.2.10 rport 50312 generation 0"
    )
    assert candidate_to_dict(candidate_from_dict(cand, "x")) == SRFLX


@pytest.mark.parametrize(
    "bad, error",
    [
        ({k: v for k, v in HOST.items() if k != "port"}, "without port"),
        ({**HOST, "type": "bogus"}, "unknown candidate type"),
        ({**HOST, "port": "x"}, "port must be an integer"),
        ({**HOST, "priority": True}, "priority must be an integer"),
        ({**HOST, "address": "1.2.3.4 typ relay"}, "invalid candidate address"),
        ({**HOST, "foundation": ""}, "invalid candidate foundation"),
        ("candidate", "must be a dict"),
    ],
)
def test_malformed(bad: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        candidate_from_dict(bad, "0")


def test_signal_and_sdp() -> None:
    """The candidates of an SDP in the signal's shape, and back to aiortc candidates."""
    data = candidates_from_sdp(SDP)
    assert data == {
        "0": {"ufrag": "L5UB", "pwd": "B8FVuj2PLh6Am9iaX98l6F", "candidates": [HOST, SRFLX]}
    }
    candidates = candidates_from_signal(data)
    assert [(c.sdpMid, c.ip) for c in candidates] == [("0", "127.0.0.1"), ("0", "203.0.113.7")]
    assert candidates_from_signal({"0": {"ufrag": "a", "pwd": "b", "candidates": []}}) == []
    with pytest.raises(ValueError):
        candidates_from_signal({"0": "nope"})
    with pytest.raises(ValueError):
        candidates_from_signal([])  # type: ignore[arg-type]


def test_sdp_without_mid_and_session_credentials() -> None:
    """No a=mid: keyed by the media index; session-level ufrag/pwd apply to the media."""
    sdp = "v=0\r\na=ice-ufrag:U\r\na=ice-pwd:P\r\nm=application 9 UDP/DTLS/SCTP x\r\n"
    assert candidates_from_sdp(sdp) == {"0": {"ufrag": "U", "pwd": "P", "candidates": []}}


def test_strip_candidates() -> None:
    stripped = strip_candidates(SDP)
    assert "a=candidate" not in stripped and "end-of-candidates" not in stripped
    assert "a=mid:0\r\n" in stripped and stripped.endswith("a=setup:actpass\r\n")
    assert candidates_from_sdp(stripped)["0"]["candidates"] == []


def test_message_size() -> None:
    """At most the peer's a=max-message-size (65536 without it; 0 = no limit) and 64 KiB."""
    assert remote_max_message_size(SDP) == 262144
    assert remote_max_message_size("v=0\r\n") == 65536
    assert chunk_size(262144) == 65536
    assert chunk_size(16384) == 16384
    assert chunk_size(0) == 65536


def test_config() -> None:
    """Explicit (empty by default) ICE servers; host addresses validated and normalised."""
    config = WebRTCConfig()
    assert config.ice_servers == () and config.host_addresses is None
    assert config.rtc_configuration().iceServers == []
    config = WebRTCConfig(
        ice_servers=["stun:stun.example.org:3478", "turn:turn.example.org?transport=udp"],
        username="u",
        credential="p",
        host_addresses=["127.0.0.1", "::0001"],
    )
    assert config.host_addresses == ("127.0.0.1", "::1")
    servers = config.rtc_configuration().iceServers
    assert servers == [
        RTCIceServer(urls="stun:stun.example.org:3478"),
        RTCIceServer(urls="turn:turn.example.org?transport=udp", username="u", credential="p"),
    ]
    assert WebRTCConfig(ice_servers="stun:a").ice_servers == ("stun:a",)  # type: ignore[arg-type]
    for bad in ("http://stun.example.org", "stun:", "example.org", "stun://x"):
        with pytest.raises(ValueError, match="invalid ICE server"):
            WebRTCConfig(ice_servers=(bad,))
    with pytest.raises(ValueError, match="invalid host address"):
        WebRTCConfig(host_addresses=("localhost",))


def test_host_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside host_addresses(), aioice gathers only on the listed addresses present on an
    interface (loopback included), by family; outside, aioice's own function answers."""
    # restored after the test, like aioice's function
    monkeypatch.setattr(
        webrtc_config, "_original_get_host_addresses", webrtc_config._original_get_host_addresses
    )
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["192.0.2.1"])
    monkeypatch.setattr(
        webrtc_config, "_interface_addresses", lambda: {"127.0.0.1", "::1", "192.0.2.1"}
    )
    with host_addresses(None):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["192.0.2.1"]
    with host_addresses(["127.0.0.1", "::1", "198.51.100.9"]):
        gather = aioice.ice.get_host_addresses
        assert gather(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        assert gather(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert gather(use_ipv4=False, use_ipv6=True) == ["::1"]
    # installed once, transparent outside the block
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["192.0.2.1"]
    with WebRTCConfig(host_addresses=("192.0.2.1",)).gathering():
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["192.0.2.1"]
