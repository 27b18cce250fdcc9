"""End to end: audio + video calls rung with Jingle Message Initiation (XEP-0353), as a user
meets them: a real Prosody, the daemon as a subprocess on a private bus, aiortc peers playing
the frontends (tests/webrtc_peer.py: loopback host candidates only, no STUN), every bit of
signalling through the D-Bus bridge (doc/webrtc.rst, Calls).

One daemon holds ``alice``, ``bob`` and ``tablet`` (a second device of bob's account,
connected for the two-device tests only: the server binds another resource; carbons are
checked on before). alice calls bob's **bare** JID: the callee's devices get ``action_new``
(type ``call``, subtype ``jingle_message``), the accepting one then the session's
``action_new`` with ``pre_accepted`` and the offer, answered with its SDP (its candidates
trickled with ``ice_candidates_add``, some before the answer as a browser may). ICE
connects over loopback and media flows both ways. Also: two devices (one answers, or both
at once), a reject, the caller hanging up while it rings or just as the callee accepts
(``dave``, a bare stream, plays that caller), nobody answering (``call_ring_timeout`` is
4 s here). The module takes ~9 s (2 cores), 4 of them the unanswered call.

What goes over the wire is watched by ``alice/observer``, a bare stream of alice's account
with carbons enabled: the JMI messages alice's daemon sends and receives come to it as
carbons (``<propose/>``, ``<ringing/>``, ``<proceed/>``, ``<reject/>``, ``<finish/>``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from libervia.frontends.bridge.client import BridgeClient, BridgeError
from tests.conftest import aio, run
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.e2e.test_carbons_mam import RawClient
from tests.e2e.test_file_transfer import Peer
from tests.webrtc_peer import Frontend, strip_candidates, trickled

pytestmark = pytest.mark.timeout(120)

SIGNALS = [
    "connected",
    "disconnected",
    "contact_new",
    "message_new",
    "action_new",
    "action_update",
    "call_setup",
    "call_info",
    "call_ended",
    "ice_candidates_new",
]
#: seconds a call rings unanswered (``call_ring_timeout``; 60 by default): the tests
#: answering do it within a few tens of milliseconds
RING = 4
NS_JMI = "urn:xmpp:jingle-message:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_JINGLE = "urn:xmpp:jingle:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"


@dataclass(frozen=True)
class Jmi:
    """A JMI message seen by the observer (a carbon of alice's daemon's traffic)."""

    direction: str  # "sent" (by alice's daemon) or "received"
    sender: str
    to: str
    name: str
    sid: str
    reason: str | None
    element: domish.Element


class Observer:
    """``alice/observer``: carbons enabled, collects the JMI messages alice exchanges."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw
        self.seen: list[Jmi] = []
        self._changed = asyncio.Event()
        xmlstream.upgradeWithIQResponseTracker(raw.xs)
        raw.xs.addObserver("/message", self._on_message)

    @classmethod
    async def login(cls, prosody: Prosody, jid: str) -> Observer:
        observer = cls(await RawClient.login(prosody, jid, "xmpp-pass", "observer"))
        iq = xmlstream.IQ(observer.raw.xs, "set")
        iq.addElement((NS_CARBONS, "enable"))
        await asyncio.wait_for(iq.send().asFuture(asyncio.get_running_loop()), 15)
        return observer

    def _on_message(self, message: domish.Element) -> None:
        for wrapper in message.elements(NS_CARBONS):
            forwarded = next(wrapper.elements(NS_FORWARD, "forwarded"), None)
            children = forwarded.elements() if forwarded is not None else iter(())
            inner = next((c for c in children if c.name == "message"), None)
            if inner is None:
                continue
            for child in inner.elements(NS_JMI):
                reason = next(child.elements(NS_JINGLE, "reason"), None)
                condition = None
                if reason is not None:
                    condition = next((c.name for c in reason.elements() if c.name != "text"), None)
                self.seen.append(
                    Jmi(
                        wrapper.name,
                        inner.getAttribute("from", ""),
                        inner.getAttribute("to", ""),
                        child.name,
                        child.getAttribute("id", ""),
                        condition,
                        child,
                    )
                )
                self._changed.set()

    def of(self, sid: str) -> list[Jmi]:
        return [m for m in self.seen if m.sid == sid]

    async def wait(self, sid: str, direction: str, name: str, timeout: float = 15) -> Jmi:
        async def find() -> Jmi:
            while True:
                for m in self.of(sid):
                    if (m.direction, m.name) == (direction, name):
                        return m
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def close(self) -> None:
        self.raw.close()


