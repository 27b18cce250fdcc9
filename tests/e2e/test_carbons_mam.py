"""End to end: carbons (XEP-0280) and archive catch-up (XEP-0313) between the daemon, a real
Prosody (mod_carbons, mod_mam) and raw XMPP clients standing for the account's other devices
or for other users."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from twisted.internet import defer, reactor, ssl
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.frontends.bridge.client import BridgeClient
from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import DOMAIN, Prosody
from tests.e2e.test_sasl_prosody import Authenticator

pytestmark = pytest.mark.timeout(180)


class RawClient:
    """A plain Twisted XMPP client (another device of an account, or another user)."""

    def __init__(self, xs: xmlstream.XmlStream, jid: JID) -> None:
        self.xs = xs
        self.jid = jid

    @classmethod
    async def login(cls, server: Prosody, jid: str, password: str, resource: str) -> RawClient:
        tls = ssl.optionsForClientTLS(
            DOMAIN, trustRoot=ssl.Certificate.loadPEM(server.cert.read_bytes())
        )
        full = JID(f"{jid}/{resource}")
        factory = xmlstream.XmlStreamFactory(Authenticator(full, password, tls))
        done: defer.Deferred[Any] = defer.Deferred()
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, done.callback)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, done.errback)
        factory.maxRetries = 0
        reactor.connectTCP("127.0.0.1", server.c2s_port, factory)  # type: ignore[attr-defined]
        xs = await asyncio.wait_for(done.asFuture(asyncio.get_running_loop()), 20)
        xs.send(domish.Element((None, "presence")))
        return cls(xs, full)

    def message(self, to: str, body: str, children: str = "") -> None:
        self.xs.send(
            f"<message to='{to}' type='chat' id='{uuid.uuid4().hex}'>"
            f"<body>{body}</body>{children}</message>"
        )

    def close(self) -> None:
        self.xs.sendFooter()
        self.xs.transport.loseConnection()


async def history(bridge: BridgeClient, profile: str) -> list[tuple[str, str, str]]:
    rows = await bridge.history_get("", "", -1, False, {}, profile)
    return [(r[2], r[3], r[4].get("", "")) for r in rows]


async def wait_history(
    bridge: BridgeClient, profile: str, body: str, timeout: float = 15
) -> list[tuple[str, str, str]]:
    """The history once a message with ``body`` is in it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        rows = await history(bridge, profile)
        if any(r[2] == body for r in rows) or loop.time() > end:
            return rows
        await asyncio.sleep(0.05)


