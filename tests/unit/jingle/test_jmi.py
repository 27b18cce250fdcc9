"""XEP-0353 Jingle Message Initiation on a fake stream: literal XML in and out, the clock
driven by hand.

ALICE (us, ``alice@localhost/pc``) has BOB in her roster; CAROL is a stranger. Our other
device is ``alice@localhost/phone``.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.exceptions import NotFound, OperationTimeout, XMPPError
from libervia.backend.plugins.plugin_xep_0166 import (
    BaseApplicationHandler,
    Reason,
    Role,
    Senders,
)
from libervia.backend.plugins.plugin_xep_0166.stream import MemorySink
from libervia.backend.plugins.plugin_xep_0353 import (
    NS_FT,
    NS_JMI,
    REASON_ACCEPTED_ELSEWHERE,
    REASON_DECLINED_ELSEWHERE,
    REASON_EXPIRED,
    REASON_RETRACTED,
    PreAccepted,
    ProposalEnded,
    ProposalState,
    descriptions_match,
    file_metadata,
    wins,
)
from libervia.backend.tools import xml as xml_tools
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in, started_host
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    CAROL,
    NS_APP,
    NS_JINGLE,
    NS_TR,
    App,
    Transport,
    jingle_iq,
    normalised,
    result_to,
    settle,
)
from tests.unit.jingle.helpers import Sent as IqSent

OUR_PHONE = "alice@localhost/phone"
BOB_BARE = "bob@localhost"
BOB_LAPTOP = "bob@localhost/laptop"
STORE = "<store xmlns='urn:xmpp:hints'/>"
NS_CARBONS = "urn:xmpp:carbons:2"
ROSTER = "<item jid='bob@localhost' subscription='both'/>"

FILE_DESC = (
    f"<description xmlns='{NS_FT}'><file><date>2026-11-24T01:00:00Z</date>"
    "<desc>Q3 numbers</desc><media-type>application/pdf</media-type>"
    "<name>report.pdf</name><size>2300000</size>"
    "<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>"
    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=</hash></file></description>"
)
OTHER_FILE_DESC = FILE_DESC.replace("report.pdf", "other.exe")
APP_DESC = f"<description xmlns='{NS_APP}'/>"


class FileApp(BaseApplicationHandler):
    """Stands for XEP-0234 on the receiving side: asks ``take_accepted`` first."""

    namespace = NS_FT

    def __init__(self, jmi: Any) -> None:
        self.jmi = jmi
        self.taken: list[PreAccepted | None] = []
        self.sessions: list[Any] = []

    async def on_session_initiate(self, client, session, contents) -> None:  # type: ignore[no-untyped-def]
        self.sessions.append(session)
        pre = self.jmi.take_accepted(client, session)
        self.taken.append(pre)
        if pre is None:
            await self.jingle.terminate(client, session, Reason.DECLINE)
            return
        for content in contents:
            content.sink = MemorySink()
        await self.jingle.accept(client, session)


async def setup(tmp_path: Path, roster: str = ROSTER, carbons: bool = False):
    """A logged-in ALICE; the test application and transport and a stand-in for XEP-0234
    are the only Jingle applications and transports."""
    reactor = FakeReactor()
    host = await started_host(tmp_path, reactor)
    jingle = host.plugins["XEP-0166"]
    jingle.transports.clear()
    jingle.applications.clear()
    jmi = host.plugins["XEP-0353"]
    app, transport, file_app = App(), Transport(), FileApp(jmi)
    jingle.register_application(app)
    jingle.register_application(file_app)
    jingle.register_transport(transport)
    features = (NS_CARBONS,) if carbons else ()
    client, stream = await logged_in(host, "alice", ALICE, roster, server_features=features)
    await settle()
    if carbons:
        enable = [x for x in stream.sent_xml() if NS_CARBONS in x][0]
        enable_id = enable.split("id='")[1].split("'")[0]
        stream.receive(f"<iq type='result' id='{enable_id}' from='alice@localhost' to='{ALICE}'/>")
        await client.extra["XEP-0280_start"]
    stream.sent()
    return host, client, stream, reactor, jmi, app, file_app


class Sent(IqSent):
    """What we sent, literally: only IQ ids (random) are replaced by ``ID`` (JMI message ids
    are ``jm-<element>-<sid>``)."""

    async def all(self) -> list[str]:
        await settle()
        self.raw = [x for x in self.stream.sent_xml() if " to='localhost'" not in x]
        return [normalised(x) if x.startswith("<iq") else x for x in self.raw]


def message(sender: str, inner: str, to: str = ALICE, mess_type: str = "chat") -> str:
    return f"<message from='{sender}' to='{to}' type='{mess_type}'>{inner}{STORE}</message>"


def jmi(name: str, sid: str = "s1", inner: str = "") -> str:
    if inner:
        return f"<{name} xmlns='{NS_JMI}' id='{sid}'>{inner}</{name}>"
    return f"<{name} xmlns='{NS_JMI}' id='{sid}'/>"


def out(to: str, name: str, sid: str = "s1", inner: str = "") -> str:
    """A JMI message as we send it (literal)."""
    child = jmi(name, sid, inner)
    return f"<message to='{to}' type='chat' id='jm-{name}-{sid}'>{child}{STORE}</message>"


def reason(condition: str, tie_break: bool = False) -> str:
    text = f"<reason xmlns='{NS_JINGLE}'><{condition}/></reason>"
    return text + ("<tie-break/>" if tie_break else "")


def carbon(kind: str, inner: str, wrapper_from: str = "alice@localhost") -> str:
    return (
        f"<message from='{wrapper_from}' to='{ALICE}' type='chat'>"
        f"<{kind} xmlns='{NS_CARBONS}'><forwarded xmlns='urn:xmpp:forward:0'>"
        f"{inner}</forwarded></{kind}></message>"
    )


def inner_message(sender: str, to: str, child: str) -> str:
    return (
        f"<message xmlns='jabber:client' from='{sender}' to='{to}' type='chat'>"
        f"{child}{STORE}</message>"
    )


def signals(host, name: str) -> list[tuple]:
    return [args for signal, args in host.bridge.emitted if signal == name]


def element(text: str) -> domish.Element:
    return xml_tools.parse(text)


def pending(host) -> list[Any]:
    return host.actions.pending("alice")


# --- elements -------------------------------------------------------------------------------


def test_tie_break_order() -> None:
    """The lower id wins bytewise ("i;octet"); equal ids: the lower JID's proposal wins."""
    a, b = JID("a@x/1"), JID("b@x/1")
    assert wins("ca3c", b, "fecb", a) and not wins("fecb", a, "ca3c", b)
    assert wins("Z", a, "a", b)  # uppercase sorts first in i;octet
    assert wins("same", a, "same", b) and not wins("same", b, "same", a)