@dataclass
class World:
    prosody: Prosody
    daemon: Daemon
    bridge: BridgeClient
    alice: Peer
    bob: Peer
    #: bob's second device, not connected (see :func:`second_device`)
    tablet: Peer
    observer: Observer


@pytest.fixture(scope="module")
def world(
    prosody: Prosody, bus: DBusDaemon, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    daemon = Daemon(tmp_path_factory.mktemp("call"), bus.address, f"call_ring_timeout = {RING}\n")
    daemon.start()
    bridge: BridgeClient | None = None
    observer: Observer | None = None
    try:

        async def start() -> World:
            nonlocal bridge, observer
            bridge = await daemon.bridge()
            await bridge.refresh()  # the plugins' methods and signals (call_start, call_setup...)
            events = Recorder(bridge, SIGNALS)
            bob_user = unique("bob")
            accounts = [("alice", unique("alice"), True), ("bob", bob_user, True)]
            accounts.append(("tablet", bob_user, False))
            jids = {}
            for profile, user, register in accounts:
                jids[profile] = await make_account(
                    bridge, prosody, profile, user, register=register
                )
            peers = {}
            for profile in ("alice", "bob", "tablet"):
                full = ""
                if profile != "tablet":
                    await bridge.connect(profile, "", {})
                    connected = await events.wait("connected", lambda a, p=profile: a[1] == p)
                    full = connected[0]
                peers[profile] = Peer(daemon, bridge, events, profile, jids[profile], full)
            observer = await Observer.login(prosody, jids["alice"])
            return World(
                prosody, daemon, bridge, peers["alice"], peers["bob"], peers["tablet"], observer
            )

        yield run(start())
    finally:
        if observer is not None:
            observer.close()
        if bridge is not None:
            run(bridge.close())
        code = daemon.stop()
        assert code == 0, daemon.logs()


def frontend(peer: Peer, call: dict[str, str]) -> Frontend:
    """An aiortc frontend of ``peer`` for the call whose sid will be ``call["sid"]``."""
    return Frontend(lambda: peer.seen("ice_candidates_new", lambda a: a[0] == call.get("sid")))


def session_of(sid: str) -> Any:
    return lambda a: json.loads(a[0]).get("session_id") == sid


async def until(condition: Any, what: str, step: Any = None, timeout: float = 20) -> None:
    """Wait (polling) until ``condition()``, running ``step()`` first each time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        if step is not None:
            await step()
        if condition():
            return
        if loop.time() > end:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


async def propose(
    world: World, caller: Frontend, call: dict[str, str], trickle: bool = False
) -> str:
    """alice calls bob's bare JID with ``caller``'s offer: the session id (returned at once).
    ``trickle``: the offer has no candidate, they are given with ``ice_candidates_add`` while
    the call rings (the daemon keeps them until the session-initiate)."""
    offer = await caller.local(offer=True)
    call_data = {"sdp": strip_candidates(offer) if trickle else offer}
    sid: str = await world.alice.bridge.call_start(world.bob.jid, json.dumps(call_data), "alice")
    call["sid"] = sid
    if trickle:
        await world.alice.bridge.ice_candidates_add(sid, json.dumps(trickled(offer)), "alice")
    return sid


def endpoints(peer: Peer, sid: str) -> set[tuple[str, str, int]]:
    """(content, address, port) of the candidates ``peer``'s frontend got for the call."""
    return {
        (name, c["address"], c["port"])
        for args in peer.seen("ice_candidates_new", lambda a: a[0] == sid)
        for name, media in json.loads(args[1]).items()
        for c in media["candidates"]
    }


def gathered(fe: Frontend) -> set[tuple[str, str, int]]:
    """(content, address, port) of the candidates a frontend gathered."""
    return {
        (name, c["address"], c["port"])
        for name, media in trickled(fe.pc.localDescription.sdp).items()
        for c in media["candidates"]
    }


def check_proposal(world: World, args: tuple[Any, ...], sid: str) -> None:
    data = json.loads(args[0])
    assert data["type"] == "call" and data["subtype"] == "jingle_message"
    assert data["media"] == ["audio", "video"]
    assert data["from_jid"] == world.alice.full and data["session_id"] == sid
    assert "sdp" not in data  # no offer yet: the session is not started


async def ring(world: World, caller: Frontend, call: dict[str, str]) -> tuple[str, Any]:
    """alice calls bob's bare JID: (the session id, bob's checked ``action_new`` for the
    proposal)."""
    sid = await propose(world, caller, call)
    asked = await world.bob.wait("action_new", session_of(sid))
    check_proposal(world, asked, sid)
    return sid, asked


async def answer(
    world: World,
    callee: Peer,
    callee_fe: Frontend,
    caller_fe: Frontend,
    sid: str,
    later: bool = False,
) -> None:
    """``callee`` accepted the proposal: the session's pre-accepted offer comes, its frontend
    answers (candidates trickled, some before the answer); alice's frontend gets the answer
    and both connect. ``later``: the frontend accepts the offer first, then gives its SDP
    (call_answer_sdp)."""
    offered = await callee.wait(
        "action_new", lambda a: session_of(sid)(a) and "sdp" in json.loads(a[0])
    )
    data = json.loads(offered[0])
    assert data["type"] == "call" and data["subtype"] == "video"
    assert data["pre_accepted"] is True
    assert data["from_jid"] == world.alice.full
    assert sorted(data["media"]) == ["audio", "video"]
    await callee_fe.pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "offer"))
    full_answer = await callee_fe.local(offer=False)
    # a browser trickles as soon as the answer is its local description, before or while
    # it gives the answer: the first content's candidates before, the others' after
    candidates = trickled(full_answer)
    first = next(iter(candidates))
    early = json.dumps({first: candidates.pop(first)})
    answer_sdp = strip_candidates(full_answer)
    if later:
        await callee.bridge.action_launch(offered[1], json.dumps({"accept": True}), callee.profile)
        await callee.bridge.ice_candidates_add(sid, early, callee.profile)
        await callee.bridge.call_answer_sdp(sid, answer_sdp, callee.profile)
    else:
        await callee.bridge.ice_candidates_add(sid, early, callee.profile)
        await callee.bridge.action_launch(
            offered[1], json.dumps({"accept": True, "sdp": answer_sdp}), callee.profile
        )
    await callee.bridge.ice_candidates_add(sid, json.dumps(candidates), callee.profile)
    setup = await world.alice.wait("call_setup", lambda a: a[0] == sid)
    setup_data = json.loads(setup[1])
    assert setup_data["role"] == "initiator"
    await caller_fe.pc.setRemoteDescription(RTCSessionDescription(setup_data["sdp"], "answer"))

    async def relay() -> None:
        await caller_fe.add_candidates()
        await callee_fe.add_candidates()

    await until(lambda: caller_fe.connected() and callee_fe.connected(), "ICE+DTLS", relay)
    for fe in (caller_fe, callee_fe):
        assert sorted(t.kind for t in fe.tracks) == ["audio", "video"]
        for track in fe.tracks:
            frame = await asyncio.wait_for(track.recv(), 10)  # media really flows
            assert frame is not None
    # each frontend got the other's candidates through the bridge (ICE would connect with
    # one side's only, by peer-reflexive candidates)
    assert endpoints(world.alice, sid) == gathered(callee_fe)
    assert endpoints(callee, sid) == gathered(caller_fe)