@aio
async def test_carbons_and_forged_carbons(daemon: Daemon, prosody: Prosody) -> None:
    bridge = await daemon.bridge()
    raws: list[RawClient] = []
    try:
        recorder = Recorder(bridge, ["message_new", "connected"])
        alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
        alice_jid = await make_account(bridge, prosody, alice, alice)
        bob_jid = await make_account(bridge, prosody, bob, bob)
        carol_jid = prosody.adduser(carol, "carol-pass")
        await bridge.connect(alice, "", {})
        await bridge.connect(bob, "", {})
        connected = await recorder.wait("connected", lambda a: a[1] == alice)
        alice_full = connected[0]
        # carbons are enabled in the background just after connecting
        await asyncio.sleep(0.5)

        phone = await RawClient.login(prosody, alice_jid, "xmpp-pass", "phone")
        raws.append(phone)
        phone.message(bob_jid, "sent from alice's phone")
        got_bob = await recorder.wait(
            "message_new", lambda a: a[8] == bob and a[4] == {"": "sent from alice's phone"}
        )
        got_alice = await recorder.wait(
            "message_new", lambda a: a[8] == alice and a[4] == {"": "sent from alice's phone"}
        )
        assert got_bob[2] == f"{alice_jid}/phone"
        assert (got_alice[2], got_alice[3]) == (f"{alice_jid}/phone", bob_jid)

        # a message to the phone only: alice's daemon gets a "received" carbon
        bob_raw = await RawClient.login(prosody, bob_jid, "xmpp-pass", "laptop")
        raws.append(bob_raw)
        bob_raw.message(f"{alice_jid}/phone", "for the phone only")
        got = await recorder.wait(
            "message_new", lambda a: a[8] == alice and a[4] == {"": "for the phone only"}
        )
        assert (got[2], got[3]) == (f"{bob_jid}/laptop", f"{alice_jid}/phone")

        # carol forges a carbon: a message "sent by alice" to bob
        carol_raw = await RawClient.login(prosody, carol_jid, "carol-pass", "evil")
        raws.append(carol_raw)
        carol_raw.xs.send(
            f"<message to='{alice_full}' type='chat'><sent xmlns='urn:xmpp:carbons:2'>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{alice_jid}/phone' to='{bob_jid}' "
            "type='chat'><body>forged by carol</body></message></forwarded></sent></message>"
        )
        carol_raw.message(alice_full, "carol's real message")
        await recorder.wait(
            "message_new", lambda a: a[8] == alice and a[4] == {"": "carol's real message"}
        )
        await asyncio.sleep(0.2)
        rows = await history(bridge, alice)
        assert sorted(r[2] for r in rows) == [
            "carol's real message",
            "for the phone only",
            "sent from alice's phone",
        ], rows
        assert not [e for e in recorder.events if "forged by carol" in str(e)]
        assert "forged carbon" in daemon.logs()
        # bob's laptop sent "for the phone only": a sent carbon for bob's daemon
        assert await history(bridge, bob) == [
            (f"{alice_jid}/phone", bob_jid, "sent from alice's phone"),
            (f"{bob_jid}/laptop", f"{alice_jid}/phone", "for the phone only"),
        ]
    finally:
        for raw in raws:
            raw.close()
        await bridge.close()


@aio
async def test_archive_catch_up_after_reconnection(daemon: Daemon, prosody: Prosody) -> None:
    bridge = await daemon.bridge()
    raws: list[RawClient] = []
    try:
        recorder = Recorder(bridge, ["message_new", "connected", "disconnected"])
        alice, bob = unique("alice"), unique("bob")
        alice_jid = await make_account(bridge, prosody, alice, alice)
        bob_jid = await make_account(bridge, prosody, bob, bob)
        await bridge.connect(bob, "", {})
        await recorder.wait("connected", lambda a: a[1] == bob)
        await bridge.disconnect(bob)
        assert not await bridge.is_connected(bob)

        # while bob's profile is offline: alice writes to him, and bob's phone writes to alice
        alice_raw = await RawClient.login(prosody, alice_jid, "xmpp-pass", "pc")
        raws.append(alice_raw)
        bob_phone = await RawClient.login(prosody, bob_jid, "xmpp-pass", "phone")
        raws.append(bob_phone)
        alice_raw.message(bob_jid, "while you were away")
        bob_phone.message(alice_jid, "sent from bob's phone")
        await asyncio.sleep(0.3)
        bob_phone.close()
        raws.remove(bob_phone)
        await asyncio.sleep(0.2)

        await bridge.connect(bob, "", {})
        rows = await wait_history(bridge, bob, "sent from bob's phone")
        rows = await wait_history(bridge, bob, "while you were away")
        await asyncio.sleep(0.5)  # anything duplicated would be in by now
        rows = await history(bridge, bob)
        assert sorted(r[2] for r in rows) == ["sent from bob's phone", "while you were away"], (
            daemon.logs()[-6000:]
        )
        sent = next(r for r in rows if r[2] == "sent from bob's phone")
        assert (sent[0], sent[1]) == (f"{bob_jid}/phone", alice_jid)
        news = [a for n, a in recorder.events if n == "message_new" and a[8] == bob]
        assert len(news) == 2

        # again: nothing new, nothing duplicated
        await bridge.disconnect(bob)
        await bridge.connect(bob, "", {})
        await asyncio.sleep(1)
        assert len(await history(bridge, bob)) == 2

        # li-like direct query of the archive: both messages, the last page
        messages, page = await bridge.mam_get("", {"max": "10", "before": ""}, bob)
        bodies = [m[4].get("") for m in messages]
        assert bodies[-2:] == ["while you were away", "sent from bob's phone"] or bodies[-2:] == [
            "sent from bob's phone",
            "while you were away",
        ], bodies
        assert page["complete"] == "true" and page["last"]
    finally:
        for raw in raws:
            raw.close()
        await bridge.close()