def test_descriptions_match() -> None:
    """A session matches its proposal when it offers the same files (name, size, hashes),
    whatever the order and the other metadata."""
    proposed = [element(FILE_DESC)]
    same = element(FILE_DESC.replace("<desc>Q3 numbers</desc>", "<desc>other text</desc>"))
    assert descriptions_match(proposed, [same])
    assert not descriptions_match(proposed, [element(OTHER_FILE_DESC)])
    assert not descriptions_match(proposed, [element(FILE_DESC.replace("2300000", "2300001"))])
    assert not descriptions_match(proposed, [same, element(OTHER_FILE_DESC)])
    assert not descriptions_match(proposed, [None])
    both = [element(FILE_DESC), element(APP_DESC)]
    assert descriptions_match(both, [element(APP_DESC), element(FILE_DESC)])


def test_file_metadata_size_from_peers() -> None:
    """The size is read only from ASCII decimal digits: other scripts' digits, superscripts,
    signs and absurd lengths give no size (never an exception)."""
    for bad in ("\u0663\u0663", "\u00b2", "-1", "+5", "1e3", "9" * 21, ""):
        desc = element(FILE_DESC.replace("2300000", bad))
        assert file_metadata(desc)["size"] is None, bad
    assert file_metadata(element(FILE_DESC))["size"] == 2300000
    assert file_metadata(element(f"<description xmlns='{NS_FT}'/>")) is None


# --- initiator ------------------------------------------------------------------------------


@aio
async def test_disco_feature(tmp_path: Path) -> None:
    """urn:xmpp:jingle-message:0 is announced (as Conversations does)."""
    host, *_ = await setup(tmp_path)
    try:
        assert NS_JMI in host.plugins["XEP-0030"].features
    finally:
        await host.stop()


