"""XEP-0167 calls: one host facing literal XML (the peer), the frontend played by the test
(SDP from aiortc), and two hosts wired in-process for a whole call."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.tools.webrtc import sdp
from tests.conftest import aio
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    NS_JINGLE,
    error_to,
    jingle_host,
    jingle_iq,
    no_text,
    result_to,
    session_terminate,
)
from tests.unit.jingle.test_file_transfer import Wire, emitted, until

ICE = "urn:xmpp:jingle:transports:ice-udp:1"
RTP = "urn:xmpp:jingle:apps:rtp:1"
INFO = "urn:xmpp:jingle:apps:rtp:info:1"
DTLS = "urn:xmpp:jingle:apps:dtls:0"
GROUP = "urn:xmpp:jingle:apps:grouping:0"
HDREXT = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"

DATA = Path(__file__).parent / "data"
#: aiortc's audio+video offer, without its data channel
OFFER = (DATA / "aiortc_av_offer.sdp").read_text().split("m=application")[0]
#: an aiortc-like answer to an audio+video offer (video received only)
ANSWER = (DATA / "call_av_answer.sdp").read_text()
FP_ALICE = OFFER.split("a=fingerprint:sha-256 ")[1].split()[0]
FP_BOB = ":".join(["AA", "BB", "CC", "DD", "EE", "FF", "00", "11", "22", "33", "44"] * 3)[:95]


def norm(xml: str, sid: str = "") -> str:
    """Stanza ids, candidate ids and the session id replaced (payload-type ids kept)."""
    xml = re.sub(r"^(<iq [^>]*?) id='[^']*'", r"\1 id='ID'", xml)
    xml = re.sub(r"(<candidate [^>]*?) id='[^']*'", r"\1 id='ID'", xml)
    return xml.replace(sid, "SID") if sid else xml


async def host_for(tmp_path: Path) -> Any:
    return await jingle_host(tmp_path, transports=(ICE,))


def sent_now(stream: Any, sid: str = "") -> list[str]:
    return [norm(x, sid) for x in stream.sent_xml() if " to='localhost'" not in x]


async def settle(rounds: int = 50) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def ack(stream: Any, raw: str, sender: str = BOB) -> None:
    stanza_id = raw.split(" id='")[1].split("'")[0]
    stream.receive(f"<iq type='result' id='{stanza_id}' from='{sender}' to='{ALICE}'/>")


class Wired:
    """What one host sent, raw and normalised, acknowledged on demand."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.raw: list[str] = []

    async def read(self) -> list[str]:
        await settle()
        self.raw = [x for x in self.stream.sent_xml() if " to='localhost'" not in x]
        return self.raw

    def ack(self, index: int = 0) -> None:
        ack(self.stream, self.raw[index])

    async def acked(self, coro: Any) -> tuple[Any, list[str]]:
        """Run ``coro``, acknowledging what it sends; (its result, the stanzas sent)."""
        task = asyncio.ensure_future(coro)
        raw = await self.read()
        for index in range(len(raw)):
            self.ack(index)
        return await task, raw


# --- outgoing calls ----------------------------------------------------------------------

SESSION_INITIATE = (
    f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' action='session-initiate' "
    f"initiator='{ALICE}' sid='SID'>"
    "<content creator='initiator' name='0'>"
    f"<description xmlns='{RTP}' media='audio' ssrc='3171031884'>"
    "<payload-type id='96' name='opus' clockrate='48000' channels='2'/>"
    "<payload-type id='9' name='G722' clockrate='8000'/>"
    "<payload-type id='0' name='PCMU' clockrate='8000'/>"
    "<payload-type id='8' name='PCMA' clockrate='8000'/>"
    "<rtcp-mux/>"
    f"<rtp-hdrext xmlns='{HDREXT}' id='1' uri='urn:ietf:params:rtp-hdrext:sdes:mid'/>"
    f"<rtp-hdrext xmlns='{HDREXT}' id='2' uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>"
    f"<source xmlns='{SSMA}' ssrc='3171031884'>"
    "<parameter name='cname' value='7ec4b1f9-7d7e-41c8-93a4-b8cbae1457b9'/></source>"
    "</description>"
    f"<transport xmlns='{ICE}' ufrag='txfY' pwd='wxVmY10hh4swmhGJW03KoV'>"
    f"<fingerprint xmlns='{DTLS}' hash='sha-256' setup='actpass'>{FP_ALICE}</fingerprint>"
    "</transport></content>"
    "<content creator='initiator' name='1'>"
    f"<description xmlns='{RTP}' media='video' ssrc='3983903366'>"
    "<payload-type id='97' name='VP8' clockrate='90000'>"
    f"<rtcp-fb xmlns='{FB}' type='nack'/>"
    f"<rtcp-fb xmlns='{FB}' type='nack' subtype='pli'/>"
    f"<rtcp-fb xmlns='{FB}' type='goog-remb'/></payload-type>"
    "<payload-type id='98' name='rtx' clockrate='90000'>"
    "<parameter name='apt' value='97'/></payload-type>"
)


