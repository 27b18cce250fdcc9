"""Calls to a bare JID ring every device of the callee (XEP-0353 Jingle Message Initiation):
the propose (literal XML), ringing surfaced with ``call_info``, the session-initiate to the
device that proceeds with the propose's id as sid, reject / timeout / hang-up before any
answer ending the call with ``call_ended``, and two wired hosts calling each other. The
clock is driven by hand: nothing sleeps."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.plugins.plugin_xep_0166 import Role
from libervia.backend.plugins.plugin_xep_0353 import NS_JMI, ProposalState
from libervia.backend.tools.webrtc import sdp
from tests.conftest import aio
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    NS_JINGLE,
    result_to,
    session_terminate,
)
from tests.unit.jingle.test_file_transfer import emitted, until
from tests.unit.webrtc.test_calls import (
    ANSWER,
    OFFER,
    RTP,
    SESSION_INITIATE,
    Wired,
    call_hosts,
    candidate_info,
    host_for,
    norm,
    session_accept,
    settle,
)

BOB_BARE = "bob@localhost"
BOB_LAPTOP = "bob@localhost/laptop"
STORE = "<store xmlns='urn:xmpp:hints'/>"
#: aiortc's offer without its video
AUDIO_OFFER = OFFER.split("m=video")[0]


def propose_xml(media: tuple[str, ...] = ("audio", "video")) -> str:
    """Our propose, literally (the sid replaced by ``SID``)."""
    descriptions = "".join(f"<description xmlns='{RTP}' media='{m}'/>" for m in media)
    return (
        f"<message to='{BOB_BARE}' type='chat' id='jm-propose-SID'>"
        f"<propose xmlns='{NS_JMI}' id='SID'>{descriptions}</propose>{STORE}</message>"
    )


def jmi_out(to: str, name: str, condition: str) -> str:
    """One of our JMI messages with a reason, literally (the sid replaced by ``SID``)."""
    return (
        f"<message to='{to}' type='chat' id='jm-{name}-SID'><{name} xmlns='{NS_JMI}' id='SID'>"
        f"<reason xmlns='{NS_JINGLE}'><{condition}/></reason></{name}>{STORE}</message>"
    )


def jmi_in(sender: str, name: str, sid: str, inner: str = "") -> str:
    return (
        f"<message from='{sender}' to='{ALICE}' type='chat'>"
        f"<{name} xmlns='{NS_JMI}' id='{sid}'>{inner}</{name}>{STORE}</message>"
    )


#: our presence, directed to the callee who does not share ours (XEP-0353), with our caps
DIRECTED_PRESENCE = re.compile(
    rf"<presence to='{BOB_BARE}'><c xmlns='http://jabber\.org/protocol/caps' hash='sha-1' "
    r"node='https://libervia\.org/' ver='[^']+'/></presence>"
)


def sent(stream: Any, sid: str) -> list[str]:
    """What we sent (server requests aside), ids and the sid normalised."""
    return [norm(x, sid) for x in stream.sent_xml() if " to='localhost'" not in x]


def ended(host: Any) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data, _ in emitted(host, "call_ended")]


async def proposed(host: Any, client: Any, stream: Any, offer: str = OFFER) -> str:
    """alice calls bob's bare JID: call_start returns the propose's id at once."""
    sid = await host.plugins["XEP-0167"].call_start(client, JID(BOB_BARE), {"sdp": offer})
    await settle()
    return sid


@aio
async def test_propose_then_session_initiate_to_the_device_that_proceeds(tmp_path: Path) -> None:
    """The propose goes to the bare JID, one RTP description per media kind (audio, video),
    call_start returning its id (nothing to acknowledge). Each ringing device is reported
    once with call_info; a candidate the frontend trickles meanwhile is kept. bob's phone
    proceeds: the session-initiate goes there with the same sid, then the candidates (the
    offer's and the trickled one); the answer gives call_setup; when the call ends a
    <finish/> goes to the phone."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        sid = await proposed(host, client, stream)
        propose, presence = sent(stream, sid)
        assert propose == propose_xml() and DIRECTED_PRESENCE.fullmatch(presence)
        assert len(sid) == 36 and sid.count("-") == 4  # a UUID (XEP-0353 recommends v4)
        # the frontend trickles a candidate before any device answered: kept
        await host.plugins["XEP-0176"].add_candidates(
            client,
            sid,
            {
                "1": {
                    "candidates": [
                        {
                            "foundation": "2",
                            "component_id": 1,
                            "transport": "udp",
                            "priority": 1694498815,
                            "address": "203.0.113.9",
                            "port": 35919,
                            "type": "srflx",
                            "rel_addr": "127.0.0.1",
                            "rel_port": 35918,
                        }
                    ]
                }
            },
        )
        stream.receive(jmi_in(BOB_LAPTOP, "ringing", sid))
        stream.receive(jmi_in(BOB, "ringing", sid))
        stream.receive(jmi_in(BOB, "ringing", sid))  # said twice: reported once
        await settle()
        assert emitted(host, "call_info") == [
            (sid, "ringing", json.dumps({"from_jid": BOB_LAPTOP}), "alice"),
            (sid, "ringing", json.dumps({"from_jid": BOB}), "alice"),
        ]
        assert sent(stream, sid) == []
        with pytest.raises(InvalidInput, match="not answered"):
            await host.plugins["XEP-0167"].call_info(client, sid, "mute")
        stream.receive(jmi_in(BOB, "proceed", sid))
        wire = Wired(stream)
        (initiate,) = await wire.read()
        assert norm(initiate, sid).startswith(SESSION_INITIATE), norm(initiate, sid)
        assert f" to='{BOB}'" in initiate and f" sid='{sid}'" in initiate
        wire.ack()
        infos = [norm(x, sid) for x in await wire.read()]
        assert infos == [candidate_info("0", 52746), candidate_info("1", 35918)]
        for index in range(2):
            wire.ack(index)
        # the trickled one follows the offer's candidate of its content, once acknowledged
        (trickled,) = await wire.read()
        assert f" sid='{sid}'" in trickled and "<content creator='initiator' name='1'>" in trickled
        assert "ip='203.0.113.9'" in trickled and "type='srflx'" in trickled
        wire.ack()
        # a late proceed of the laptop changes nothing
        stream.receive(jmi_in(BOB_LAPTOP, "proceed", sid))
        stream.receive(session_accept(sid))
        await settle()
        assert sent(stream, sid) == [result_to()]
        ((setup_sid, setup_s, _),) = emitted(host, "call_setup")
        assert setup_sid == sid
        assert [m.media for m in sdp.parse(json.loads(setup_s)["sdp"]).media] == [
            "audio",
            "video",
        ]
        stream.receive(session_terminate(sid))
        await settle()
        assert sent(stream, sid) == [result_to(), jmi_out(BOB, "finish", "success")]
        assert ended(host) == [{"reason": "success", "fallback": False}]
    finally:
        await host.stop()


@aio
async def test_audio_only_call_proposes_audio(tmp_path: Path) -> None:
    host, client, stream, _ = await host_for(tmp_path)
    try:
        sid = await proposed(host, client, stream, AUDIO_OFFER)
        propose, presence = sent(stream, sid)
        assert propose == propose_xml(("audio",)) and DIRECTED_PRESENCE.fullmatch(presence)
    finally:
        await host.stop()


@aio
async def test_reject_ends_the_call_with_its_reason(tmp_path: Path) -> None:
    """A device rejects (busy): call_ended with busy and the text, no session-initiate; the
    call is gone. A reject without reason (Conversations sends an RTP description instead)
    ends it with decline."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    try:
        sid = await proposed(host, client, stream)
        stream.sent()
        stream.receive(jmi_in(BOB, "reject", sid, f"<reason xmlns='{NS_JINGLE}'><busy/></reason>"))
        await settle()
        assert ended(host) == [
            {"reason": "busy", "fallback": False, "text": "bob@localhost declined (busy)"}
        ]
        assert emitted(host, "call_ended")[0][0] == sid
        assert sent(stream, sid) == []
        with pytest.raises(NotFound):
            await plugin.call_end(client, sid)
        other = await proposed(host, client, stream)
        stream.sent()
        stream.receive(jmi_in(BOB, "reject", other, f"<description xmlns='{RTP}'/>"))
        await settle()
        assert ended(host)[1]["reason"] == "decline"
        assert sent(stream, other) == []
    finally:
        await host.stop()


@aio
async def test_no_answer_retracts_and_ends_with_timeout(tmp_path: Path) -> None:
    """Nobody answers within call_ring_timeout (60 s, not the 300 s of other proposals):
    <retract/> with <timeout/> to the bare JID, call_ended timeout."""
    host, client, stream, reactor = await host_for(tmp_path)
    try:
        sid = await proposed(host, client, stream)
        stream.sent()
        reactor.advance(59)
        await settle()
        assert sent(stream, sid) == [] and not ended(host)
        reactor.advance(1)
        await settle()
        assert sent(stream, sid) == [jmi_out(BOB_BARE, "retract", "timeout")]
        ((ended_sid, data_s, _),) = emitted(host, "call_ended")
        assert ended_sid == sid and json.loads(data_s)["reason"] == "timeout"
    finally:
        await host.stop()


@aio
async def test_hang_up_before_any_answer_retracts(tmp_path: Path) -> None:
    """call_end before any device proceeded: <retract/> with <cancel/> to the bare JID,
    call_ended cancel; a proceed arriving later starts nothing."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    try:
        sid = await proposed(host, client, stream)
        stream.sent()
        await plugin.call_end(client, sid, {})
        await settle()
        assert sent(stream, sid) == [jmi_out(BOB_BARE, "retract", "cancel")]
        assert ended(host) == [{"reason": "cancel", "fallback": False}]
        stream.receive(jmi_in(BOB, "proceed", sid))
        await settle()
        assert sent(stream, sid) == [] and len(ended(host)) == 1
        with pytest.raises(NotFound):
            await host.plugins["XEP-0176"].add_candidates(client, sid, {"0": {}})
    finally:
        await host.stop()


@aio
async def test_hang_up_as_a_device_proceeds(tmp_path: Path) -> None:
    """The proceed was read but the session not sent yet when the user hangs up: no
    session-initiate, a <finish/> tells the device that proceeded."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    try:
        sid = await proposed(host, client, stream)
        stream.sent()
        stream.receive(jmi_in(BOB, "proceed", sid))
        jmi = host.plugins["XEP-0353"]
        proposal = jmi.get_proposal(client, Role.INITIATOR, JID(BOB_BARE), sid)
        for _ in range(100):  # until the proceed is read (the waiting task not resumed yet)
            if proposal.state is ProposalState.PROCEEDED:
                break
            await asyncio.sleep(0)
        assert proposal.state is ProposalState.PROCEEDED
        await plugin.call_end(client, sid, {"reason": "decline"})
        await settle()
        assert sent(stream, sid) == [jmi_out(BOB, "finish", "decline")]
        assert ended(host) == [{"reason": "decline", "fallback": False}]
    finally:
        await host.stop()


@aio
async def test_undeliverable_propose_ends_the_call(tmp_path: Path) -> None:
    """The propose bounces (no device of the callee reachable): call_ended
    connectivity-error with the condition in the text."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        sid = await proposed(host, client, stream)
        stream.sent()
        stream.receive(
            f"<message from='{BOB_BARE}' to='{ALICE}' type='error' id='jm-propose-{sid}'>"
            "<error type='cancel'><service-unavailable "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
        await settle()
        ((data,),) = [[d] for d in ended(host)]
        assert data["reason"] == "connectivity-error" and "service-unavailable" in data["text"]
    finally:
        await host.stop()


@aio
async def test_full_jid_or_jmi_false_calls_directly(tmp_path: Path) -> None:
    """A full JID gets the session-initiate at once (no propose), as does a bare JID with
    ``"jmi": false`` (its best available device)."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    try:
        stream.receive(f"<presence from='{BOB_LAPTOP}' to='{ALICE}'/>")
        await settle()
        for peer, call_data in (
            (BOB, {"sdp": OFFER}),
            (BOB_BARE, {"sdp": OFFER, "jmi": False}),
        ):
            wire = Wired(stream)
            task = asyncio.ensure_future(plugin.call_start(client, JID(peer), call_data))
            (initiate,) = await wire.read()
            assert initiate.startswith("<iq type='set'") and "session-initiate" in initiate
            assert f" to='{BOB if peer == BOB else BOB_LAPTOP}'" in initiate
            wire.ack()
            await task
            await wire.read()
            for index in range(len(wire.raw)):
                wire.ack(index)
        assert "<propose" not in "".join(stream.sent_xml())
    finally:
        await host.stop()


# --- two hosts ---------------------------------------------------------------------------


@aio
async def test_jmi_call_between_two_hosts(tmp_path: Path) -> None:
    """alice calls bob's bare JID: bob is asked about the proposal; he accepts, his daemon
    proceeds; alice's daemon sends the session-initiate to
    bob's device with the propose's id; bob's frontend gets the offer, answers; alice gets
    call_setup. alice hangs up: both get call_ended success and each side sent its
    <finish/>."""
    ha, ca, hb, cb, wire = await call_hosts(tmp_path)
    try:
        sid = await ha.plugins["XEP-0167"].call_start(ca, JID(BOB_BARE), {"sdp": OFFER})
        await until(lambda: emitted(hb, "action_new"), "bob asked", wire.pump)
        ((proposal_s, proposal_id, _, _),) = emitted(hb, "action_new")
        proposal = json.loads(proposal_s)
        assert proposal["session_id"] == sid and proposal["subtype"] == "jingle_message"
        assert proposal["type"] == "call" and proposal["media"] == ["audio", "video"]
        assert proposal["message"] == f"{ALICE.split('/')[0]} is calling you (video)"
        hb.actions.launch("bob", proposal_id, {"accept": True})
        await until(lambda: len(emitted(hb, "action_new")) == 2, "bob's offer", wire.pump)
        data_s, action_id, _, _ = emitted(hb, "action_new")[1]
        data = json.loads(data_s)
        assert data["type"] == "call" and data["session_id"] == sid
        assert data["from_jid"] == ALICE and data["subtype"] == "video"
        # accepted during the proposal: the frontend answers the offer without asking again
        assert data["pre_accepted"] is True
        assert [m.media for m in sdp.parse(data["sdp"]).media] == ["audio", "video"]
        hb.actions.launch("bob", action_id, {"accept": True, "sdp": ANSWER})
        await until(lambda: emitted(ha, "call_setup"), "alice set up", wire.pump)
        assert emitted(ha, "call_setup")[0][0] == sid
        ending = asyncio.ensure_future(ha.plugins["XEP-0167"].call_end(ca, sid))
        await until(lambda: emitted(hb, "call_ended"), "bob told", wire.pump)
        await until(ending.done, "acknowledged", wire.pump)
        await until(
            lambda: sum(f"<finish xmlns='{NS_JMI}' id='{sid}'" in x for x in wire.log) == 2,
            "both finished",
            wire.pump,
        )
        assert [json.loads(d)["reason"] for _, d, _ in emitted(hb, "call_ended")] == ["success"]
        assert [json.loads(d)["reason"] for _, d, _ in emitted(ha, "call_ended")] == ["success"]
        proposes = [x for x in wire.log if "<propose " in x]
        assert len(proposes) == 1 and f"to='{BOB_BARE}'" in proposes[0]
        initiates = [x for x in wire.log if "session-initiate" in x]
        assert len(initiates) == 1 and f"to='{BOB}'" in initiates[0]
        assert f"sid='{sid}'" in initiates[0]
        # nothing rings once the callee accepted (no ringing session-info after proceed)
        assert not emitted(ha, "call_info") and not any("<ringing" in x for x in wire.log)
    finally:
        await ha.stop()
        await hb.stop()


def test_a_call_session_matches_its_proposal() -> None:
    """The responder side (``take_accepted``): a session-initiate with full RTP descriptions
    matches a propose of the same media kinds (only ``media`` is proposed)."""
    from libervia.backend.plugins.plugin_xep_0353 import descriptions_match
    from libervia.backend.tools import xml as xml_tools

    def element(media: str, inner: str = "") -> Any:
        return xml_tools.parse(f"<description xmlns='{RTP}' media='{media}'>{inner}</description>")

    opus = "<payload-type id='96' name='opus' clockrate='48000' channels='2'/>"
    vp8 = "<payload-type id='97' name='VP8' clockrate='90000'/>"
    proposed = [element("audio"), element("video")]
    assert descriptions_match(proposed, [element("video", vp8), element("audio", opus)])
    assert not descriptions_match(proposed, [element("audio", opus)])
    assert not descriptions_match([element("audio")], [element("video", vp8)])


@aio
async def test_disconnection_ends_the_proposed_call(tmp_path: Path) -> None:
    """The profile disconnects while the call is proposed: call_ended connectivity-error,
    nothing left of the call."""
    host, client, stream, _ = await host_for(tmp_path)
    plugin = host.plugins["XEP-0167"]
    try:
        sid = await proposed(host, client, stream)
        host.plugins["XEP-0353"].profile_disconnected(client)
        await settle()
        assert [d["reason"] for d in ended(host)] == ["connectivity-error"]
        assert plugin.proposed(client) == {} and host.plugins["XEP-0176"].prepared(client) == {}
        with pytest.raises(NotFound):
            await plugin.call_end(client, sid)
    finally:
        await host.stop()


@aio
async def test_tie_break_lost_to_the_callee_calling_us(tmp_path: Path) -> None:
    """bob calls alice while she calls him, nobody answered: his proposal's id is lower
    ("i;octet"), so ours is retracted (<expired/> + <tie-break/>), the call ends with
    expired, and alice is asked about bob's call."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        sid = await proposed(host, client, stream)
        stream.sent()
        stream.receive(
            jmi_in(BOB, "propose", "-bob-call", f"<description xmlns='{RTP}' media='audio'/>")
        )
        await settle()
        retract = (
            f"<message to='{BOB_BARE}' type='chat' id='jm-retract-SID'>"
            f"<retract xmlns='{NS_JMI}' id='SID'><reason xmlns='{NS_JINGLE}'><expired/>"
            f"</reason><tie-break/></retract>{STORE}</message>"
        )
        assert retract in sent(stream, sid)
        (data,) = ended(host)
        assert data["reason"] == "expired" and "tie-break" in data["text"]
        ((action_s, _, _, _),) = emitted(host, "action_new")
        assert json.loads(action_s)["session_id"] == "-bob-call"
    finally:
        await host.stop()