@aio
async def test_propose_proceed_then_session_to_the_proceeding_device(tmp_path: Path) -> None:
    """The propose goes to the bare JID with the description; ringing is noted; the proceed
    from one full JID gives that JID; the session-initiate goes there with the propose's id
    as sid; when the session ends a finish is sent to that full JID."""
    host, client, stream, reactor, jmi_plugin, app, _ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        sid = await jmi_plugin.propose(client, JID(BOB), [element(APP_DESC)], sid="s1")
        assert sid == "s1"
        assert await sent.all() == [out(BOB_BARE, "propose", inner=APP_DESC)]
        stream.receive(message(BOB_LAPTOP, jmi("ringing")))
        stream.receive(message(BOB, jmi("ringing")))
        await settle()
        proposal = jmi_plugin.get_proposal(client, Role.INITIATOR, JID(BOB_BARE), "s1")
        assert proposal.ringing == {BOB, BOB_LAPTOP}
        waiting = asyncio.ensure_future(jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1"))
        stream.receive(message(BOB, jmi("proceed")))
        await settle()
        responder = await waiting
        assert responder == JID(BOB)
        # a late proceed from another device changes nothing (and nothing is sent)
        stream.receive(message(BOB_LAPTOP, jmi("proceed")))
        assert await sent.all() == []
        jingle = host.plugins["XEP-0166"]
        session = jingle.create_session(client, responder, sid)
        jingle.add_content(
            session, app, domish.Element((NS_APP, "description")), senders=Senders.INITIATOR
        )
        jmi_plugin.track(client, session)
        initiating = asyncio.ensure_future(jingle.initiate(client, session))
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            f"action='session-initiate' initiator='{ALICE}' sid='s1'>"
            "<content creator='initiator' name='0' senders='initiator'>"
            f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content>"
            "</jingle></iq>"
        ]
        sent.ack()
        await initiating
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='s1'>"
                "<reason><decline/></reason></jingle>"
            )
        )
        assert await sent.all() == [result_to(), out(BOB, "finish", inner=reason("decline"))]
    finally:
        await host.stop()


@aio
async def test_legacy_proceed_to_our_bare_jid_accepted(tmp_path: Path) -> None:
    """A proceed addressed to our bare JID (XEP-0353 0.6.0) counts like one to our full JID."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="s1")
        stream.sent()
        stream.receive(message(BOB_LAPTOP, jmi("proceed"), to="alice@localhost"))
        await settle()
        assert await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1") == JID(BOB_LAPTOP)
        with pytest.raises(NotFound):  # read once
            await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1")
    finally:
        await host.stop()


@aio
async def test_answers_from_other_accounts_ignored(tmp_path: Path) -> None:
    """Only the bare JID we proposed to can answer: CAROL's proceed and reject, a proceed
    from a bare JID, one without an id, are ignored."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="s1")
        stream.sent()
        stream.receive(message(CAROL, jmi("reject", inner=reason("busy"))))
        stream.receive(message(CAROL, jmi("proceed")))
        stream.receive(message(BOB_BARE, jmi("proceed")))
        stream.receive(message(BOB, f"<proceed xmlns='{NS_JMI}'/>"))
        await settle()
        proposal = jmi_plugin.get_proposal(client, Role.INITIATOR, JID(BOB_BARE), "s1")
        assert proposal.state is ProposalState.PROPOSED
        assert stream.sent_xml() == []
    finally:
        await host.stop()