def candidate_info(content: str, port: int) -> str:
    return (
        f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' action='transport-info' "
        f"sid='SID'><content creator='initiator' name='{content}'>"
        f"<transport xmlns='{ICE}' ufrag='txfY' pwd='wxVmY10hh4swmhGJW03KoV'>"
        "<candidate component='1' foundation='16572de626da4e5384a0ce2d0d93678a' "
        f"generation='0' id='ID' ip='127.0.0.1' port='{port}' priority='2130706431' "
        "protocol='udp' type='host'/></transport></content></jingle></iq>"
    )


def session_accept(sid: str, senders: str = "", audio_payloads: str = "") -> str:
    """bob's session-accept of alice's audio+video call (video sent by alice only when
    ``senders='initiator'``)."""
    video_senders = f" senders='{senders}'" if senders else ""
    audio = audio_payloads or ("<payload-type id='96' name='opus' clockrate='48000' channels='2'/>")
    transport = (
        f"<transport xmlns='{ICE}' ufrag='bobU' pwd='bobPasswordForIce12345'>"
        f"<fingerprint xmlns='{DTLS}' hash='sha-256' setup='active'>{FP_BOB}</fingerprint>"
        "</transport>"
    )
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='session-accept' responder='{BOB}' sid='{sid}'>"
        f"<content creator='initiator' name='0'><description xmlns='{RTP}' media='audio'>"
        f"{audio}<rtcp-mux/></description>{transport}</content>"
        f"<content creator='initiator' name='1'{video_senders}>"
        f"<description xmlns='{RTP}' media='video'>"
        "<payload-type id='97' name='VP8' clockrate='90000'/><rtcp-mux/></description>"
        f"{transport}</content>"
        f"<group xmlns='{GROUP}' semantics='BUNDLE'><content name='0'/><content name='1'/>"
        "</group></jingle>",
        stanza_id="acc1",
    )


async def outgoing(host: Any, client: Any, stream: Any) -> tuple[str, Wired]:
    """alice calls bob; the session-initiate and the two candidates are acknowledged."""
    wire = Wired(stream)
    task = asyncio.ensure_future(
        host.plugins["XEP-0167"].call_start(client, JID(BOB), {"sdp": OFFER})
    )
    await wire.read()
    wire.ack()
    sid = await task
    await wire.read()
    for index in range(len(wire.raw)):
        wire.ack(index)
    await settle()
    return sid, wire


