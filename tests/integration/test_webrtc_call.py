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

import pytest
from aiortc import RTCSessionDescription
from twisted.words.protocols.jabber.jid import JID

from tests.conftest import aio
from tests.unit.jingle.helpers import ALICE, BOB, jingle_host
from tests.unit.jingle.test_file_transfer import Wire, emitted
from tests.webrtc_peer import Frontend, strip_candidates, trickled

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


@aio
async def test_audio_video_call_connects(tmp_path: Path) -> None:
    """alice calls bob (audio + video); bob's frontend answers; both aiortc peers connect
    and receive each other's media; alice hangs up and both frontends are told."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ha, ca, sa, _ = await jingle_host(tmp_path / "a", transports=(ICE,))
    hb, cb, sb, _ = await jingle_host(tmp_path / "b", "bob", BOB, transports=(ICE,))
    wire = Wire((ALICE, sa), (BOB, sb))
    alice = Frontend(lambda: emitted(ha, "ice_candidates_new"))
    bob = Frontend(lambda: emitted(hb, "ice_candidates_new"))
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
        adding = asyncio.ensure_future(
            hb.plugins["XEP-0176"].add_candidates(cb, sid, trickled(full_answer))
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