@aio
async def test_reject(tmp_path: Path) -> None:
    """A reject ends our proposal: wait_proceed raises ProposalEnded with the condition."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="s1")
        stream.sent()
        stream.receive(message(BOB, jmi("reject", inner=reason("busy"))))
        await settle()
        with pytest.raises(ProposalEnded) as info:
            await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1")
        assert info.value.state is ProposalState.REJECTED
        assert info.value.condition is Reason.BUSY and not info.value.tie_break
        assert stream.sent_xml() == []
    finally:
        await host.stop()


@aio
async def test_no_answer_times_out_with_retract(tmp_path: Path) -> None:
    """Nobody answers: after jingle_message_timeout (300 s) a retract with <timeout/> goes
    to the bare JID and wait_proceed raises OperationTimeout."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="s1")
        await sent.all()
        waiting = asyncio.ensure_future(jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1"))
        reactor.advance(299)  # not yet
        assert await sent.all() == [] and not waiting.done()
        reactor.advance(1)  # the proposal timer
        assert await sent.all() == [out(BOB_BARE, "retract", inner=reason("timeout"))]
        with pytest.raises(OperationTimeout):
            await waiting
    finally:
        await host.stop()


@aio
async def test_retract_by_us(tmp_path: Path) -> None:
    """retract() sends <retract/> with <cancel/> to the bare JID; the waiter is told."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="s1")
        await sent.all()
        assert jmi_plugin.retract(client, JID(BOB_BARE), "s1")
        assert not jmi_plugin.retract(client, JID(BOB_BARE), "s1")
        assert await sent.all() == [out(BOB_BARE, "retract", inner=reason("cancel"))]
        with pytest.raises(ProposalEnded) as info:
            await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1")
        assert info.value.state is ProposalState.RETRACTED
    finally:
        await host.stop()


@aio
async def test_propose_bounce(tmp_path: Path) -> None:
    """An error bounce of our propose (no device reachable) fails the proposal and is not
    shown as a message."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="s1")
        stream.sent()
        stream.receive(
            f"<message from='{BOB_BARE}' to='{ALICE}' type='error' id='jm-propose-s1'>"
            "<error type='cancel'><service-unavailable "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
        await settle()
        with pytest.raises(XMPPError) as info:
            await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1")
        assert info.value.condition == "service-unavailable"
        assert signals(host, "message_new") == []
    finally:
        await host.stop()


# --- tie-break ------------------------------------------------------------------------------


@aio
async def test_tie_break_their_lower_id_wins(tmp_path: Path) -> None:
    """Both proposed; theirs has the lower id: we retract ours (expired + tie-break), our
    waiter learns it, and their proposal is asked normally."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="fecb")
        await sent.all()
        stream.receive(message(BOB, jmi("propose", "ca3c", APP_DESC), to=BOB_BARE))
        assert await sent.all() == [
            out(BOB_BARE, "retract", "fecb", reason("expired", tie_break=True)),
            out(BOB, "ringing", "ca3c"),
        ]
        with pytest.raises(ProposalEnded) as info:
            await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "fecb")
        assert info.value.tie_break and info.value.state is ProposalState.RETRACTED
        assert [a.data["session_id"] for a in pending(host)] == ["ca3c"]
    finally:
        await host.stop()


@aio
async def test_tie_break_our_lower_id_wins(tmp_path: Path) -> None:
    """Both proposed; ours has the lower id: theirs is rejected (expired + tie-break) without
    asking the user, ours goes on; their own tie-break reject of ours would end it."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="ca3c")
        await sent.all()
        stream.receive(message(BOB, jmi("propose", "fecb", APP_DESC), to=BOB_BARE))
        assert await sent.all() == [
            out(BOB, "reject", "fecb", reason("expired", tie_break=True)),
        ]
        assert pending(host) == []
        proposal = jmi_plugin.get_proposal(client, Role.INITIATOR, JID(BOB_BARE), "ca3c")
        assert proposal.state is ProposalState.PROPOSED
        # the peer retracts its losing proposal: nothing to do
        stream.receive(message(BOB, jmi("retract", "fecb", reason("expired", True)), BOB_BARE))
        # and proceeds with ours
        stream.receive(message(BOB, jmi("proceed", "ca3c")))
        assert await sent.all() == []
        assert await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "ca3c") == JID(BOB)
    finally:
        await host.stop()


@aio
async def test_tie_break_reject_received(tmp_path: Path) -> None:
    """The peer rejects our proposal with <tie-break/>: ProposalEnded says so."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="fecb")
        stream.sent()
        stream.receive(message(BOB, jmi("reject", "fecb", reason("expired", tie_break=True))))
        await settle()
        with pytest.raises(ProposalEnded) as info:
            await jmi_plugin.wait_proceed(client, JID(BOB_BARE), "fecb")
        assert info.value.tie_break and info.value.condition is Reason.EXPIRED
    finally:
        await host.stop()


# --- responder ------------------------------------------------------------------------------


def file_propose(sender: str = BOB, sid: str = "s1", desc: str = FILE_DESC) -> str:
    return message(sender, jmi("propose", sid, desc), to="alice@localhost")


async def proposed(tmp_path: Path, sender: str = BOB, **kwargs: Any):
    """BOB (a contact) proposed to send report.pdf; the action is asked."""
    env = await setup(tmp_path, **kwargs)
    stream = env[2]
    stream.receive(file_propose(sender))
    await settle()
    stream.sent()  # the ringing
    return env


@aio
async def test_propose_from_contact_rings_and_asks(tmp_path: Path) -> None:
    """A contact's file proposal: ringing to its full JID, and an action with the file's
    metadata (the XEP-0234 offer keys) and the progress id of the future transfer."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        stream.receive(file_propose())
        assert await sent.all() == [out(BOB, "ringing")]
        (action_new,) = signals(host, "action_new")
        data = json.loads(action_new[0])
        progress_id = data.pop("progress_id")
        assert progress_id
        file_data = {
            "name": "report.pdf",
            "size": 2300000,
            "desc": "Q3 numbers",
            "media_type": "application/pdf",
            "date": "2026-11-24T01:00:00Z",
            "hash_algo": "sha-256",
        }
        assert data == {
            "type": "file",
            "subtype": "jingle_message",
            "from_jid": BOB,
            "session_id": "s1",
            "in_roster": True,
            "file": file_data,
            "files": [file_data],
            "message": 'bob@localhost wants to send you "report.pdf" (2.3 MB): Q3 numbers',
        }
        # delivered twice (e.g. offline storage, then live): asked once
        stream.receive(file_propose())
        assert await sent.all() == []
        assert len(signals(host, "action_new")) == 1
    finally:
        await host.stop()


@aio
async def test_propose_from_stranger_asks_without_ringing(tmp_path: Path) -> None:
    """A proposal from somebody not in the roster is asked, but nothing is sent
    automatically (no ringing: it would leak our presence); the refusal sends reject."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        stream.receive(file_propose(CAROL))
        assert await sent.all() == []
        (action,) = pending(host)
        assert action.data["in_roster"] is False
        host.actions.launch("alice", action.id, {"accept": False})
        assert await sent.all() == [
            out(CAROL, "reject", inner=reason("busy")),
            out("alice@localhost", "reject", inner=reason("busy")),
        ]
    finally:
        await host.stop()


@aio
async def test_unsupported_or_malformed_proposals_ignored(tmp_path: Path) -> None:
    """A proposal of an application we lack (a call: maybe for another device of ours), or
    without description, from a bare JID, or archived (MAM), is neither answered nor asked."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    try:
        rtp = "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>"
        stream.receive(message(BOB, jmi("propose", "c1", rtp), to="alice@localhost"))
        stream.receive(message(BOB, jmi("propose", "c2", APP_DESC + rtp), "alice@localhost"))
        stream.receive(message(BOB, jmi("propose", "c3"), to="alice@localhost"))
        stream.receive(message(BOB_BARE, jmi("propose", "c4", APP_DESC), "alice@localhost"))
        stream.receive(message(BOB, f"<propose xmlns='{NS_JMI}'>{APP_DESC}</propose>"))
        await settle()
        assert stream.sent_xml() == []
        assert pending(host) == []
    finally:
        await host.stop()


@aio
async def test_accept_sends_proceed_then_session_is_pre_accepted(tmp_path: Path) -> None:
    """Accepted in preflight: proceed to the proposer's full JID (and, without carbons, the
    legacy accept to our own bare JID); the session-initiate that follows (same full JID,
    same sid, same file) is accepted without asking again: take_accepted gives the answer
    and the announced progress id; its end sends finish."""
    host, client, stream, reactor, jmi_plugin, app, file_app = await proposed(tmp_path)
    sent = Sent(stream)
    try:
        await sent.all()
        (action,) = pending(host)
        answer = {"accept": True, "path": str(tmp_path), "overwrite": False}
        host.actions.launch("alice", action.id, answer)
        assert await sent.all() == [out(BOB, "proceed"), out("alice@localhost", "accept")]
        initiate = (
            f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' initiator='{BOB}' sid='s1'>"
            "<content creator='initiator' name='0' senders='initiator'>"
            f"{FILE_DESC}<transport xmlns='{NS_TR}'/></content></jingle>"
        )
        stream.receive(jingle_iq(initiate))
        replies = await sent.all()
        assert replies[0] == result_to()
        assert "action='session-accept'" in replies[1]
        assert pending(host) == []  # not asked twice
        (pre,) = file_app.taken
        assert pre == PreAccepted(answer, action.data["progress_id"], action.id)
        assert len(signals(host, "action_new")) == 1
        # only once
        assert jmi_plugin.take_accepted(client, file_app.sessions[0]) is None
        sent.ack(1)
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='s1'>"
                "<reason><success/></reason></jingle>"
            )
        )
        assert await sent.all() == [result_to(), out(BOB, "finish", inner=reason("success"))]
    finally:
        await host.stop()