@aio
async def test_outgoing_call(tmp_path: Path) -> None:
    """alice calls bob from aiortc's audio+video offer: one content per m= line named after
    its mid, RTP descriptions with the payload types, ICE-UDP with the fingerprint and no
    candidate, the BUNDLE group; then each candidate in its own transport-info once the
    offer was acknowledged. bob's session-accept gives the frontend call_setup with an SDP
    answer whose media match, then bob's candidates with ice_candidates_new."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        wire = Wired(stream)
        task = asyncio.ensure_future(
            host.plugins["XEP-0167"].call_start(client, JID(BOB), {"sdp": OFFER})
        )
        (initiate,) = await wire.read()
        sid = initiate.split(" sid='")[1].split("'")[0]
        assert norm(initiate, sid).startswith(SESSION_INITIATE), norm(initiate, sid)
        assert norm(initiate, sid).endswith(
            f"<group xmlns='{GROUP}' semantics='BUNDLE'><content name='0'/>"
            "<content name='1'/></group></jingle></iq>"
        )
        assert "<candidate" not in initiate and "senders=" not in initiate
        assert initiate.count(f"<transport xmlns='{ICE}'") == 2
        assert not task.done()  # returns once acknowledged
        wire.ack()
        assert await task == sid
        infos = [norm(x, sid) for x in await wire.read()]
        assert infos == [candidate_info("0", 52746), candidate_info("1", 35918)]
        for index in range(2):
            wire.ack(index)
        assert not emitted(host, "call_setup")
        stream.receive(session_accept(sid, senders="initiator"))
        await settle()
        assert sent_now(stream) == [result_to()]
        ((setup_sid, setup_s, profile),) = emitted(host, "call_setup")
        assert setup_sid == sid and profile == "alice"
        setup = json.loads(setup_s)
        assert setup["role"] == "initiator"
        answer = sdp.parse(setup["sdp"])
        assert [(m.name, m.media) for m in answer.media] == [("0", "audio"), ("1", "video")]
        audio, video = answer.media
        assert [(p.id, p.name, p.clockrate, p.channels) for p in audio.payload_types] == [
            (96, "opus", 48000, 2)
        ]
        assert [p.name for p in video.payload_types] == ["VP8"] and video.rtcp_mux
        assert audio.transport.ufrag == "bobU" and audio.transport.pwd == "bobPasswordForIce12345"
        assert audio.transport.fingerprint is not None
        assert audio.transport.fingerprint.value == FP_BOB
        assert audio.transport.fingerprint.setup == "active"
        # the responder's view: it sends and receives audio, receives video only
        assert audio.direction == "sendrecv" and video.direction == "recvonly"
        assert answer.groups == [("BUNDLE", ["0", "1"])]
        # bob's candidates, relayed at once (the frontend has the answer)
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='transport-info' sid='{sid}'>"
                "<content creator='initiator' name='1'>"
                f"<transport xmlns='{ICE}' ufrag='bobU' pwd='bobPasswordForIce12345'>"
                "<candidate component='1' foundation='1' generation='0' id='c1' "
                "ip='192.0.2.7' port='41000' priority='2130706431' protocol='udp' "
                "type='host'/></transport></content></jingle>",
                stanza_id="ti1",
            )
        )
        await settle()
        ((_, candidates_s, _),) = emitted(host, "ice_candidates_new")
        candidates = json.loads(candidates_s)
        assert list(candidates) == ["1"] and candidates["1"]["ufrag"] == "bobU"
        assert candidates["1"]["candidates"][0]["address"] == "192.0.2.7"
        assert sent_now(stream) == [result_to()]
        # a hang-up of the active call: success
        _, sent = await wire.acked(host.plugins["XEP-0167"].call_end(client, sid, {}))
        (terminate,) = [norm(x, sid) for x in sent]
        assert terminate == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='SID'><reason><success/></reason></jingle></iq>"
        )
        ((_, ended_s, _),) = emitted(host, "call_ended")
        assert json.loads(ended_s) == {"reason": "success", "fallback": False}
    finally:
        await host.stop()


@aio
async def test_outgoing_call_refused_answers(tmp_path: Path) -> None:
    """A session-accept whose description is not RTP, or of another media, is refused
    (bad-request) and no call_setup is emitted."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        sid, _ = await outgoing(host, client, stream)
        stream.receive(session_accept(sid, audio_payloads="<payload-type name='opus'/>"))
        await settle()
        (error,) = sent_now(stream)
        assert "type='error'" in error and "<bad-request" in error
        assert not emitted(host, "call_setup")
        # the call is still pending: cancelling it says cancel
        _, (terminate,) = await Wired(stream).acked(host.plugins["XEP-0167"].call_end(client, sid))
        assert "<reason><cancel/></reason>" in terminate
    finally:
        await host.stop()


# --- incoming calls ----------------------------------------------------------------------


def incoming_offer(sid: str = "call1", video: bool = True, audio_desc: str = "") -> str:
    transport = (
        f"<transport xmlns='{ICE}' ufrag='bobU' pwd='bobPasswordForIce12345'>"
        f"<fingerprint xmlns='{DTLS}' hash='sha-256' setup='actpass'>{FP_BOB}</fingerprint>"
        "</transport>"
    )
    audio = audio_desc or (
        f"<description xmlns='{RTP}' media='audio'>"
        "<payload-type id='96' name='opus' clockrate='48000' channels='2'>"
        "<parameter name='useinbandfec' value='1'/></payload-type>"
        "<payload-type id='0' name='PCMU' clockrate='8000'/><rtcp-mux/></description>"
    )
    contents = f"<content creator='initiator' name='0'>{audio}{transport}</content>"
    if video:
        contents += (
            "<content creator='initiator' name='1'>"
            f"<description xmlns='{RTP}' media='video'>"
            "<payload-type id='97' name='VP8' clockrate='90000'>"
            f"<rtcp-fb xmlns='{FB}' type='nack' subtype='pli'/></payload-type>"
            "<payload-type id='98' name='rtx' clockrate='90000'>"
            "<parameter name='apt' value='97'/></payload-type><rtcp-mux/></description>"
            f"{transport}</content>"
        )
    group = "<content name='0'/><content name='1'/>" if video else "<content name='0'/>"
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' initiator='{BOB}' sid='{sid}'>"
        f"{contents}<group xmlns='{GROUP}' semantics='BUNDLE'>{group}</group></jingle>"
    )


