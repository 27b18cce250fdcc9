"""A real audio+video call between two aiortc peers signalled by two daemons' hosts (XEP-0167
over ICE-UDP), wired in-process: proves that the SDP -> Jingle -> SDP conversion gives real
WebRTC stacks what they need (ICE connects, DTLS-SRTP, media flows both ways), with
candidates relayed only through transport-info and ``ice_candidates_new``.

Loopback host candidates only (aioice skips 127.0.0.1 unless told), no STUN.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.tools.webrtc import sdp
from tests.conftest import aio
from tests.unit.jingle.helpers import ALICE, BOB, jingle_host
from tests.unit.jingle.test_file_transfer import Wire, emitted

pytestmark = pytest.mark.timeout(60)

ICE = "urn:xmpp:jingle:transports:ice-udp:1"


async def eventually(condition: Any, what: str, wire: Wire, timeout: float = 20) -> None:
    """Pump the wire until ``condition()`` (real time passes: ICE and DTLS run)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        wire.pump()
        if loop.time() > end:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


class Frontend:
    """An aiortc peer playing a frontend of one host: offers/answers, relays candidates
    given by the ``ice_candidates_new`` signals (queued until the remote description)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(AudioStreamTrack())
        self.pc.addTrack(VideoStreamTrack())
        self.tracks: list[Any] = []
        self.pc.on("track", self.tracks.append)
        self.relayed = 0

    async def local(self, offer: bool) -> str:
        original = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        try:
            description = await (self.pc.createOffer() if offer else self.pc.createAnswer())
            await self.pc.setLocalDescription(description)
        finally:
            aioice.ice.get_host_addresses = original
        return self.pc.localDescription.sdp

    async def add_candidates(self) -> None:
        """Apply the candidates signalled since last time."""
        signals = emitted(self.host, "ice_candidates_new")
        for _, data, _ in signals[self.relayed :]:
            for name, media in json.loads(data).items():
                for c in media["candidates"]:
                    line = sdp.build_candidate(sdp.parse_candidate(_line(c)))
                    candidate = candidate_from_sdp(line.removeprefix("candidate:"))
                    candidate.sdpMid = name
                    await self.pc.addIceCandidate(candidate)
        self.relayed = len(signals)


def _line(c: dict[str, Any]) -> str:
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


@aio
async def test_audio_video_call_connects(tmp_path: Path) -> None:
    """alice calls bob (audio + video); bob's frontend answers; both aiortc peers connect
    and receive each other's media; alice hangs up and both frontends are told."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ha, ca, sa, _ = await jingle_host(tmp_path / "a", transports=(ICE,))
    hb, cb, sb, _ = await jingle_host(tmp_path / "b", "bob", BOB, transports=(ICE,))
    wire = Wire((ALICE, sa), (BOB, sb))
    alice, bob = Frontend(ha), Frontend(hb)
    try:
        offer = await alice.local(offer=True)  # candidates in the SDP: the daemon trickles them
        task = asyncio.ensure_future(
            ha.plugins["XEP-0167"].call_start(ca, JID(BOB), {"sdp": offer})
        )
        await eventually(lambda: emitted(hb, "action_new"), "bob rings", wire)
        sid = task.result() if task.done() else await task
        (action,) = emitted(hb, "action_new")
        data = json.loads(action[0])
        assert data["type"] == "call" and data["subtype"] == "video"
        await bob.pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "offer"))
        full_answer = await bob.local(offer=False)
        # bob's frontend gives its candidates separately, as a trickling one does
        hb.actions.launch("bob", action[1], {"accept": True, "sdp": strip_candidates(full_answer)})
        candidates = [
            sdp.parse_candidate(line.removeprefix("a="))
            for line in full_answer.splitlines()
            if line.startswith("a=candidate:")
        ]
        names = [m.name for m in sdp.parse(full_answer).media]
        adding = asyncio.ensure_future(
            hb.plugins["XEP-0176"].add_candidates(
                cb,
                sid,
                {
                    name: {"candidates": [c.to_dict() for c in candidates if c.port == port]}
                    for name, port in zip(
                        names, [m.port for m in sdp.parse(full_answer).media], strict=True
                    )
                },
            )
        )
        await eventually(lambda: emitted(ha, "call_setup") and adding.done(), "answer", wire)
        adding.result()
        (setup,) = emitted(ha, "call_setup")
        assert setup[0] == sid
        await alice.pc.setRemoteDescription(
            RTCSessionDescription(json.loads(setup[1])["sdp"], "answer")
        )

        async def relay() -> None:
            await alice.add_candidates()
            await bob.add_candidates()

        def connected() -> bool:
            asyncio.ensure_future(relay())
            return alice.pc.connectionState == bob.pc.connectionState == "connected"

        await eventually(connected, "both peers connected", wire)
        assert {t.kind for t in alice.tracks} == {t.kind for t in bob.tracks} == {"audio", "video"}
        for track in alice.tracks + bob.tracks:
            frame = await asyncio.wait_for(track.recv(), 10)  # media really flows
            assert frame is not None
        end = asyncio.ensure_future(ha.plugins["XEP-0167"].call_end(ca, sid, {}))
        await eventually(lambda: end.done() and emitted(hb, "call_ended"), "hung up", wire)
        end.result()
        for host in (ha, hb):
            ((_, ended, _),) = emitted(host, "call_ended")
            assert json.loads(ended)["reason"] == "success"
    finally:
        await alice.pc.close()
        await bob.pc.close()
        await ha.stop()
        await hb.stop()