@aio
async def test_pre_accepted_only_for_what_was_proposed(tmp_path: Path) -> None:
    """A session-initiate offering another file than proposed, or from another device, is
    not pre-accepted (the application asks again)."""
    host, client, stream, reactor, jmi_plugin, app, file_app = await proposed(tmp_path)
    sent = Sent(stream)
    try:
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": True})
        await sent.all()

        def initiate(desc: str) -> str:
            return (
                f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='s1'>"
                "<content creator='initiator' name='0' senders='initiator'>"
                f"{desc}<transport xmlns='{NS_TR}'/></content></jingle>"
            )

        stream.receive(jingle_iq(initiate(FILE_DESC), sender=BOB_LAPTOP))
        await sent.all()
        assert file_app.taken == [None]
        stream.receive(jingle_iq(initiate(OTHER_FILE_DESC)))
        await sent.all()
        assert file_app.taken == [None, None]
        # the transfer announced in the action will not happen: its follower is told
        (error,) = signals(host, "progress_error")
        assert error[:2] == (action.data["progress_id"], "the sender offered something else")
    finally:
        await host.stop()


@aio
async def test_retract_cancels_the_action(tmp_path: Path) -> None:
    """The proposer retracts: the action is cancelled with "cancelled by the sender"
    (action_update); nothing is sent."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path)
    sent = Sent(stream)
    try:
        await sent.all()
        (action,) = pending(host)
        stream.receive(message(BOB, jmi("retract", inner=reason("cancel")), "alice@localhost"))
        assert await sent.all() == []
        assert pending(host) == []
        assert signals(host, "action_update") == [
            (action.id, json.dumps({"status": "cancelled", "reason": REASON_RETRACTED}), "alice")
        ]
    finally:
        await host.stop()


@aio
async def test_retract_from_another_account_ignored(tmp_path: Path) -> None:
    """CAROL cannot withdraw BOB's proposal."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path)
    try:
        stream.receive(message(CAROL, jmi("retract", inner=reason("cancel")), "alice@localhost"))
        await settle()
        assert len(pending(host)) == 1
        assert signals(host, "action_update") == []
    finally:
        await host.stop()


