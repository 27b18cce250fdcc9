"""End to end: Jingle file transfer (XEP-0234) over SOCKS5 (direct, proxy65) and IBB, Jingle
Message Initiation (XEP-0353) with two devices, refusal, a sender vanishing mid-transfer, and
``li file send`` / ``li file receive``, against a real Prosody.

Two daemons, each on its own private bus:

- the "direct" daemon: ``socks5_interfaces = 127.0.0.1`` (loopback only, allowed), no proxy;
  profiles ``alice`` and ``bob``;
- the "proxy" daemon: ``socks5_interfaces = none`` (no direct candidate at all), the
  ``proxy.localhost`` proxy65 component found by disco; profiles ``palice``, ``pbob`` and
  ``phone``, a second device of the direct daemon's ``bob`` (same account).

Proposals (XEP-0353) come from alice's daemon (``file_send`` with ``{"jmi": true}``) and from
a Jingle sender of our own (:class:`RawSender`, a bare Twisted stream speaking XEP-0353,
XEP-0166, XEP-0234 and XEP-0261), as another client would send them.

Measured here (2 cores): 50 MB take ~0.3 s over SOCKS5 direct, ~1.5 s through Prosody's
proxy65 and 25-40 s over IBB (4096-byte blocks, one IQ in flight), so IBB moves 50 MB too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message
from dbus_fast.aio import MessageBus
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from bench.file_transfer import make_file, sha256_file
from libervia.cli import constants as C
from libervia.frontends.bridge.client import BridgeClient
from tests.conftest import aio, run
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.e2e.test_carbons_mam import RawClient
from tests.e2e.test_cli import LI

pytestmark = pytest.mark.timeout(180)

MB = 1_000_000
BIG = 50 * MB
#: what the interrupted in-band transfer would move (it never gets far)
INTERRUPTED_SIZE = 10 * MB
SIGNALS = [
    "connected",
    "action_new",
    "action_update",
    "progress_started",
    "progress_finished",
    "progress_error",
]
DIRECT_CONFIG = "socks5_interfaces = 127.0.0.1\nsocks5_allow_loopback = true\nsocks5_proxy = none\n"
PROXY_CONFIG = "socks5_interfaces = none\n"

NS_JINGLE = "urn:xmpp:jingle:1"
NS_FT = "urn:xmpp:jingle:apps:file-transfer:5"
NS_IBB_TRANSPORT = "urn:xmpp:jingle:transports:ibb:1"
NS_IBB = "http://jabber.org/protocol/ibb"
NS_JMI = "urn:xmpp:jingle-message:0"
NS_HASHES = "urn:xmpp:hashes:2"


@dataclass
class Peer:
    """A connected profile of one of the daemons."""

    daemon: Daemon
    bridge: BridgeClient
    events: Recorder
    profile: str
    jid: str
    full: str

    async def wait(self, name: str, pred: Any = lambda a: True, timeout: float = 30) -> Any:
        """The first ``name`` signal of this profile matching ``pred``."""
        # the profile is the last argument of every signal recorded here
        return await self.events.wait(name, lambda a: a[-1] == self.profile and pred(a), timeout)

    def seen(self, name: str, pred: Any = lambda a: True) -> list[tuple[Any, ...]]:
        return [a for n, a in self.events.events if n == name and a[-1] == self.profile and pred(a)]


@dataclass
class World:
    prosody: Prosody
    direct: Daemon
    proxy: Daemon
    alice: Peer
    bob: Peer
    palice: Peer
    pbob: Peer
    phone: Peer


async def _start(
    daemon: Daemon, prosody: Prosody, accounts: list[tuple[str, str, bool]]
) -> list[Peer]:
    """Profiles (profile, user, register) created and connected on ``daemon``."""
    bridge = await daemon.bridge()
    events = Recorder(bridge, SIGNALS)
    jids = {}
    for profile, user, register in accounts:
        jids[profile] = await make_account(bridge, prosody, profile, user, register=register)
    peers = []
    for profile, _, _ in accounts:
        await bridge.connect(profile, "", {})
        connected = await events.wait("connected", lambda a, p=profile: a[1] == p)
        peers.append(Peer(daemon, bridge, events, profile, jids[profile], connected[0]))
    await bridge.refresh()  # the plugins' methods (file_send)
    return peers


@pytest.fixture(scope="module")
def world(
    prosody: Prosody, bus: DBusDaemon, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    direct = Daemon(tmp_path_factory.mktemp("direct"), bus.address, DIRECT_CONFIG)
    second_bus = DBusDaemon()
    proxy: Daemon | None = None
    bridges: list[BridgeClient] = []
    try:
        second_bus.start()
        proxy = Daemon(tmp_path_factory.mktemp("proxy"), second_bus.address, PROXY_CONFIG)
        direct.start()
        proxy.start()
        bob_user = unique("bob")
        alice, bob = run(
            _start(direct, prosody, [("alice", unique("alice"), True), ("bob", bob_user, True)])
        )
        palice, pbob, phone = run(
            _start(
                proxy,
                prosody,
                [
                    ("palice", unique("palice"), True),
                    ("pbob", unique("pbob"), True),
                    ("phone", bob_user, False),
                ],
            )
        )
        bridges += [alice.bridge, palice.bridge]
        yield World(prosody, direct, proxy, alice, bob, palice, pbob, phone)
    finally:
        for bridge in bridges:
            run(bridge.close())
        codes = [direct.stop(), proxy.stop() if proxy is not None else 0]
        second_bus.stop()
        assert codes == [0, 0], direct.logs() + (proxy.logs() if proxy else "")


async def send(
    sender: Peer, receiver: Peer, path: Path, transport: str, desc: str = ""
) -> dict[str, str]:
    answer = await sender.bridge.file_send(
        receiver.full,
        str(path),
        "",
        desc,
        json.dumps({"transport": transport}),
        sender.profile,
    )
    result: dict[str, str] = json.loads(answer)
    return result


async def offer_of(receiver: Peer, sid: str) -> tuple[str, dict[str, Any]]:
    """The action_new of the offer of session ``sid``: (action id, data)."""
    args = await receiver.wait("action_new", lambda a: json.loads(a[0]).get("session_id") == sid)
    return args[1], json.loads(args[0])


def fallback_logged(daemon: Daemon, sid: str) -> bool:
    """Whether a transport of session ``sid`` failed (the initiator then falls back)."""
    return any(
        f"Jingle session {sid}" in line and "failed" in line for line in daemon.logs().splitlines()
    )


async def transfer(
    world: World, sender: Peer, receiver: Peer, tmp_path: Path, size: int, transport: str
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``sender`` offers a new file of ``size`` random bytes to ``receiver``, who accepts into
    a new directory; returns both progress_finished metadata (sender, receiver) and the sid,
    once the received file was checked."""
    source = tmp_path / f"{transport}-{uuid.uuid4().hex[:6]}.bin"
    expected = make_file(source, size)
    inbox = tmp_path / f"inbox-{transport}"
    inbox.mkdir()
    sent = await send(sender, receiver, source, transport, f"{size} random bytes")
    action_id, data = await offer_of(receiver, sent["session_id"])
    assert data["type"] == "file" and data["subtype"] == "jingle"
    assert data["from_jid"] == sender.full
    assert data["file"]["name"] == source.name and data["file"]["size"] == size
    assert data["file"]["hash_algo"] == "sha-256"
    assert data["file"]["desc"] == f"{size} random bytes"
    await receiver.bridge.action_launch(
        action_id, json.dumps({"accept": True, "path": str(inbox)}), receiver.profile
    )
    timeout = 20 + size / (0.5 * MB if transport == "ibb" else 5 * MB)
    got = await receiver.wait("progress_finished", lambda a: a[0] == data["progress_id"], timeout)
    done = await sender.wait("progress_finished", lambda a: a[0] == sent["progress"], 30)
    received, sender_end = json.loads(got[1]), json.loads(done[1])
    final = inbox / source.name
    assert sorted(os.listdir(inbox)) == [source.name]  # no partial file left
    assert received["path"] == str(final) and received["size"] == size
    assert received["hash_algo"] == "sha-256" and received["hash_verified"] is True
    assert sender_end["size"] == size and sender_end["hash_verified"] is True
    assert final.stat().st_size == size
    assert sha256_file(final) == expected
    assert not sender.seen("progress_error", lambda a: a[0] == sent["progress"])
    return sender_end, received, sent["session_id"]


