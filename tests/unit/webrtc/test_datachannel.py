"""XEP-0343 file transfer over a WebRTC data channel: two hosts wired in-process, the
frontends played by the test (SDP from aiortc, reports through the plugin's report method).

The literal stanzas are checked against the fact sheet's structure (§2, §6): content "0",
the webrtc-datachannel:1 wrapper with sctp-port and max-message-size, the ICE-UDP transport
with one sha-256 fingerprint and no candidate, the BUNDLE group, then one candidate per
transport-info after the ack.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.tools.webrtc import sdp
from tests.conftest import aio
from tests.unit.jingle.helpers import ALICE, BOB, jingle_host
from tests.unit.jingle.test_file_transfer import Wire, emitted, until

IBB = "urn:xmpp:jingle:transports:ibb:1"
DC = "urn:xmpp:jingle:transports:webrtc-datachannel:1"
ICE = "urn:xmpp:jingle:transports:ice-udp:1"
FT = "urn:xmpp:jingle:apps:file-transfer:5"
TRANSPORTS = (IBB, DC, ICE)

# an aiortc 1.16 offer (plus a srflx candidate) and answer for one data channel
DATA = Path(__file__).parent / "data"
OFFER = (DATA / "dc_alice_offer.sdp").read_text()
ANSWER = (DATA / "dc_bob_answer.sdp").read_text()
FP_ALICE = OFFER.split("a=fingerprint:sha-256 ")[1].split()[0]


async def two_hosts(tmp_path: Path) -> Any:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = await jingle_host(tmp_path / "a", transports=TRANSPORTS)
    b = await jingle_host(tmp_path / "b", "bob", BOB, transports=TRANSPORTS)
    return a, b, Wire((ALICE, a[2]), (BOB, b[2]))


def jingle_log(wire: Wire) -> list[str]:
    return [x for x in wire.log if "<jingle" in x]


def b64sha(data: bytes) -> str:
    return b64encode(hashlib.sha256(data).digest()).decode()


async def offer(tmp_path: Path, content: bytes, **kwargs: Any) -> Any:
    """alice offers a file with WebRTC call data; returns everything once bob is asked."""
    (ha, ca, _, ra), (hb, cb, _, rb), wire = await two_hosts(tmp_path)
    source = tmp_path / "photo.jpg"
    source.write_bytes(content)
    task = asyncio.ensure_future(
        ha.plugins["XEP-0234"].file_send(ca, JID(BOB), source, call_data={"sdp": OFFER}, **kwargs)
    )
    await until(lambda: emitted(hb, "action_new"), "bob asked", wire.pump)
    await until(task.done, "offer acknowledged", wire.pump)
    return (ha, ca, ra), (hb, cb, rb), wire, task.result(), source


@aio
async def test_datachannel_offer_and_transfer(tmp_path: Path) -> None:
    content = os.urandom(30_000)
    (ha, ca, ra), (hb, cb, rb), wire, result, source = await offer(tmp_path, content)
    try:
        assert result["transport"] == DC
        initiate = jingle_log(wire)[0]
        assert "action='session-initiate'" in initiate
        assert "<content creator='initiator' name='0' senders='initiator'>" in initiate
        assert f"<description xmlns='{FT}'>" in initiate
        assert (
            f"<transport xmlns='{DC}' sctp-port='5000' max-message-size='262144'>"
            f"<transport xmlns='{ICE}' ufrag='noGN' pwd='XQobqesZUoUqKjddp5wqZR'>"
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>"
            f"{FP_ALICE}</fingerprint></transport></transport>" in initiate
        )
        assert "<candidate" not in initiate
        assert (
            "<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>"
            "<content name='0'/></group></jingle>" in initiate
        )
        # the candidates follow, one per transport-info, after the ack
        await until(lambda: len(jingle_log(wire)) >= 3, "candidates", wire.pump)
        infos = [x for x in jingle_log(wire) if "transport-info" in x]
        assert len(infos) == 2 and all(x.count("<candidate ") == 1 for x in infos)
        assert "ip='127.0.0.1' port='59414'" in infos[0] and "generation='0'" in infos[0]
        assert (
            "rel-addr='127.0.0.1' rel-port='59414'" in infos[1] and "<fingerprint" not in infos[1]
        )
        # bob is asked with the offer as an SDP his WebRTC stack takes (a=mid)
        (action,) = emitted(hb, "action_new")
        data = json.loads(action[0])
        assert data["type"] == "file" and data["file"]["hash"] == b64sha(content)
        offered = sdp.parse(data["webrtc"]["sdp"])
        (media,) = offered.media
        assert media.name == "0" and media.sctp_port == 5000
        assert media.transport.ufrag == "noGN" and media.transport.fingerprint.value == FP_ALICE
        assert "a=mid:0" in data["webrtc"]["sdp"]
        downloads = tmp_path / "down"
        hb.actions.launch("bob", action[1], {"accept": True, "path": str(downloads), "sdp": ANSWER})
        await until(lambda: emitted(ha, "call_setup"), "alice gets the answer", wire.pump)
        accept = next(x for x in jingle_log(wire) if "session-accept" in x)
        assert "ufrag='e5Lw'" in accept and "setup='active'" in accept
        assert "<candidate" not in accept and "semantics='BUNDLE'" in accept
        await until(
            lambda: (
                emitted(hb, "ice_candidates_new")
                and emitted(ha, "ice_candidates_new")
                or len(emitted(ha, "ice_candidates_new")) + len(emitted(hb, "ice_candidates_new"))
                > 1
            ),
            "candidates relayed",
            wire.pump,
        )
        # bob's frontend gets alice's two candidates, queued until it answered
        relayed = [json.loads(x[1]) for x in emitted(hb, "ice_candidates_new")]
        got = [c for r in relayed for c in r["0"]["candidates"]]
        assert [c["port"] for c in got] == [59414, 61234] and relayed[0]["0"]["ufrag"] == "noGN"
        (setup,) = emitted(ha, "call_setup")
        setup_data = json.loads(setup[1])
        assert setup_data["role"] == "initiator"
        assert sdp.parse(setup_data["sdp"]).media[0].transport.ufrag == "e5Lw"
        # bob's progress tells his frontend where to write
        (started,) = [json.loads(a[1]) for a in emitted(hb, "progress_started")]
        partial = Path(started["partial"])
        assert partial.parent == downloads and started["path"] == str(downloads / "photo.jpg")
        # the frontends move the bytes and report
        sid = result["session_id"]
        ha.plugins["XEP-0343"].report(ca, sid, {"state": "connected"})
        ha.plugins["XEP-0343"].report(ca, sid, {"state": "progress", "position": 1000})
        assert ha.progress.get("alice", result["progress"])["position"] == 1000
        partial.write_bytes(content)
        done = {"state": "done", "size": len(content), "hash_algo": "sha-256"}
        ha.plugins["XEP-0343"].report(ca, sid, {**done, "hash": b64sha(content)})
        hb.plugins["XEP-0343"].report(cb, sid, {**done, "hash": b64sha(content)})
        await until(lambda: emitted(ha, "progress_finished"), "alice done", wire.pump)
        ((_, meta, _),) = emitted(hb, "progress_finished")
        assert json.loads(meta)["hash_verified"] is True
        assert (downloads / "photo.jpg").read_bytes() == content
        assert sorted(p.name for p in downloads.iterdir()) == ["photo.jpg"]
        actions = jingle_log(wire)
        assert "<received xmlns" in actions[-2] and "<success/>" in actions[-1]
        await until(lambda: emitted(ha, "call_ended"), "alice told", wire.pump)
        for host in (ha, hb):
            ((_, ended, _),) = emitted(host, "call_ended")
            assert json.loads(ended) == {"reason": "success", "fallback": False}
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_ice_timeout_falls_back_to_ibb(tmp_path: Path) -> None:
    """alice's frontend never connects: after webrtc_ice_timeout the transport is replaced
    by IBB (not SOCKS5), the daemons move the bytes, and both frontends are told."""
    content = os.urandom(10_000)
    (ha, ca, ra), (hb, cb, rb), wire, result, source = await offer(tmp_path, content)
    try:
        (action,) = emitted(hb, "action_new")
        downloads = tmp_path / "down"
        hb.actions.launch("bob", action[1], {"accept": True, "path": str(downloads), "sdp": ANSWER})
        await until(lambda: emitted(ha, "call_setup"), "answer", wire.pump)
        timeout = ha.plugins["XEP-0343"].ice_timeout
        ra.advance(timeout - 1)
        await until(lambda: True, "nothing", wire.pump)
        assert not any("transport-replace" in x for x in wire.log)
        ra.advance(1)
        await until(lambda: emitted(hb, "progress_finished"), "received over IBB", wire.pump)
        replace = next(x for x in jingle_log(wire) if "transport-replace" in x)
        assert f"<transport xmlns='{IBB}'" in replace
        assert (downloads / "photo.jpg").read_bytes() == content
        for host in (ha, hb):
            await until(lambda h=host: emitted(h, "call_ended"), "told", wire.pump)
            ((_, ended, _),) = emitted(host, "call_ended")
            assert json.loads(ended)["fallback"] is True
        await until(lambda: emitted(ha, "progress_finished"), "alice done", wire.pump)
        # a late report about the ended session is refused clearly
        with pytest.raises(NotFound):
            ha.plugins["XEP-0343"].report(ca, result["session_id"], {"state": "connected"})
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_frontend_failure_falls_back_at_once(tmp_path: Path) -> None:
    content = os.urandom(5_000)
    (ha, ca, ra), (hb, cb, rb), wire, result, source = await offer(tmp_path, content)
    try:
        (action,) = emitted(hb, "action_new")
        hb.actions.launch("bob", action[1], {"accept": True, "path": str(tmp_path), "sdp": ANSWER})
        await until(lambda: emitted(ha, "call_setup"), "answer", wire.pump)
        ha.plugins["XEP-0343"].report(
            ca, result["session_id"], {"state": "failed", "error": "ICE failed"}
        )
        await until(lambda: emitted(hb, "progress_finished"), "received over IBB", wire.pump)
        assert (tmp_path / "photo (1).jpg").read_bytes() == content
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_wrong_size_or_hash_fails_and_removes(tmp_path: Path) -> None:
    content = os.urandom(4_000)
    (ha, ca, ra), (hb, cb, rb), wire, result, source = await offer(tmp_path, content)
    try:
        (action,) = emitted(hb, "action_new")
        downloads = tmp_path / "down"
        hb.actions.launch("bob", action[1], {"accept": True, "path": str(downloads), "sdp": ANSWER})
        await until(lambda: emitted(hb, "progress_started"), "accepted", wire.pump)
        sid = result["session_id"]
        (started,) = [json.loads(a[1]) for a in emitted(hb, "progress_started")]
        Path(started["partial"]).write_bytes(b"x" * 4_000)
        report = {
            "state": "done",
            "size": 4_000,
            "hash_algo": "sha-256",
            "hash": b64sha(b"x" * 4000),
        }
        hb.plugins["XEP-0343"].report(cb, sid, report)
        await until(lambda: emitted(hb, "progress_error"), "hash refused", wire.pump)
        assert "hash" in emitted(hb, "progress_error")[0][1]
        assert list(downloads.iterdir()) == []  # neither partial nor reserved name kept
        await until(lambda: emitted(ha, "progress_error"), "alice told", wire.pump)
    finally:
        await ha.stop()
        await hb.stop()

    content = os.urandom(4_000)
    (tmp_path / "2").mkdir()
    (ha, ca, ra), (hb, cb, rb), wire, result, source = await offer(tmp_path / "2", content)
    try:
        (action,) = emitted(hb, "action_new")
        hb.actions.launch("bob", action[1], {"accept": True, "path": str(tmp_path), "sdp": ANSWER})
        await until(lambda: emitted(hb, "progress_started"), "accepted", wire.pump)
        report = {"state": "done", "size": 5_000, "hash_algo": "sha-256", "hash": b64sha(content)}
        hb.plugins["XEP-0343"].report(cb, result["session_id"], report)
        await until(lambda: emitted(hb, "progress_error"), "size refused", wire.pump)
        assert "5000 bytes moved, 4000 announced" in emitted(hb, "progress_error")[0][1]
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_receiver_without_webrtc_gets_ibb(tmp_path: Path) -> None:
    """A frontend that cannot do WebRTC accepts without an SDP: bob's daemon proposes IBB
    (transport-replace while pending) before accepting, and the daemons move the bytes."""
    content = os.urandom(6_000)
    (ha, ca, ra), (hb, cb, rb), wire, result, source = await offer(tmp_path, content)
    try:
        (action,) = emitted(hb, "action_new")
        downloads = tmp_path / "down"
        hb.actions.launch("bob", action[1], {"accept": True, "path": str(downloads)})
        await until(lambda: emitted(hb, "progress_finished"), "received over IBB", wire.pump)
        await until(lambda: emitted(ha, "progress_finished"), "alice done", wire.pump)
        actions = [x.split("action='")[1].split("'")[0] for x in jingle_log(wire)]
        replace = actions.index("transport-replace")
        assert actions[replace + 1] == "transport-accept"
        assert actions.index("session-accept") > replace
        assert (downloads / "photo.jpg").read_bytes() == content
        ((_, ended, _),) = emitted(ha, "call_ended")  # alice's frontend stops its WebRTC
        assert json.loads(ended)["fallback"] is True
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_without_call_data_or_feature_another_transport(tmp_path: Path) -> None:
    """No call data: WebRTC is not usable, IBB is offered; call data but a peer whose
    features lack webrtc-datachannel:1: not usable either."""
    (ha, ca, sa, ra), (hb, cb, sb, rb), wire = await two_hosts(tmp_path)
    try:
        source = tmp_path / "f.bin"
        source.write_bytes(b"12345")
        task = asyncio.ensure_future(ha.plugins["XEP-0234"].file_send(ca, JID(BOB), source))
        await until(task.done, "offer", wire.pump)
        assert task.result()["transport"] == IBB
        from wokkel.disco import DiscoFeature, DiscoInfo

        info = DiscoInfo()
        info.append(DiscoFeature(IBB))
        ha.plugins["XEP-0030"].cache_infos(ca, JID(BOB), info)
        task = asyncio.ensure_future(
            ha.plugins["XEP-0234"].file_send(ca, JID(BOB), source, call_data={"sdp": OFFER})
        )
        await until(task.done, "offer", wire.pump)
        assert task.result()["transport"] == IBB
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_bad_input_is_refused(tmp_path: Path) -> None:
    (ha, ca, sa, ra), (hb, cb, sb, rb), wire = await two_hosts(tmp_path)
    try:
        ft = ha.plugins["XEP-0234"]
        source = tmp_path / "f.bin"
        source.write_bytes(b"12345")
        for call_data, error in (
            ({"sdp": "nonsense"}, "invalid SDP"),
            (
                {
                    "sdp": OFFER.replace(
                        "m=application 59414 UDP/DTLS/SCTP webrtc-datachannel",
                        "m=audio 59414 UDP/TLS/RTP/SAVPF 0",
                    )
                },
                "data channel",
            ),
            ({"sdp": re.sub(r"a=ice-ufrag:.*\n", "", OFFER)}, "ufrag"),
            ({}, "call_data"),
        ):
            with pytest.raises(InvalidInput, match=error):
                await ft.file_send(ca, JID(BOB), source, call_data=call_data)
        plugin = ha.plugins["XEP-0343"]
        with pytest.raises(NotFound):
            plugin.report(ca, "nope", {"state": "connected"})
        with pytest.raises(InvalidInput):
            plugin.report(ca, "nope", {"state": "dancing"})
        ice = ha.plugins["XEP-0176"]
        with pytest.raises(NotFound):
            await ice.add_candidates(ca, "nope", {"0": {"candidates": []}})
        # a file that is not on this machine needs its size
        with pytest.raises(InvalidInput, match="size"):
            await ft.file_send(
                ca, JID(BOB), tmp_path / "elsewhere.bin", call_data={"sdp": OFFER}, file_data={}
            )
    finally:
        await ha.stop()
        await hb.stop()