async def hang_up(world: World, who: Peer, other: Peer, sid: str) -> None:
    """``who`` ends the call: both get call_ended (success), <finish/> goes both ways."""
    await who.bridge.call_end(sid, "", who.profile)
    for peer in (who, other):
        ended = await peer.wait("call_ended", lambda a: a[0] == sid)
        assert json.loads(ended[1])["reason"] == "success", ended
    sent = await world.observer.wait(sid, "sent", "finish")
    received = await world.observer.wait(sid, "received", "finish")
    assert sent.reason == received.reason == "success"
    callee = other if who is world.alice else who
    assert sent.to == received.sender == callee.full


@aio
async def test_call_bare_jid(world: World) -> None:
    """alice calls bob's bare JID: bob's frontend is asked (no SDP), accepts (<proceed/>),
    answers the pre-accepted offer; ICE connects over loopback, media flows both ways; alice
    hangs up: both frontends get call_ended (success), <finish/> goes both ways. alice is
    not in bob's roster: his device does not say it rings."""
    alice, bob, observer = world.alice, world.bob, world.observer
    call: dict[str, str] = {}
    caller, callee = frontend(alice, call), frontend(bob, call)
    try:
        sid, asked = await ring(world, caller, call)
        assert json.loads(asked[0])["in_roster"] is False
        propose_seen = await observer.wait(sid, "sent", "propose")
        assert propose_seen.to == bob.jid  # the bare JID: every device
        media = [d.getAttribute("media") for d in propose_seen.element.elements(NS_RTP)]
        assert media == ["audio", "video"]
        await bob.bridge.action_launch(asked[1], json.dumps({"accept": True}), "bob")
        proceed = await observer.wait(sid, "received", "proceed")
        assert proceed.sender == bob.full and proceed.to == alice.full
        await answer(world, bob, callee, caller, sid)
        assert len(bob.seen("action_new", session_of(sid))) == 2  # asked once, then the offer
        await hang_up(world, alice, bob, sid)
        assert not alice.seen("call_info", lambda a: a[0] == sid)  # nobody rang
        assert [m.name for m in observer.of(sid) if m.name == "ringing"] == []
    finally:
        await caller.close()
        await callee.close()