@aio
async def test_socks5_direct_50_mb(world: World, tmp_path: Path) -> None:
    """50 MB over a direct SOCKS5 connection on 127.0.0.1 (no proxy configured: only direct
    candidates, and no fallback to IBB happened)."""
    _, received, sid = await transfer(world, world.alice, world.bob, tmp_path, BIG, "s5b")
    assert not fallback_logged(world.direct, sid)
    listening = [line for line in world.direct.logs().splitlines() if "listening on" in line]
    assert listening and all("listening on 127.0.0.1 " in line for line in listening)
    assert received["duration"] < 60


@aio
async def test_socks5_proxy_50_mb(world: World, tmp_path: Path) -> None:
    """50 MB through Prosody's proxy65: neither side offers a direct candidate (no SOCKS5
    server started at all), so the proxy carried the bytes, activated by the initiator."""
    _, _, sid = await transfer(world, world.palice, world.pbob, tmp_path, BIG, "s5b")
    assert not fallback_logged(world.proxy, sid)
    logs = world.proxy.logs()
    assert "SOCKS5 server listening" not in logs
    assert "SOCKS5 proxy: proxy.localhost at 127.0.0.1" in logs


@aio
async def test_ibb(world: World, tmp_path: Path) -> None:
    """IBB only (extra transport "ibb"): 50 MB in-band, through the server (~25 s)."""
    await transfer(world, world.alice, world.bob, tmp_path, BIG, "ibb")


