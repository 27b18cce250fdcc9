"""An aiortc peer playing a call frontend (audio + video), shared by the in-process call test
(tests/integration/test_webrtc_call.py) and the end-to-end one over the bridge
(tests/e2e/test_call.py).

Loopback host candidates only (aioice skips 127.0.0.1 unless told), no STUN.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp

from libervia.backend.tools.webrtc import sdp


class Frontend:
    """An aiortc peer playing a frontend: offers/answers, relays the candidates given by the
    ``ice_candidates_new`` signals (queued until the remote description).

    ``signals()`` returns the arguments ``(session_id, candidates, profile)`` of this
    frontend's ``ice_candidates_new`` signals so far, in order.
    """

    def __init__(self, signals: Callable[[], Sequence[tuple[Any, ...]]]) -> None:
        self.signals = signals
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(AudioStreamTrack())
        self.pc.addTrack(VideoStreamTrack())
        self.tracks: list[Any] = []
        self.pc.on("track", self.tracks.append)
        self.relayed = 0

    async def local(self, offer: bool) -> str:
        """Create and set the offer or the answer (every candidate gathered in it)."""
        original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        try:
            description = await (self.pc.createOffer() if offer else self.pc.createAnswer())
            await self.pc.setLocalDescription(description)
        finally:
            aioice.ice.get_host_addresses = original
        return str(self.pc.localDescription.sdp)

    async def add_candidates(self) -> None:
        """Apply the candidates signalled since last time."""
        signals = list(self.signals())
        for _, data, _ in signals[self.relayed :]:
            for name, media in json.loads(data).items():
                for c in media["candidates"]:
                    line = sdp.build_candidate(sdp.parse_candidate(candidate_line(c)))
                    candidate = candidate_from_sdp(line.removeprefix("candidate:"))
                    candidate.sdpMid = name
                    await self.pc.addIceCandidate(candidate)
        self.relayed = len(signals)

    def connected(self) -> bool:
        return bool(self.pc.connectionState == "connected")

    async def close(self) -> None:
        await self.pc.close()


def candidate_line(c: dict[str, Any]) -> str:
    """The SDP ``candidate:`` line of a candidate of the bridge."""
    line = (
        f"candidate:{c['foundation']} {c['component_id']} {c['transport']} {c['priority']} "
        f"{c['address']} {c['port']} typ {c['type']}"
    )
    if c.get("rel_addr"):
        line += f" raddr {c['rel_addr']} rport {c['rel_port']}"
    return line


def strip_candidates(text: str) -> str:
    """What a frontend that trickles gives: no candidate in the SDP."""
    return "".join(
        line + "\r\n"
        for line in text.splitlines()
        if not line.startswith(("a=candidate", "a=end-of-candidates"))
    )


def trickled(text: str) -> dict[str, Any]:
    """The candidates of an SDP as a trickling frontend gives them (``ice_candidates_add``):
    ``{content name: {"candidates": [...]}}``."""
    candidates = [
        sdp.parse_candidate(line.removeprefix("a="))
        for line in text.splitlines()
        if line.startswith("a=candidate:")
    ]
    media = sdp.parse(text).media
    return {
        m.name: {"candidates": [c.to_dict() for c in candidates if c.port == m.port]} for m in media
    }