async def second_device(world: World) -> None:
    """Connect bob's tablet, and wait until carbons are on for both of bob's devices (each
    sees the other's message to alice as a carbon)."""
    bob, tablet = world.bob, world.tablet
    before = len(tablet.seen("connected"))
    await tablet.bridge.connect("tablet", "", {})
    await until(lambda: len(tablet.seen("connected")) > before, "the tablet connected", None, 15)
    tablet.full = tablet.seen("connected")[-1][0]
    assert tablet.full.split("/")[0] == bob.jid and tablet.full != bob.full
    for sender, other in ((bob, tablet), (tablet, bob)):
        # until carbons are enabled (in the background after connecting), resend
        body = unique(f"from {sender.profile}")

        async def send(sender: Peer = sender, body: str = body) -> None:
            await sender.bridge.message_send(
                world.alice.jid, {"": body}, {}, "chat", "", sender.profile
            )

        def carbon(other: Peer = other, body: str = body) -> bool:
            return bool(other.seen("message_new", lambda a: a[4] == {"": body}))

        await until(carbon, f"carbons of {sender.profile} at {other.profile}", send, 10)


async def disconnect(peer: Peer) -> None:
    before = len(peer.seen("disconnected"))
    await peer.bridge.disconnect(peer.profile)
    await until(lambda: len(peer.seen("disconnected")) > before, "disconnected", None, 15)


@aio
async def test_two_devices_one_answers(world: World) -> None:
    """bob has two devices, alice is in his roster: both are asked and say they ring
    (call_info ringing at alice, once per device); the tablet accepts, so bob's other
    device is told "accepted on another device" (action_update: it stops ringing) and never
    gets the offer; the session goes to the tablet, media flows; the tablet hangs up.
    Here alice's frontend trickles its candidates while the call rings, and the tablet's
    accepts the offer before giving its answer (call_answer_sdp)."""
    alice, bob, tablet, observer = world.alice, world.bob, world.tablet, world.observer
    await second_device(world)
    call: dict[str, str] = {}
    caller, callee = frontend(alice, call), frontend(tablet, call)
    try:
        await bob.bridge.contact_add(alice.jid, "bob")
        for device in (bob, tablet):
            await device.wait("contact_new", lambda a: a[0] == alice.jid)
        sid = await propose(world, caller, call, trickle=True)
        asked_bob = await bob.wait("action_new", session_of(sid))
        asked_tablet = await tablet.wait("action_new", session_of(sid))
        for asked in (asked_bob, asked_tablet):
            check_proposal(world, asked, sid)
            assert json.loads(asked[0])["in_roster"] is True
        for device in (bob, tablet):
            ringing = await alice.wait(
                "call_info",
                lambda a, d=device: (
                    a[0] == sid and a[1] == "ringing" and json.loads(a[2]) == {"from_jid": d.full}
                ),
            )
            assert ringing
        await tablet.bridge.action_launch(asked_tablet[1], json.dumps({"accept": True}), "tablet")
        update = await bob.wait("action_update", lambda a: a[0] == asked_bob[1])
        assert json.loads(update[1]) == {
            "status": "cancelled",
            "reason": "accepted on another device",
        }
        proceed = await observer.wait(sid, "received", "proceed")
        assert proceed.sender == tablet.full
        await answer(world, tablet, callee, caller, sid, later=True)
        await hang_up(world, tablet, alice, sid)
        assert len(bob.seen("action_new", session_of(sid))) == 1  # never offered the session
        for name in ("call_ended", "ice_candidates_new", "call_setup"):
            assert not bob.seen(name, lambda a: a[0] == sid), name
        assert len(alice.seen("call_info", lambda a: a[0] == sid)) == 2  # once per device
    finally:
        await caller.close()
        await callee.close()
        await disconnect(tablet)