@aio
async def test_retract_after_proceed_fails_the_announced_progress(tmp_path: Path) -> None:
    """Accepted, then the sender retracts before starting the session: the progress the
    frontend follows fails with "cancelled by the sender"."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path)
    sent = Sent(stream)
    try:
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": True})
        await sent.all()
        stream.receive(message(BOB, jmi("retract", inner=reason("cancel")), "alice@localhost"))
        await settle()
        assert signals(host, "progress_error") == [
            (action.data["progress_id"], REASON_RETRACTED, "alice")
        ]
        assert await sent.all() == []
    finally:
        await host.stop()


@aio
async def test_carbon_of_proceed_from_our_other_device(tmp_path: Path) -> None:
    """Our phone proceeded (we see the carbon of its proceed, wrapper from our bare JID):
    the action here is cancelled with "accepted on another device"; nothing is sent."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    sent = Sent(stream)
    try:
        await sent.all()
        (action,) = pending(host)
        stream.receive(carbon("sent", inner_message(OUR_PHONE, BOB, jmi("proceed"))))
        assert await sent.all() == []
        assert pending(host) == []
        assert signals(host, "action_update") == [
            (
                action.id,
                json.dumps({"status": "cancelled", "reason": REASON_ACCEPTED_ELSEWHERE}),
                "alice",
            )
        ]
    finally:
        await host.stop()


@aio
async def test_carbon_of_reject_from_our_other_device(tmp_path: Path) -> None:
    """Our phone declined: "declined on another device"."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    try:
        (action,) = pending(host)
        stream.receive(
            carbon("sent", inner_message(OUR_PHONE, BOB, jmi("reject", inner=reason("busy"))))
        )
        await settle()
        assert pending(host) == []
        update = json.loads(signals(host, "action_update")[0][1])
        assert update == {"status": "cancelled", "reason": REASON_DECLINED_ELSEWHERE}
    finally:
        await host.stop()


@aio
async def test_legacy_accept_from_our_other_device(tmp_path: Path) -> None:
    """Our phone sent the legacy <accept/> to our bare JID (Conversations, Dino; or us
    without carbons): "accepted on another device"."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path)
    try:
        stream.receive(message(OUR_PHONE, jmi("accept"), to="alice@localhost"))
        await settle()
        assert pending(host) == []
        update = json.loads(signals(host, "action_update")[0][1])
        assert update["reason"] == REASON_ACCEPTED_ELSEWHERE
    finally:
        await host.stop()


@aio
async def test_forged_and_own_carbons_ignored(tmp_path: Path) -> None:
    """A "carbon" whose wrapper comes from another account (CAROL forging our phone's
    proceed), a carbon of our own stanza, a proceed carbon about another peer or another
    sid: the action stays pending."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    try:
        proceed = jmi("proceed")
        stream.receive(carbon("sent", inner_message(OUR_PHONE, BOB, proceed), "carol@localhost"))
        stream.receive(carbon("sent", inner_message(OUR_PHONE, BOB, proceed), CAROL))
        stream.receive(carbon("sent", inner_message(ALICE, BOB, proceed)))
        stream.receive(carbon("sent", inner_message(OUR_PHONE, CAROL, proceed)))
        stream.receive(carbon("sent", inner_message(OUR_PHONE, BOB, jmi("proceed", "s2"))))
        # a received carbon of a proceed (to another device of ours) is not ours either
        stream.receive(carbon("received", inner_message(BOB, OUR_PHONE, proceed)))
        await settle()
        assert len(pending(host)) == 1
        assert signals(host, "action_update") == []
        assert stream.sent_xml() == []
    finally:
        await host.stop()


@aio
async def test_forged_carbon_checked_by_the_plugin_itself(tmp_path: Path) -> None:
    """Even if a forged carbon reached the message_received trigger (XEP-0280 absent), its
    forwarded proceed is ignored: the wrapper must come from our bare JID."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path)
    try:
        forged = element(
            carbon("sent", inner_message(OUR_PHONE, BOB, jmi("proceed")), "carol@localhost")
        )
        inner = next(next(next(forged.elements()).elements()).elements())
        assert inner.name == "message" and inner.parent is not None
        assert jmi_plugin._on_message(client, inner, None) is True
        assert len(pending(host)) == 1
        genuine = element(carbon("sent", inner_message(OUR_PHONE, BOB, jmi("proceed"))))
        inner = next(next(next(genuine.elements()).elements()).elements())
        jmi_plugin._on_message(client, inner, None)
        assert pending(host) == []
    finally:
        await host.stop()