RINGING = (
    f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' action='session-info' "
    f"sid='call1'><ringing xmlns='{INFO}'/></jingle></iq>"
)


async def incoming(host: Any, stream: Any, **kwargs: Any) -> tuple[dict[str, Any], str, Wired]:
    """bob calls alice: the offer is acknowledged, alice is asked, bob hears ringing."""
    stream.receive(incoming_offer(**kwargs))
    wire = Wired(stream)
    raw = await wire.read()
    assert [norm(x) for x in raw] == [result_to(), RINGING], raw
    wire.ack(1)
    ((data_s, action_id, _, profile),) = emitted(host, "action_new")
    assert profile == "alice"
    return json.loads(data_s), action_id, wire


@aio
async def test_incoming_call_accepted_with_sdp(tmp_path: Path) -> None:
    """bob calls: the user is asked with the offer as SDP (RTP descriptions included) and
    bob gets <ringing/>; the frontend accepts with its answer: session-accept with our RTP
    descriptions and ICE transports from it (video: senders initiator, as the answer only
    receives it), the BUNDLE group, then our candidates one per transport-info."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        data, action_id, wire = await incoming(host, stream)
        offer_sdp = data.pop("sdp")
        assert data == {
            "type": "call",
            "subtype": "video",
            "session_id": "call1",
            "from_jid": BOB,
            "in_roster": False,
            "media": ["audio", "video"],
            "message": "bob@localhost is calling you (video)",
        }
        offer = sdp.parse(offer_sdp)
        audio, video = offer.media
        assert (audio.name, audio.media, video.name, video.media) == ("0", "audio", "1", "video")
        assert [(p.id, p.name) for p in audio.payload_types] == [(96, "opus"), (0, "PCMU")]
        assert audio.payload_types[0].parameters == {"useinbandfec": "1"}
        assert video.payload_types[0].feedback == [("nack", "pli")]
        assert video.payload_types[1].parameters == {"apt": "97"}
        assert audio.transport.ufrag == "bobU" and audio.transport.fingerprint is not None
        assert audio.direction == "sendrecv" and offer.groups == [("BUNDLE", ["0", "1"])]
        host.actions.launch("alice", action_id, {"accept": True, "sdp": ANSWER})
        (accept,) = [norm(x) for x in await wire.read()]
        transport = (
            f"<transport xmlns='{ICE}' ufrag='B0bU' pwd='b0bPassw0rdForIce1234x'>"
            f"<fingerprint xmlns='{DTLS}' hash='sha-256' setup='active'>"
            "11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:"
            "CC:DD:EE:FF:00</fingerprint></transport>"
        )
        assert accept == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            f"action='session-accept' responder='{ALICE}' sid='call1'>"
            "<content creator='initiator' name='0'>"
            f"<description xmlns='{RTP}' media='audio' ssrc='1122334455'>"
            "<payload-type id='96' name='opus' clockrate='48000' channels='2'/>"
            "<payload-type id='0' name='PCMU' clockrate='8000'/><rtcp-mux/>"
            f"<rtp-hdrext xmlns='{HDREXT}' id='1' uri='urn:ietf:params:rtp-hdrext:sdes:mid'/>"
            f"<source xmlns='{SSMA}' ssrc='1122334455'><parameter name='cname' "
            f"value='bob-cname'/></source></description>{transport}</content>"
            "<content creator='initiator' name='1' senders='initiator'>"
            f"<description xmlns='{RTP}' media='video'>"
            "<payload-type id='97' name='VP8' clockrate='90000'>"
            f"<rtcp-fb xmlns='{FB}' type='nack'/><rtcp-fb xmlns='{FB}' type='nack' "
            "subtype='pli'/></payload-type><payload-type id='98' name='rtx' "
            "clockrate='90000'><parameter name='apt' value='97'/></payload-type><rtcp-mux/>"
            f"<rtp-hdrext xmlns='{HDREXT}' id='1' uri='urn:ietf:params:rtp-hdrext:sdes:mid'/>"
            f"</description>{transport}</content>"
            f"<group xmlns='{GROUP}' semantics='BUNDLE'><content name='0'/><content name='1'/>"
            "</group></jingle></iq>"
        )
        wire.ack()
        infos = [norm(x) for x in await wire.read()]
        assert len(infos) == 2
        assert all("action='transport-info'" in x and x.count("<candidate ") == 1 for x in infos)
        assert "port='41234'" in infos[0] and "ufrag='B0bU'" in infos[0]
        assert not emitted(host, "call_setup")  # the responder's frontend has everything
        # bob hangs up
        stream.receive(session_terminate("call1"))
        await settle()
        ((sid, ended_s, _),) = emitted(host, "call_ended")
        assert sid == "call1" and json.loads(ended_s)["reason"] == "success"
    finally:
        await host.stop()


@aio
async def test_incoming_call_answer_sdp_later(tmp_path: Path) -> None:
    """The user accepts without SDP (an audio-only call): nothing is sent until
    call_answer_sdp brings the answer; a bad answer is refused and the call still waits."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    try:
        data, action_id, wire = await incoming(host, stream, video=False)
        assert data["subtype"] == "audio" and data["media"] == ["audio"]
        assert "is calling you (audio)" in data["message"]
        with pytest.raises(InvalidInput, match="not waiting"):
            plugin.answer_sdp(client, "call1", ANSWER)  # not accepted yet
        host.actions.launch("alice", action_id, {"accept": True})
        assert await wire.read() == []
        for bad, match in (
            ("v=0\r\nm=foo 9 X 0\r\n", "invalid SDP"),
            (ANSWER.replace("a=ice-ufrag:B0bU\n", "").replace("a=ice-pwd:", "a=x:"), "ufrag"),
            (ANSWER.replace("m=audio", "m=video", 1), "no audio media"),
            (42, "must be a string"),
        ):
            with pytest.raises(InvalidInput, match=match):
                plugin.answer_sdp(client, "call1", bad)
        assert await wire.read() == []
        with pytest.raises(NotFound):
            plugin.answer_sdp(client, "nope", ANSWER)
        call_answer_sdp = host.bridge.methods["call_answer_sdp"]
        assert await call_answer_sdp("call1", ANSWER, "alice") == "{}"
        (accept,) = [norm(x) for x in await wire.read()]
        assert "action='session-accept'" in accept and accept.count("<content ") == 2
        assert f"<description xmlns='{RTP}' media='audio' ssrc='1122334455'>" in accept
        assert "name='1'" not in accept.split("<group")[0]  # the answer's video is not ours
        with pytest.raises(InvalidInput, match="not waiting"):
            plugin.answer_sdp(client, "call1", ANSWER)
    finally:
        await host.stop()