@aio
async def test_callee_rejects(world: World) -> None:
    """bob declines the proposal: <reject/> (busy), alice's frontend gets call_ended with
    that reason, and no session follows (bob is never offered one)."""
    alice, bob, observer = world.alice, world.bob, world.observer
    call: dict[str, str] = {}
    caller = frontend(alice, call)
    try:
        sid, asked = await ring(world, caller, call)
        await bob.bridge.action_launch(asked[1], json.dumps({"accept": False}), "bob")
        ended = await alice.wait("call_ended", lambda a: a[0] == sid)
        assert json.loads(ended[1])["reason"] == "busy"
        reject = await observer.wait(sid, "received", "reject")
        assert reject.sender == bob.full and reject.reason == "busy"
        assert not alice.seen("call_setup", lambda a: a[0] == sid)
        assert not [m for m in observer.of(sid) if m.name in ("proceed", "finish")]
        assert len(bob.seen("action_new", session_of(sid))) == 1
        assert not bob.seen("call_ended", lambda a: a[0] == sid)
    finally:
        await caller.close()


@aio
async def test_caller_hangs_up_while_ringing(world: World) -> None:
    """alice hangs up before bob answers: <retract/> (cancel), alice's frontend gets
    call_ended (cancel), bob's question is withdrawn ("cancelled by the sender": it stops
    ringing) and can no longer be answered."""
    alice, bob, observer = world.alice, world.bob, world.observer
    call: dict[str, str] = {}
    caller = frontend(alice, call)
    try:
        sid, asked = await ring(world, caller, call)
        await alice.bridge.call_end(sid, "", "alice")
        ended = await alice.wait("call_ended", lambda a: a[0] == sid)
        assert json.loads(ended[1])["reason"] == "cancel"
        update = await bob.wait("action_update", lambda a: a[0] == asked[1])
        assert json.loads(update[1]) == {"status": "cancelled", "reason": "cancelled by the sender"}
        retract = await observer.wait(sid, "sent", "retract")
        assert retract.to == bob.jid and retract.reason == "cancel"
        with pytest.raises(BridgeError) as error:
            await bob.bridge.action_launch(asked[1], json.dumps({"accept": True}), "bob")
        assert error.value.code == "NotFound"
        assert not [m for m in observer.of(sid) if m.name == "proceed"]
        assert len(bob.seen("action_new", session_of(sid))) == 1
    finally:
        await caller.close()


@aio
async def test_nobody_answers(world: World) -> None:
    """bob does not answer: after call_ring_timeout the call is retracted (<timeout/>),
    alice's frontend gets call_ended (timeout) and bob's question is withdrawn: nothing
    rings forever."""
    alice, bob, observer = world.alice, world.bob, world.observer
    call: dict[str, str] = {}
    caller = frontend(alice, call)
    try:
        sid = await propose(world, caller, call)
        asked = await bob.wait("action_new", session_of(sid))
        ended = await alice.wait("call_ended", lambda a: a[0] == sid, RING + 10)
        assert json.loads(ended[1]) == {
            "reason": "timeout",
            "fallback": False,
            "text": f"{bob.jid} did not answer within {RING} s",
        }
        update = await bob.wait("action_update", lambda a: a[0] == asked[1])
        assert json.loads(update[1]) == {"status": "cancelled", "reason": "cancelled by the sender"}
        retract = await observer.wait(sid, "sent", "retract")
        assert retract.to == bob.jid and retract.reason == "timeout"
    finally:
        await caller.close()