@aio
async def test_accept_with_carbons_sends_no_legacy_copy(tmp_path: Path) -> None:
    """With carbons, our other devices see the proceed itself: no <accept/> copy."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    sent = Sent(stream)
    try:
        await sent.all()
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": True})
        assert await sent.all() == [out(BOB, "proceed")]
    finally:
        await host.stop()


@aio
async def test_accept_must_be_true(tmp_path: Path) -> None:
    """Only {"accept": true} accepts (a string "false" is a refusal, not a truthy yes)."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    sent = Sent(stream)
    try:
        await sent.all()
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": "false"})
        assert await sent.all() == [out(BOB, "reject", inner=reason("busy"))]
    finally:
        await host.stop()


# --- timeouts (fake clock) ------------------------------------------------------------------


@aio
async def test_unanswered_proposal_expires(tmp_path: Path) -> None:
    """Never answered nor retracted: after jingle_message_expiry (3600 s) the action is
    cancelled ("expired"); nothing is sent."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path)
    sent = Sent(stream)
    try:
        await sent.all()
        reactor.advance(3599)
        assert len(pending(host)) == 1
        reactor.advance(1)  # the expiry timer
        assert pending(host) == []
        update = json.loads(signals(host, "action_update")[0][1])
        assert update["reason"] == REASON_EXPIRED
        assert await sent.all() == []
    finally:
        await host.stop()


@aio
async def test_proceeded_but_no_session(tmp_path: Path) -> None:
    """We proceeded, no session-initiate within 300 s: the announced progress fails and a
    finish with <expired/> tells the sender."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    sent = Sent(stream)
    try:
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": True})
        assert await sent.all() == [out(BOB, "proceed")]
        reactor.advance(299)
        assert await sent.all() == []
        reactor.advance(1)  # the session-initiate timer
        assert await sent.all() == [out(BOB, "finish", inner=reason("expired"))]
        progress_id = action.data["progress_id"]
        assert [a[0] for a in signals(host, "progress_started")] == [progress_id]
        assert signals(host, "progress_error") == [
            (progress_id, "the sender did not start the transfer", "alice")
        ]
    finally:
        await host.stop()


@aio
async def test_disconnection_ends_our_proposals(tmp_path: Path) -> None:
    """The profile disconnects: wait_proceed fails (NotConnected), no timer is left."""
    from libervia.backend.core.exceptions import NotConnected

    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    try:
        await jmi_plugin.propose(client, JID(BOB_BARE), [element(APP_DESC)], sid="s1")
        waiting = asyncio.ensure_future(jmi_plugin.wait_proceed(client, JID(BOB_BARE), "s1"))
        await settle()
        jmi_plugin.profile_disconnected(client)
        with pytest.raises(NotConnected):
            await waiting
        assert not [c for c in reactor.getDelayedCalls() if "_outgoing_expired" in repr(c)]
    finally:
        await host.stop()


@aio
async def test_retract_seen_in_a_received_carbon(tmp_path: Path) -> None:
    """The sender's retract addressed to our other device (we get its received carbon)
    cancels the action here too."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    try:
        retract = jmi("retract", inner=reason("cancel"))
        stream.receive(carbon("received", inner_message(BOB, OUR_PHONE, retract)))
        await settle()
        assert pending(host) == []
        update = json.loads(signals(host, "action_update")[0][1])
        assert update["reason"] == REASON_RETRACTED
    finally:
        await host.stop()


@aio
async def test_finish_before_any_answer_cancels(tmp_path: Path) -> None:
    """A finish from the sender for a proposal still asked withdraws it too; then a late
    copy of the propose (archive order, offline storage) is not asked again."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path)
    try:
        stream.receive(message(BOB, jmi("finish", inner=reason("success")), to=ALICE))
        await settle()
        assert pending(host) == []
        stream.receive(file_propose())
        await settle()
        assert pending(host) == [] and stream.sent_xml() == []
        # a retract arriving before its propose: the propose is never asked
        stream.receive(message(BOB, jmi("retract", "s9", reason("cancel")), "alice@localhost"))
        stream.receive(message(BOB, jmi("propose", "s9", FILE_DESC), "alice@localhost"))
        await settle()
        assert pending(host) == [] and stream.sent_xml() == []
    finally:
        await host.stop()