def test_li_message_mam(daemon: Daemon, prosody: Prosody) -> None:
    import json

    from libervia.cli import constants as C
    from tests.e2e.test_cli import eventually, li

    bus = daemon.bus_address
    eventually(lambda: li(bus, "info", "version", check=None).returncode == C.EXIT_OK, 30)
    tag = uuid.uuid4().hex[:6]
    alice, bob = f"alice{tag}", f"bob{tag}"
    jids = {}
    for name in (alice, bob):
        jids[name] = prosody.adduser(name, "xmpp-pass")
        li(
            bus,
            "profile", "create", name,
            "-j", jids[name],
            "-x", "xmpp-pass",
            "--server", "127.0.0.1",
            "--port", str(prosody.c2s_port),
            "--no-check-certificate",
            "-C",
        )  # fmt: skip
    for text in ("one", "two", "three"):
        li(bus, "message", "send", "-p", alice, jids[bob], text)

    def page(*args: str) -> dict[str, Any]:
        out = li(bus, "message", "mam", "-p", bob, "--with", jids[alice], *args, "-O", "json")
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    last = eventually(lambda: (p := page("-n", "2")) and len(p["messages"]) == 2 and p)
    assert [m["message"][""] for m in last["messages"]] == ["two", "three"]
    assert last["messages"][0]["from"].startswith(jids[alice] + "/")
    assert last["messages"][0]["extra"]["stanza_id"] == last["page"]["first"]
    # archive ids may start with "-": --before=ID
    before = page("-n", "2", f"--before={last['page']['first']}")
    assert [m["message"][""] for m in before["messages"]] == ["one"]
    assert before["page"]["complete"] == "true"
    text = li(bus, "message", "mam", "-p", bob, "--with", jids[alice], "-n", "1").stdout
    assert f"{jids[alice]}/" in text and f"> {jids[bob]}" in text and ": three" in text, text
    assert "archive ids: --before=" in text, text


@aio
async def test_catch_up_after_daemon_restart(
    prosody: Prosody, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """bob's daemon is stopped; what was sent meanwhile is in his history once after restart,
    and what he had before is not duplicated."""
    with DBusDaemon() as own_bus:
        await _restart(own_bus, prosody, tmp_path_factory.mktemp("restart"))


async def _restart(bus: DBusDaemon, prosody: Prosody, directory: Any) -> None:
    process = Daemon(directory, bus.address)
    process.start()
    raws: list[RawClient] = []
    try:
        bridge = await process.bridge()
        alice, bob = unique("alice"), unique("bob")
        alice_jid = prosody.adduser(alice, "xmpp-pass")
        bob_jid = await make_account(bridge, prosody, bob, bob)
        await bridge.connect(bob, "", {})
        alice_raw = await RawClient.login(prosody, alice_jid, "xmpp-pass", "pc")
        raws.append(alice_raw)
        alice_raw.message(bob_jid, "before the restart")
        rows = await wait_history(bridge, bob, "before the restart")
        assert [r[2] for r in rows] == ["before the restart"]
        await bridge.close()
        assert process.stop() == 0, process.logs()

        alice_raw.message(bob_jid, "while the daemon was stopped")
        await asyncio.sleep(0.3)

        process.start()
        bridge = await process.bridge()
        await bridge.connect(bob, "", {})
        await wait_history(bridge, bob, "while the daemon was stopped")
        await asyncio.sleep(0.5)
        # sorted: the archive's times have a one-second resolution on Prosody
        assert sorted(r[2] for r in await history(bridge, bob)) == [
            "before the restart",
            "while the daemon was stopped",
        ]
        await bridge.close()
    finally:
        for raw in raws:
            raw.close()
        assert process.stop() in (0, None), process.logs()