@aio
async def test_incoming_call_declined(tmp_path: Path) -> None:
    host, client, stream, _ = await host_for(tmp_path)
    try:
        _, action_id, wire = await incoming(host, stream)
        host.actions.launch("alice", action_id, {"accept": False})
        (terminate,) = [norm(x) for x in await wire.read()]
        assert terminate == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='call1'><reason><decline/></reason></jingle></iq>"
        )
        ((_, ended_s, _),) = emitted(host, "call_ended")
        assert json.loads(ended_s)["reason"] == "decline"
    finally:
        await host.stop()


@aio
async def test_incoming_call_bad_answer_fails(tmp_path: Path) -> None:
    host, client, stream, _ = await host_for(tmp_path)
    try:
        _, action_id, wire = await incoming(host, stream)
        host.actions.launch("alice", action_id, {"accept": True, "sdp": "garbage"})
        (terminate,) = [no_text(norm(x)) for x in await wire.read()]
        assert "<reason><failed-application/>" in terminate
    finally:
        await host.stop()


@aio
async def test_call_end_in_each_state(tmp_path: Path) -> None:
    """call_end: cancel for our unanswered call, decline for an unanswered incoming one (the
    question to the user is withdrawn), a given reason, errors for bad input."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    call_end = host.bridge.methods["call_end"]
    try:
        _, action_id, wire = await incoming(host, stream)
        result, (terminate,) = await wire.acked(call_end("call1", "", "alice"))
        assert result == "{}"
        assert "<reason><decline/></reason>" in terminate
        ((update_id, update_s, _),) = emitted(host, "action_update")
        assert update_id == action_id and json.loads(update_s)["status"] == "cancelled"
        assert not host.actions.pending("alice")
        with pytest.raises(NotFound):
            await call_end("call1", "", "alice")  # over
        sid, wire = await outgoing(host, client, stream)
        with pytest.raises(InvalidInput, match="reason"):
            await call_end(sid, json.dumps({"reason": "whatever"}), "alice")
        with pytest.raises(InvalidInput, match="JSON"):
            await call_end(sid, "{", "alice")
        with pytest.raises(InvalidInput, match="object"):
            await call_end(sid, "[]", "alice")
        _, sent = await wire.acked(
            call_end(sid, json.dumps({"reason": "busy", "text": "in a meeting"}), "alice")
        )
        (terminate,) = [norm(x, sid) for x in sent]
        assert terminate == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='SID'><reason><busy/>"
            "<text>in a meeting</text></reason></jingle></iq>"
        )
        sid, wire = await outgoing(host, client, stream)
        _, (terminate,) = await wire.acked(plugin.call_end(client, sid))
        assert "<reason><cancel/></reason>" in terminate
        with pytest.raises(NotFound):
            await plugin.call_end(client, "unknown")
    finally:
        await host.stop()


@aio
async def test_call_info_both_ways(tmp_path: Path) -> None:
    """Our session-infos (mute of one content, of all, hold...) and the peer's, reported
    with the call_info signal; unknown payloads of the info namespace are refused."""
    host, client, stream, _ = await host_for(tmp_path)
    call_info = host.bridge.methods["call_info"]
    try:
        sid, wire = await outgoing(host, client, stream)
        stream.receive(session_accept(sid))
        await settle()
        stream.sent()

        def info(payload: str) -> str:
            return (
                f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
                f"action='session-info' sid='SID'>{payload}</jingle></iq>"
            )

        for info_type, extra, payload in (
            ("mute", {"name": "0"}, f"<mute xmlns='{INFO}' creator='initiator' name='0'/>"),
            ("unmute", {}, f"<unmute xmlns='{INFO}' creator='initiator'/>"),
            ("hold", {}, f"<hold xmlns='{INFO}'/>"),
            ("unhold", None, f"<unhold xmlns='{INFO}'/>"),
            ("active", {}, f"<active xmlns='{INFO}'/>"),
        ):
            task = asyncio.ensure_future(
                call_info(sid, info_type, json.dumps(extra) if extra is not None else "", "alice")
            )
            (sent,) = await wire.read()
            assert norm(sent, sid) == info(payload)
            wire.ack()
            assert await task == "{}"
        for info_type, extra, error in (
            ("dance", {}, InvalidInput),
            ("mute", {"name": "9"}, NotFound),
            ("mute", {"name": "0", "creator": "responder"}, NotFound),
            ("mute", {"creator": "nobody"}, InvalidInput),
            ("hold", {"name": "0"}, InvalidInput),
        ):
            with pytest.raises(error):
                await call_info(sid, info_type, json.dumps(extra), "alice")
        with pytest.raises(NotFound):
            await call_info("nope", "hold", "", "alice")
        assert await wire.read() == []
        # the peer's
        for index, payload in enumerate(
            (
                f"<mute xmlns='{INFO}' creator='initiator' name='1'/>",
                f"<hold xmlns='{INFO}'/>",
                f"<active xmlns='{INFO}'/>",
            )
        ):
            stream.receive(
                jingle_iq(
                    f"<jingle xmlns='{NS_JINGLE}' action='session-info' sid='{sid}'>"
                    f"{payload}</jingle>",
                    stanza_id=f"i{index}",
                )
            )
        await settle()
        assert [(s, t, json.loads(e), p) for s, t, e, p in emitted(host, "call_info")] == [
            (sid, "mute", {"creator": "initiator", "name": "1"}, "alice"),
            (sid, "hold", {}, "alice"),
            (sid, "active", {}, "alice"),
        ]
        assert sent_now(stream) == [result_to()] * 3
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-info' sid='{sid}'>"
                f"<dance xmlns='{INFO}'/></jingle>",
                stanza_id="bad",
            )
        )
        await settle()
        (error,) = [no_text(x) for x in sent_now(stream)]
        assert error == error_to("feature-not-implemented", "unsupported-info", "cancel")
    finally:
        await host.stop()


@aio
async def test_ringing_from_the_peer(tmp_path: Path) -> None:
    host, client, stream, _ = await host_for(tmp_path)
    try:
        sid, _ = await outgoing(host, client, stream)
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-info' sid='{sid}'>"
                f"<ringing xmlns='{INFO}'/></jingle>"
            )
        )
        await settle()
        assert emitted(host, "call_info") == [(sid, "ringing", "{}", "alice")]
    finally:
        await host.stop()


def test_plugin_info() -> None:
    from libervia.backend.plugins import plugin_xep_0167

    info = plugin_xep_0167.PLUGIN_INFO
    assert info["import_name"] == "XEP-0167"
    assert info["dependencies"] == ["XEP-0166", "XEP-0176", "XEP-0030"]
    assert info["recommendations"] == ["XEP-0353"]


@aio
async def test_disco_features(tmp_path: Path) -> None:
    host, client, stream, _ = await host_for(tmp_path)
    try:
        _, features = host.plugins["XEP-0030"].own_infos()
        assert {
            "urn:xmpp:jingle:apps:rtp:1",
            "urn:xmpp:jingle:apps:rtp:audio",
            "urn:xmpp:jingle:apps:rtp:video",
        } <= set(features)
    finally:
        await host.stop()


# --- hostile input -----------------------------------------------------------------------


@aio
async def test_call_start_bad_input(tmp_path: Path) -> None:
    """Bad offers are refused with a clear InvalidInput and nothing is sent."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    call_start = host.bridge.methods["call_start"]
    full = (DATA / "aiortc_av_offer.sdp").read_text()
    try:
        for call_data, match in (
            ({"sdp": full}, "m=application"),
            ({"sdp": "not an sdp"}, "invalid SDP"),
            ({}, "call_data"),
            ({"sdp": 3}, "call_data"),
            ({"sdp": OFFER.replace("a=fingerprint", "a=x-fingerprint")}, "fingerprint"),
            ({"sdp": OFFER.replace("a=ice-ufrag:txfY\n", "")}, "ufrag"),
            ({"sdp": "v=0\r\ns=-\r\n"}, "no audio or video"),
        ):
            with pytest.raises(InvalidInput, match=match):
                await plugin.call_start(client, JID(BOB), call_data)
        with pytest.raises(InvalidInput, match="JSON"):
            await call_start(BOB, "{nope", "alice")
        with pytest.raises(InvalidInput, match="entity"):
            await call_start("", json.dumps({"sdp": OFFER}), "alice")
        with pytest.raises(NotFound, match="no available device"):
            await call_start("bob@localhost", json.dumps({"sdp": OFFER, "jmi": False}), "alice")
        for call_data, match in (
            ({"sdp": OFFER, "jmi": "yes"}, "jmi must be a boolean"),
            ({"sdp": OFFER, "jmi": True}, "give a bare JID"),
        ):
            with pytest.raises(InvalidInput, match=match):
                await plugin.call_start(client, JID(BOB), call_data)
        assert sent_now(stream) == []
    finally:
        await host.stop()