@aio
async def test_both_devices_accepted_the_other_got_the_session(tmp_path: Path) -> None:
    """We and our phone both proceeded; the sender started the session with the phone: once
    the wait for the session-initiate ends, the progress announced here fails with
    "accepted on another device" and no finish is sent (the session is the phone's)."""
    host, client, stream, reactor, jmi_plugin, *_ = await proposed(tmp_path, carbons=True)
    sent = Sent(stream)
    try:
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": True})
        await sent.all()
        stream.receive(carbon("sent", inner_message(OUR_PHONE, BOB, jmi("proceed"))))
        await settle()
        reactor.advance(300)  # the session-initiate timer
        assert await sent.all() == []
        assert signals(host, "progress_error") == [
            (action.data["progress_id"], REASON_ACCEPTED_ELSEWHERE, "alice")
        ]
    finally:
        await host.stop()


@aio
async def test_session_not_taken_by_its_application_still_finished(tmp_path: Path) -> None:
    """Accepted in preflight, but the application of the session did not call take_accepted
    (it asks again): at the end of the wait the live session is found, nothing fails, and
    its end sends the finish."""
    host, client, stream, reactor, jmi_plugin, app, file_app = await proposed(tmp_path)
    sent = Sent(stream)
    try:
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": True})
        await sent.all()
        app.auto_accept = True
        initiate = (
            f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='s1'>"
            "<content creator='initiator' name='0' senders='initiator'>"
            f"{APP_DESC}<transport xmlns='{NS_TR}'/></content></jingle>"
        )
        stream.receive(jingle_iq(initiate))
        await sent.all()
        sent.ack(1)
        await settle()
        reactor.advance(300)  # the session-initiate timer
        assert await sent.all() == []
        assert signals(host, "progress_error") == []
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='s1'>"
                "<reason><success/></reason></jingle>"
            )
        )
        assert await sent.all() == [result_to(), out(BOB, "finish", inner=reason("success"))]
    finally:
        await host.stop()


def directed_presence(to: str) -> re.Pattern[str]:
    """Our presence directed to ``to``, with our capabilities (XEP-0115)."""
    return re.compile(
        rf"<presence to='{re.escape(to)}'><c xmlns='http://jabber\.org/protocol/caps' "
        r"hash='sha-1' node='https://libervia\.org/' ver='[^']+'/></presence>"
    )


@aio
async def test_directed_presence_along_our_propose(tmp_path: Path) -> None:
    """XEP-0353: the initiator sends its presence (with caps) to a responder that does not
    receive it already, along with the propose. A contact subscribed to our presence (BOB,
    "both": every other test of this file) gets none."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    carol_bare = CAROL.split("/")[0]
    try:
        await jmi_plugin.propose(client, JID(CAROL), [element(APP_DESC)], sid="s9")
        propose, presence = await sent.all()
        assert propose == out(carol_bare, "propose", "s9", inner=APP_DESC)
        assert directed_presence(carol_bare).fullmatch(presence)
    finally:
        await host.stop()


@aio
async def test_directed_presence_along_our_proceed(tmp_path: Path) -> None:
    """The responder sends its presence to the initiator's full JID along with its proceed
    when the initiator does not receive it already; nothing when the user declines."""
    host, client, stream, reactor, jmi_plugin, *_ = await setup(tmp_path)
    sent = Sent(stream)
    try:
        stream.receive(file_propose(CAROL, "s2"))
        await settle()
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": False})
        assert not any("<presence" in x for x in await sent.all())
        stream.receive(file_propose(CAROL, "s3"))
        await settle()
        (action,) = pending(host)
        host.actions.launch("alice", action.id, {"accept": True, "path": str(tmp_path)})
        proceed, presence, accept = await sent.all()
        assert proceed == out(CAROL, "proceed", "s3")
        assert directed_presence(CAROL).fullmatch(presence)
        assert accept == out("alice@localhost", "accept", "s3")
    finally:
        await host.stop()