@aio
async def test_caller_hangs_up_as_the_callee_accepts(world: World) -> None:
    """dave (another client: a bare stream) calls bob's bare JID (audio) and hangs up
    (<retract/>) just as bob's <proceed/> reaches him: bob's frontend, which accepted and
    waits for the offer of that session, gets call_ended (cancel) instead of waiting
    forever; no offer comes."""
    bob = world.bob
    dave_jid = world.prosody.adduser(unique("dave"), "dave-pass")
    raw = await RawClient.login(world.prosody, dave_jid, "dave-pass", "raw")
    try:
        answers: asyncio.Queue[tuple[str, domish.Element]] = asyncio.Queue()

        def on_message(message: domish.Element) -> None:
            for child in message.elements(NS_JMI):
                answers.put_nowait((message.getAttribute("from", ""), child))

        raw.xs.addObserver("/message", on_message)
        sid = str(uuid.uuid4())
        store = "<store xmlns='urn:xmpp:hints'/>"
        raw.xs.send(
            f"<message to='{bob.jid}' type='chat' id='jm-propose-{sid}'>"
            f"<propose xmlns='{NS_JMI}' id='{sid}'><description xmlns='{NS_RTP}' "
            f"media='audio'/></propose>{store}</message>"
        )
        asked = await bob.wait("action_new", session_of(sid))
        data = json.loads(asked[0])
        assert (data["type"], data["subtype"], data["media"]) == (
            "call",
            "jingle_message",
            ["audio"],
        )
        assert data["from_jid"] == raw.jid.full()
        await bob.bridge.action_launch(asked[1], json.dumps({"accept": True}), "bob")
        sender, answer = await asyncio.wait_for(answers.get(), 15)
        assert (sender, answer.name, answer["id"]) == (bob.full, "proceed", sid)
        raw.xs.send(
            f"<message to='{bob.jid}' type='chat' id='jm-retract-{sid}'>"
            f"<retract xmlns='{NS_JMI}' id='{sid}'><reason xmlns='{NS_JINGLE}'><cancel/>"
            f"</reason></retract>{store}</message>"
        )
        ended = await bob.wait("call_ended", lambda a: a[0] == sid)
        assert json.loads(ended[1]) == {
            "reason": "cancel",
            "fallback": False,
            "text": "cancelled by the sender",
        }
        assert len(bob.seen("action_new", session_of(sid))) == 1
    finally:
        raw.close()


@aio
async def test_both_devices_accept_at_once(world: World) -> None:
    """bob picks the call up on both devices at the same time: the first <proceed/> alice's
    daemon gets wins (the session and media go there); the other device is told, whatever
    the race: either its answer came after the winner's proceed (its action was cancelled,
    "accepted on another device"), or it proceeded too and waits for a session that goes
    elsewhere: call_ended (cancel, "accepted on another device") once alice's <finish/> to
    the winner shows in its carbons. It is never offered the session."""
    alice, bob, tablet = world.alice, world.bob, world.tablet
    await second_device(world)
    call: dict[str, str] = {}
    caller = frontend(alice, call)
    callees = {"bob": frontend(bob, call), "tablet": frontend(tablet, call)}
    try:
        sid = await propose(world, caller, call)
        asked = {p.profile: await p.wait("action_new", session_of(sid)) for p in (bob, tablet)}
        results = await asyncio.gather(
            *(
                p.bridge.action_launch(asked[p.profile][1], json.dumps({"accept": True}), p.profile)
                for p in (bob, tablet)
            ),
            return_exceptions=True,
        )

        def offered(peer: Peer) -> bool:
            return any("sdp" in json.loads(a[0]) for a in peer.seen("action_new", session_of(sid)))

        await until(lambda: offered(bob) or offered(tablet), "the session offered to a device")
        winner, loser = (bob, tablet) if offered(bob) else (tablet, bob)
        await answer(world, winner, callees[winner.profile], caller, sid)
        await hang_up(world, alice, winner, sid)
        lost = results[0 if loser is bob else 1]
        if isinstance(lost, BridgeError):  # answered too late: the action was gone
            assert lost.code == "NotFound", lost
            update = await loser.wait("action_update", lambda a: a[0] == asked[loser.profile][1])
            expected = {"status": "cancelled", "reason": "accepted on another device"}
            assert json.loads(update[1]) == expected
        else:
            ended = await loser.wait("call_ended", lambda a: a[0] == sid)
            assert json.loads(ended[1]) == {
                "reason": "cancel",
                "fallback": False,
                "text": "accepted on another device",
            }
        assert not offered(loser)
    finally:
        await caller.close()
        for fe in callees.values():
            await fe.close()
        await disconnect(tablet)