@aio
async def test_bare_jid_resolved(tmp_path: Path) -> None:
    """Without Jingle Message Initiation (``"jmi": false``), a bare JID is called on its best
    available device."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        stream.receive(f"<presence from='{BOB}' to='{ALICE}'><priority>5</priority></presence>")
        stream.receive(f"<presence from='bob@localhost/tv' to='{ALICE}'/>")
        call_data = json.dumps({"sdp": OFFER, "jmi": False})
        task = asyncio.ensure_future(
            host.bridge.methods["call_start"]("bob@localhost", call_data, "alice")
        )
        wire = Wired(stream)
        (initiate,) = await wire.read()
        assert f" to='{BOB}'" in initiate
        wire.ack()
        assert await task
    finally:
        await host.stop()


@aio
async def test_hostile_incoming_offers(tmp_path: Path) -> None:
    """Malformed RTP descriptions are refused before the ack (bad-request); nobody is
    asked."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        for index, description in enumerate(
            (
                f"<description xmlns='{RTP}' media='audio'/>",  # no payload type
                f"<description xmlns='{RTP}' media='text'><payload-type id='1'/></description>",
                f"<description xmlns='{RTP}' media='audio'><payload-type id='300'/></description>",
                f"<description xmlns='{RTP}' media='audio'><payload-type id='1' "
                "clockrate='fast'/></description>",
            )
        ):
            stream.receive(incoming_offer(f"bad{index}", video=False, audio_desc=description))
            await settle()
            (error,) = [no_text(x) for x in sent_now(stream)]
            assert error == error_to("bad-request", None, "modify")
        assert not emitted(host, "action_new")
    finally:
        await host.stop()