@aio
async def test_refusal(world: World, tmp_path: Path) -> None:
    """bob declines: alice's progress fails with decline, nothing is written."""
    source = tmp_path / "unwanted.bin"
    make_file(source, 100_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sent = await send(world.alice, world.bob, source, "auto")
    action_id, data = await offer_of(world.bob, sent["session_id"])
    await world.bob.bridge.action_launch(
        action_id, json.dumps({"accept": False, "path": str(inbox)}), "bob"
    )
    error = await world.alice.wait("progress_error", lambda a: a[0] == sent["progress"])
    assert "decline" in error[1]
    await asyncio.sleep(0.5)  # anything written would be there by now
    assert os.listdir(inbox) == []
    assert not world.bob.seen("progress_started", lambda a: a[0] == data["progress_id"])
    assert not world.alice.seen("progress_finished", lambda a: a[0] == sent["progress"])


async def interrupted(
    world: World, tmp_path: Path, size: int, transport: str, moved: int
) -> tuple[str, Path, str]:
    """palice offers pbob a file; once ``moved`` bytes arrived, palice disconnects.
    Returns pbob's progress id, his directory and the file name."""
    source = tmp_path / f"interrupted-{transport}.bin"
    make_file(source, size)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    palice, pbob = world.palice, world.pbob
    sent = await send(palice, pbob, source, transport)
    action_id, data = await offer_of(pbob, sent["session_id"])
    await pbob.bridge.action_launch(
        action_id, json.dumps({"accept": True, "path": str(inbox)}), "pbob"
    )
    progress_id = data["progress_id"]
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while True:  # until some data arrived
        position = int((await pbob.bridge.progress_get(progress_id, "pbob"))["position"])
        if position >= moved:
            break
        assert loop.time() < end, "no data moved"
        await asyncio.sleep(0.01)
    assert position < size
    assert (inbox / source.name).exists()  # the name is reserved while receiving
    await palice.bridge.disconnect("palice")
    return progress_id, inbox, source.name


async def reconnect(peer: Peer) -> None:
    await peer.bridge.connect(peer.profile, "", {})
    connected = await peer.events.wait(
        "connected", lambda a: a[1] == peer.profile and a[0] != peer.full
    )
    peer.full = connected[0]


@aio
async def test_sender_disconnects_mid_socks5_transfer(world: World, tmp_path: Path) -> None:
    """palice disconnects while pbob receives through the proxy: the bytestream closes
    early, pbob reports the error at once and keeps no file, neither under the final name
    nor as a partial file."""
    progress_id, inbox, _ = await interrupted(world, tmp_path, BIG, "s5b", 2 * MB)
    try:
        error = await world.pbob.wait("progress_error", lambda a: a[0] == progress_id, 10)
        # the bytestream's early end, or a session-terminate (gone) sent before leaving
        assert any(word in error[1] for word in ("bytes", "closed", "gone")), error
        assert not world.pbob.seen("progress_finished", lambda a: a[0] == progress_id)
        assert os.listdir(inbox) == []
    finally:
        await reconnect(world.palice)


@aio
async def test_sender_goes_offline_mid_ibb_transfer(world: World, tmp_path: Path) -> None:
    """pbob follows palice's presence; palice disconnects while sending in-band: nothing
    closes the bytestream, but her unavailable presence ends the session ("gone", 10 s later;
    or at once if her daemon terminates its sessions before leaving): pbob reports the error
    and keeps no file. (Without the presence subscription, pbob waits forever: no IBB
    inactivity timeout.)"""
    palice, pbob = world.palice, world.pbob
    await pbob.bridge.contact_add(palice.jid, "pbob")
    await palice.bridge.subscription("subscribed", pbob.jid, "palice")
    loop = asyncio.get_running_loop()
    end = loop.time() + 15
    while palice.jid not in await pbob.bridge.presence_statuses_get("pbob"):
        assert loop.time() < end, "pbob does not see palice's presence"
        await asyncio.sleep(0.05)
    progress_id, inbox, _ = await interrupted(world, tmp_path, INTERRUPTED_SIZE, "ibb", 200_000)
    try:
        error = await pbob.wait("progress_error", lambda a: a[0] == progress_id, 20)
        assert "gone" in error[1], error
        assert not pbob.seen("progress_finished", lambda a: a[0] == progress_id)
        assert os.listdir(inbox) == []
    finally:
        await reconnect(palice)


@aio
async def test_jmi_file_send_two_devices(world: World, tmp_path: Path) -> None:
    """file_send with extra {"jmi": true} to bob's bare JID: both of bob's devices (two
    daemons) are asked; the phone accepts, so the other device is told "accepted on another
    device" and the file goes to the phone (direct SOCKS5 from the other daemon), with the
    proposal's id as sid and the progress id announced in the question, asked only once."""
    alice, bob, phone = world.alice, world.bob, world.phone
    source = tmp_path / "proposed by file_send.bin"
    expected = make_file(source, 5 * MB)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    answer = await alice.bridge.file_send(
        bob.jid, str(source), "", "", json.dumps({"jmi": True}), "alice"
    )
    sent = json.loads(answer)
    sid = sent["session_id"]

    def is_proposal(args: tuple[Any, ...]) -> bool:
        return json.loads(args[0]).get("session_id") == sid

    asked_phone = await phone.wait("action_new", is_proposal)
    asked_bob = await bob.wait("action_new", is_proposal)
    offer = json.loads(asked_phone[0])
    assert offer["type"] == "file" and offer["subtype"] == "jingle_message"
    assert offer["from_jid"] == alice.full
    assert offer["file"]["name"] == source.name and offer["file"]["size"] == 5 * MB
    await phone.bridge.action_launch(
        asked_phone[1], json.dumps({"accept": True, "path": str(inbox)}), "phone"
    )
    update = await bob.wait("action_update", lambda a: a[0] == asked_bob[1])
    assert json.loads(update[1]) == {"status": "cancelled", "reason": "accepted on another device"}
    finished = await phone.wait("progress_finished", lambda a: a[0] == offer["progress_id"])
    metadata = json.loads(finished[1])
    assert metadata["hash_verified"] is True and metadata["size"] == 5 * MB
    assert metadata["path"] == str(inbox / source.name)
    assert sha256_file(inbox / source.name) == expected
    assert sorted(os.listdir(inbox)) == [source.name]
    started = phone.seen("progress_started", lambda a: a[0] == offer["progress_id"])
    assert json.loads(started[0][1])["session_id"] == sid
    assert len(phone.seen("action_new", is_proposal)) == 1  # not asked again
    done = await alice.wait("progress_finished", lambda a: a[0] == sent["progress"])
    assert json.loads(done[1])["hash_verified"] is True
    assert not bob.seen("progress_started", lambda a: a[0] == offer["progress_id"])
    assert not fallback_logged(world.direct, sid)

    # declined on one device: the sender's progress fails, the other device is told
    source = tmp_path / "declined.bin"
    make_file(source, 1000)
    sent = json.loads(
        await alice.bridge.file_send(
            bob.jid, str(source), "", "", json.dumps({"jmi": True}), "alice"
        )
    )
    sid = sent["session_id"]
    asked_phone = await phone.wait("action_new", is_proposal)
    asked_bob = await bob.wait("action_new", is_proposal)
    await bob.bridge.action_launch(asked_bob[1], json.dumps({"accept": False}), "bob")
    update = await phone.wait("action_update", lambda a: a[0] == asked_phone[1])
    assert json.loads(update[1])["reason"] == "declined on another device"
    error = await alice.wait("progress_error", lambda a: a[0] == sent["progress"])
    assert "did not take the file" in error[1]


class RawSender:
    """A minimal Jingle file sender on a bare Twisted stream: JMI propose to a bare JID, then
    session-initiate (XEP-0234 offer, IBB transport) to the device that proceeded, the IBB
    data, and answers to the peer's Jingle IQs."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw
        if not hasattr(raw.xs, "iqDeferreds"):
            xmlstream.upgradeWithIQResponseTracker(raw.xs)
        self.jmi: asyncio.Queue[tuple[str, domish.Element]] = asyncio.Queue()
        self.jingle: list[domish.Element] = []
        self._jingle_changed = asyncio.Event()
        raw.xs.addObserver("/message", self._on_message)
        raw.xs.addObserver("/iq[@type='set']", self._on_iq)

    def _on_message(self, message: domish.Element) -> None:
        for child in message.elements():
            if child.uri == NS_JMI:
                self.jmi.put_nowait((message.getAttribute("from", ""), child))

    def _on_iq(self, iq: domish.Element) -> None:
        jingle = next(iq.elements(NS_JINGLE, "jingle"), None)
        if jingle is None:
            return
        self.jingle.append(jingle)
        self._jingle_changed.set()
        result = domish.Element((None, "iq"))
        result["type"] = "result"
        result["id"] = iq["id"]
        result["to"] = iq["from"]
        self.raw.xs.send(result)

    async def jingle_action(self, action: str, timeout: float = 30) -> domish.Element:
        async def find() -> domish.Element:
            while True:
                for element in self.jingle:
                    if element.getAttribute("action") == action:
                        return element
                self._jingle_changed.clear()
                await self._jingle_changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def next_jmi(self, timeout: float = 30) -> tuple[str, domish.Element]:
        return await asyncio.wait_for(self.jmi.get(), timeout)

    @staticmethod
    def description(name: str, data: bytes) -> domish.Element:
        description = domish.Element((NS_FT, "description"))
        file_el = description.addElement("file")
        file_el.addElement("name", content=name)
        file_el.addElement("size", content=str(len(data)))
        file_el.addElement("desc", content="proposed first")
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        file_el.addElement((NS_HASHES, "hash"), content=digest)["algo"] = "sha-256"
        return description

    def propose(self, to: str, sid: str, name: str, data: bytes) -> None:
        message = domish.Element((None, "message"))
        message["to"] = to
        message["type"] = "chat"
        message["id"] = f"jm-propose-{sid}"
        message.addElement((NS_JMI, "propose"))["id"] = sid
        message.propose.addChild(self.description(name, data))
        message.addElement(("urn:xmpp:hints", "store"))
        self.raw.xs.send(message)

    async def iq_set(self, to: str, child: domish.Element) -> domish.Element:
        iq = xmlstream.IQ(self.raw.xs, "set")
        iq.addChild(child)
        answer = iq.send(to).asFuture(asyncio.get_running_loop())
        return await asyncio.wait_for(answer, 30)

    async def send_file(self, to: str, sid: str, name: str, data: bytes) -> None:
        """session-initiate, wait for session-accept, then the bytes over IBB."""
        ibb_sid = uuid.uuid4().hex
        jingle = domish.Element((NS_JINGLE, "jingle"))
        jingle["action"] = "session-initiate"
        jingle["initiator"] = self.raw.jid.full()
        jingle["sid"] = sid
        content = jingle.addElement("content")
        content["creator"] = "initiator"
        content["name"] = "0"
        content["senders"] = "initiator"
        content.addChild(self.description(name, data))
        transport = content.addElement((NS_IBB_TRANSPORT, "transport"))
        transport["block-size"] = "4096"
        transport["sid"] = ibb_sid
        await self.iq_set(to, jingle)
        accept = await self.jingle_action("session-accept")
        accepted = next(accept.elements(NS_JINGLE, "content"))
        block = int(next(accepted.elements(NS_IBB_TRANSPORT, "transport"))["block-size"])
        assert 0 < block <= 4096
        opening = domish.Element((NS_IBB, "open"))
        opening["sid"], opening["block-size"], opening["stanza"] = ibb_sid, str(block), "iq"
        await self.iq_set(to, opening)
        for seq, start in enumerate(range(0, len(data), block)):
            chunk = domish.Element((NS_IBB, "data"))
            chunk["sid"], chunk["seq"] = ibb_sid, str(seq % 65536)
            chunk.addContent(base64.b64encode(data[start : start + block]).decode())
            await self.iq_set(to, chunk)
        closing = domish.Element((NS_IBB, "close"))
        closing["sid"] = ibb_sid
        await self.iq_set(to, closing)


@aio
async def test_jmi_two_devices(world: World, tmp_path: Path) -> None:
    """dave proposes files to bob's bare JID (XEP-0353): both of bob's devices (two daemons)
    ask; the one accepting proceeds, the other is told "accepted on another device"; the
    session that follows is not asked again and uses the announced progress id. Then a
    second proposal declined on the phone: the first device is told, dave gets a reject."""
    bob, phone = world.bob, world.phone
    dave_jid = world.prosody.adduser(unique("dave"), "dave-pass")
    raw = await RawClient.login(world.prosody, dave_jid, "dave-pass", "raw")
    try:
        sender = RawSender(raw)
        data = os.urandom(300_000)
        sid = uuid.uuid4().hex
        sender.propose(bob.jid, sid, "proposed.bin", data)

        def is_proposal(args: tuple[Any, ...], sid: str = sid) -> bool:
            return json.loads(args[0]).get("session_id") == sid

        asked_bob = await bob.wait("action_new", is_proposal)
        asked_phone = await phone.wait("action_new", is_proposal)
        offer = json.loads(asked_bob[0])
        assert offer["type"] == "file" and offer["subtype"] == "jingle_message"
        assert offer["from_jid"] == raw.jid.full()
        assert offer["file"]["name"] == "proposed.bin" and offer["file"]["size"] == len(data)
        assert json.loads(asked_phone[0])["file"] == offer["file"]
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        await bob.bridge.action_launch(
            asked_bob[1], json.dumps({"accept": True, "path": str(inbox)}), "bob"
        )
        update = await phone.wait("action_update", lambda a: a[0] == asked_phone[1])
        assert json.loads(update[1]) == {
            "status": "cancelled",
            "reason": "accepted on another device",
        }
        # dave hears a proceed from bob's accepting device (maybe after a ringing)
        while True:
            origin, answer = await sender.next_jmi()
            if answer.name == "proceed":
                break
            assert answer.name == "ringing", answer.toXml()
        assert origin == bob.full and answer["id"] == sid

        await sender.send_file(origin, sid, "proposed.bin", data)
        finished = await bob.wait("progress_finished", lambda a: a[0] == offer["progress_id"])
        metadata = json.loads(finished[1])
        assert metadata["hash_verified"] is True and metadata["size"] == len(data)
        assert (inbox / "proposed.bin").read_bytes() == data
        assert len(bob.seen("action_new", is_proposal)) == 1  # not asked twice
        terminate = await sender.jingle_action("session-terminate")
        assert next(terminate.elements(NS_JINGLE, "reason")).firstChildElement().name == "success"
        assert not phone.seen("progress_started", lambda a: a[0] == offer["progress_id"])

        # a second proposal, declined on the phone
        other = uuid.uuid4().hex
        sender.propose(bob.jid, other, "declined.bin", data)
        asked_bob = await bob.wait("action_new", lambda a: is_proposal(a, other))
        asked_phone = await phone.wait("action_new", lambda a: is_proposal(a, other))
        await phone.bridge.action_launch(asked_phone[1], json.dumps({"accept": False}), "phone")
        update = await bob.wait("action_update", lambda a: a[0] == asked_bob[1])
        assert json.loads(update[1])["reason"] == "declined on another device"
        while True:
            origin, answer = await sender.next_jmi()
            if answer.name == "reject":
                break
            assert answer.name in ("ringing", "finish"), answer.toXml()
        assert origin == phone.full and answer["id"] == other
    finally:
        raw.close()


async def _bus_has_pid(address: str, pid: int) -> bool:
    """Whether a process ``pid`` is connected to the bus at ``address``."""
    bus = await MessageBus(bus_address=address).connect()
    try:

        async def call(member: str, *args: Any) -> Any:
            reply = await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member=member,
                    signature="s" if args else "",
                    body=list(args),
                )
            )
            return reply.body[0] if reply.body else None

        for name in await call("ListNames"):
            if name.startswith(":") and await call("GetConnectionUnixProcessID", name) == pid:
                return True
        return False
    finally:
        bus.disconnect()


async def li_send_while_receiving(
    bus: DBusDaemon, receive: list[str], send: list[str], timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Start ``li`` with the ``receive`` arguments, wait until it is on the bus (and
    subscribed), run ``li`` with the ``send`` arguments, then wait for the receiver: both
    completed processes (text output), the receiver killed if it hangs."""
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": bus.address, "NO_COLOR": "1"}
    receiver = subprocess.Popen(
        [*LI, *receive],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while not await _bus_has_pid(bus.address, receiver.pid):
            assert receiver.poll() is None, receiver.communicate()
            assert loop.time() < end, "li file receive did not connect"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # its signal subscriptions, made right after connecting
        sent = await asyncio.to_thread(
            subprocess.run,
            [*LI, *send],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        out, err = await asyncio.to_thread(receiver.communicate, timeout=timeout)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    return sent, subprocess.CompletedProcess(receiver.args, receiver.returncode, out, err)


async def li_transfer(
    world: World, bus: DBusDaemon, tmp_path: Path, to: str, *options: str
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``li file receive ALICE --yes --path DIR -p bob -O json`` waits for a file, which
    ``li file send TO FILE -p alice -O json OPTIONS`` sends: (send result, receive result,
    the file's sha-256), both commands having succeeded."""
    source = tmp_path / f"through li{'-'.join(options)}.bin"
    expected = make_file(source, 2 * MB)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sent, received = await li_send_while_receiving(
        bus,
        ["file", "receive", world.alice.jid, "--yes", "--path", str(inbox), "-p", "bob"]
        + ["-O", "json"],
        ["file", "send", to, str(source), "-p", "alice", "-O", "json", *options],
    )
    assert sent.returncode == C.EXIT_OK, (sent.stdout, sent.stderr)
    out, err = received.stdout, received.stderr
    assert received.returncode == C.EXIT_OK, (out, err)
    assert "Traceback" not in err and "Traceback" not in sent.stderr
    (result,) = json.loads(sent.stdout)
    got = json.loads(out)
    assert sha256_file(inbox / source.name) == expected
    assert got["path"] == str(inbox / source.name)
    assert result["name"] == got["name"] == source.name
    return result, got, expected


@aio
async def test_li_send_and_receive(world: World, bus: DBusDaemon, tmp_path: Path) -> None:
    """``li file receive JID --yes --path DIR -O json`` waits for alice's file, which
    ``li file send`` offers to bob's device; both JSON results tell a finished, verified
    transfer."""
    result, got, _ = await li_transfer(world, bus, tmp_path, world.bob.full)
    assert result["status"] == "finished" and result["to"] == world.bob.full
    assert result["hash_verified"] is True and result["size"] == 2 * MB and result["speed"] > 0
    assert got["status"] == "finished" and got["from"] == world.alice.full
    assert got["size"] == 2 * MB and got["hash_verified"] is True
    assert got["hash_algo"] == "sha-256"
    assert got["session_id"] == result["session_id"]


@aio
async def test_li_send_jmi(world: World, bus: DBusDaemon, tmp_path: Path) -> None:
    """``li file send BARE_JID --jmi``: every device of bob is asked; ``li file receive
    --yes`` on one takes it, the other device (the phone's daemon) is told."""
    asked_before = len(world.phone.seen("action_new"))
    result, got, _ = await li_transfer(world, bus, tmp_path, world.bob.jid, "--jmi")
    assert result["status"] == "finished" and result["hash_verified"] is True
    assert got["status"] == "finished" and got["hash_verified"] is True
    assert got["session_id"] == result["session_id"]
    asked = world.phone.seen("action_new")[asked_before:]
    assert [json.loads(a[0])["session_id"] for a in asked] == [result["session_id"]]
    update = await world.phone.wait("action_update", lambda a: a[0] == asked[0][1])
    assert json.loads(update[1])["reason"] == "accepted on another device"
