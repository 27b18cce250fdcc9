"""A call proposed to us with XEP-0353 that our user accepted (``<proceed/>`` sent) but whose
session never comes: the frontend that accepted waits for the offer of that session id and
is told with ``call_ended`` (found by tests/e2e/test_call.py: it was told nothing, ever —
files get progress_error, calls had no counterpart — so it stayed "connecting"): the caller
hung up as we proceeded (``<retract/>``), the call went to another device of ours (the
caller's ``<finish/>`` to it seen in a carbon, or no session-initiate in time), the profile
disconnected. And the text of an unanswered call's call_ended."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.plugins.plugin_xep_0353 import NS_JMI
from tests.conftest import aio
from tests.unit.jingle.helpers import ALICE, BOB, NS_JINGLE
from tests.unit.jingle.test_file_transfer import emitted
from tests.unit.webrtc.test_calls import OFFER, RTP, host_for, settle

STORE = "<store xmlns='urn:xmpp:hints'/>"
CARBONS = "urn:xmpp:carbons:2"
OUR_PHONE = "alice@localhost/phone"


def jmi_in(sender: str, name: str, sid: str = "c1", inner: str = "", to: str = ALICE) -> str:
    return (
        f"<message from='{sender}' to='{to}' type='chat'>"
        f"<{name} xmlns='{NS_JMI}' id='{sid}'>{inner}</{name}>{STORE}</message>"
    )


def carbon(kind: str, sender: str, to: str, name: str, inner: str = "") -> str:
    forwarded = (
        f"<message xmlns='jabber:client' from='{sender}' to='{to}' type='chat'>"
        f"<{name} xmlns='{NS_JMI}' id='c1'>{inner}</{name}>{STORE}</message>"
    )
    return (
        f"<message from='alice@localhost' to='{ALICE}' type='chat'>"
        f"<{kind} xmlns='{CARBONS}'><forwarded xmlns='urn:xmpp:forward:0'>{forwarded}"
        f"</forwarded></{kind}></message>"
    )


async def accepted(tmp_path: Path) -> tuple[Any, Any, Any, Any]:
    """bob calls us (audio + video) with a propose; our user accepts: <proceed/> sent."""
    host, client, stream, reactor = await host_for(tmp_path)
    media = "".join(f"<description xmlns='{RTP}' media='{m}'/>" for m in ("audio", "video"))
    stream.receive(jmi_in(BOB, "propose", inner=media))
    await settle()
    ((data_s, action_id, _, _),) = emitted(host, "action_new")
    data = json.loads(data_s)
    assert (data["type"], data["subtype"], data["session_id"]) == ("call", "jingle_message", "c1")
    host.actions.launch("alice", action_id, {"accept": True})
    await settle()
    assert any("<proceed " in x for x in stream.sent_xml())
    return host, client, stream, reactor


def ended(host: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(sid, json.loads(data)) for sid, data, _ in emitted(host, "call_ended")]


@aio
async def test_caller_hangs_up_as_we_proceed(tmp_path: Path) -> None:
    """bob retracts (he hung up while our proceed was on its way): call_ended cancel."""
    host, client, stream, reactor = await accepted(tmp_path)
    try:
        reason = f"<reason xmlns='{NS_JINGLE}'><cancel/></reason>"
        stream.receive(jmi_in(BOB, "retract", inner=reason, to="alice@localhost"))
        await settle()
        assert ended(host) == [
            ("c1", {"reason": "cancel", "fallback": False, "text": "cancelled by the sender"})
        ]
        reactor.advance(300)  # nothing more when the wait for the session would have ended
        await settle()
        assert len(ended(host)) == 1
    finally:
        await host.stop()


@aio
async def test_both_devices_accepted_the_other_got_the_call(tmp_path: Path) -> None:
    """Our phone proceeded too (its carbon) and got the session: the caller's <finish/> to it
    (a received carbon) tells us; call_ended cancel, "accepted on another device"."""
    host, client, stream, reactor = await accepted(tmp_path)
    try:
        stream.receive(carbon("sent", OUR_PHONE, BOB, "proceed"))
        await settle()
        assert ended(host) == []  # maybe the session is ours: wait
        reason = f"<reason xmlns='{NS_JINGLE}'><success/></reason>"
        stream.receive(carbon("received", BOB, OUR_PHONE, "finish", reason))
        await settle()
        assert ended(host) == [
            ("c1", {"reason": "cancel", "fallback": False, "text": "accepted on another device"})
        ]
    finally:
        await host.stop()


@aio
async def test_no_session_in_time(tmp_path: Path) -> None:
    """No session-initiate within jingle_message_timeout: call_ended (expired), and the
    caller gets <finish/> (expired); when another device of ours proceeded too: cancel."""
    host, client, stream, reactor = await accepted(tmp_path)
    try:
        stream.sent()
        reactor.advance(300)
        await settle()
        assert ended(host) == [
            (
                "c1",
                {
                    "reason": "expired",
                    "fallback": False,
                    "text": f"{BOB} never started the session",
                },
            )
        ]
        assert any("<finish " in x and "<expired/>" in x for x in stream.sent_xml())
    finally:
        await host.stop()
    (tmp_path / "elsewhere").mkdir()
    host, client, stream, reactor = await accepted(tmp_path / "elsewhere")
    try:
        stream.receive(carbon("sent", OUR_PHONE, BOB, "proceed"))
        await settle()
        reactor.advance(300)
        await settle()
        assert [(sid, d["reason"], d["text"]) for sid, d in ended(host)] == [
            ("c1", "cancel", "accepted on another device")
        ]
    finally:
        await host.stop()


@aio
async def test_disconnected_before_the_session(tmp_path: Path) -> None:
    host, client, stream, reactor = await accepted(tmp_path)
    try:
        host.plugins["XEP-0353"].profile_disconnected(client)
        await settle()
        assert [(sid, d["reason"]) for sid, d in ended(host)] == [("c1", "connectivity-error")]
    finally:
        await host.stop()


@aio
async def test_unanswered_call_says_how_long_it_rang(tmp_path: Path) -> None:
    """Our call rings call_ring_timeout (60 s), not jingle_message_timeout (300 s): the
    call_ended text said "did not answer within 300 s" (seen in tests/e2e/test_call.py)."""
    host, client, stream, reactor = await host_for(tmp_path)
    try:
        await host.plugins["XEP-0167"].call_start(client, JID("bob@localhost"), {"sdp": OFFER})
        await settle()
        reactor.advance(60)
        await settle()
        ((_, data),) = ended(host)
        assert data == {
            "reason": "timeout",
            "fallback": False,
            "text": "bob@localhost did not answer within 60 s",
        }
    finally:
        await host.stop()