# --- two hosts ---------------------------------------------------------------------------


async def call_hosts(tmp_path: Path) -> tuple[Any, Any, Any, Any, Wire]:
    """alice's and bob's hosts (ICE-UDP only), wired to each other: (alice's host, her
    client, bob's host, his client, the wire)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ha, ca, sa, _ = await jingle_host(tmp_path / "a", transports=(ICE,))
    hb, cb, sb, _ = await jingle_host(tmp_path / "b", "bob", BOB, transports=(ICE,))
    return ha, ca, hb, cb, Wire((ALICE, sa), (BOB, sb))


@aio
async def test_call_between_two_hosts(tmp_path: Path) -> None:
    """alice calls bob: bob's frontend gets the offer (RTP payloads included), answers;
    alice's gets call_setup with bob's answer, and each the other's candidates."""
    ha, ca, hb, cb, wire = await call_hosts(tmp_path)
    try:
        task = asyncio.ensure_future(
            ha.plugins["XEP-0167"].call_start(ca, JID(BOB), {"sdp": OFFER})
        )
        await until(lambda: emitted(hb, "action_new"), "bob asked", wire.pump)
        sid = await task
        ((data_s, action_id, _, _),) = emitted(hb, "action_new")
        data = json.loads(data_s)
        assert data["session_id"] == sid and data["from_jid"] == ALICE
        offer = sdp.parse(data["sdp"])
        assert [len(m.payload_types) for m in offer.media] == [4, 6]
        assert offer.media[1].source_groups[0].semantics == "FID"
        await until(lambda: emitted(ha, "call_info"), "alice hears ringing", wire.pump)
        hb.actions.launch("bob", action_id, {"accept": True, "sdp": ANSWER})
        await until(lambda: emitted(ha, "call_setup"), "alice set up", wire.pump)
        await until(
            lambda: emitted(ha, "ice_candidates_new") and emitted(hb, "ice_candidates_new"),
            "candidates relayed",
            wire.pump,
        )
        ((_, setup_s, _),) = emitted(ha, "call_setup")
        answer = sdp.parse(json.loads(setup_s)["sdp"])
        assert [m.media for m in answer.media] == ["audio", "video"]
        assert answer.media[1].direction == "recvonly"
        assert answer.media[0].transport.ufrag == "B0bU"
        ending = asyncio.ensure_future(ha.plugins["XEP-0167"].call_end(ca, sid))
        await until(lambda: emitted(hb, "call_ended"), "bob told", wire.pump)
        await until(ending.done, "acknowledged", wire.pump)
        assert json.loads(emitted(hb, "call_ended")[0][1])["reason"] == "success"
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_call_ended_while_waiting_for_the_answer_sdp(tmp_path: Path) -> None:
    """The user accepted without SDP, then hangs up before answering: decline, and the
    answer that comes too late is refused (the call is gone)."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    try:
        _, action_id, wire = await incoming(host, stream)
        host.actions.launch("alice", action_id, {"accept": True})
        assert await wire.read() == []
        _, (terminate,) = await wire.acked(plugin.call_end(client, "call1"))
        assert "<reason><decline/></reason>" in terminate
        with pytest.raises(NotFound):
            plugin.answer_sdp(client, "call1", ANSWER)
        assert await wire.read() == []
    finally:
        await host.stop()


@aio
async def test_peer_cancels_while_the_user_is_asked(tmp_path: Path) -> None:
    """The caller gives up before the user answers: the question is withdrawn."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        _, action_id, wire = await incoming(host, stream)
        stream.receive(session_terminate("call1", "cancel"))
        assert [norm(x) for x in await wire.read()] == [result_to()]
        ((update_id, update_s, _),) = emitted(host, "action_update")
        assert update_id == action_id and json.loads(update_s)["status"] == "cancelled"
        ((_, ended_s, _),) = emitted(host, "call_ended")
        assert json.loads(ended_s)["reason"] == "cancel"
    finally:
        await host.stop()


@aio
async def test_rtp_over_another_transport_is_refused(tmp_path: Path) -> None:
    """An RTP content offered over IBB cannot be a call here: unsupported-transports."""
    ibb = "urn:xmpp:jingle:transports:ibb:1"
    host, client, stream, _ = await jingle_host(tmp_path, transports=(ICE, ibb))
    try:
        offer_xml = incoming_offer(video=False)
        start = offer_xml.index(f"<transport xmlns='{ICE}'")
        end = offer_xml.index("</transport>") + len("</transport>")
        offer_xml = (
            offer_xml[:start]
            + f"<transport xmlns='{ibb}' block-size='4096' sid='i1'/>"
            + offer_xml[end:]
        )
        stream.receive(offer_xml)
        wire = Wired(stream)
        ack_xml, terminate = [no_text(norm(x)) for x in await wire.read()]
        assert ack_xml == result_to()
        assert "<reason><unsupported-transports/>" in terminate
        assert not emitted(host, "action_new")
    finally:
        await host.stop()
