"""End to end: the daemon as a subprocess, a real Prosody (STARTTLS, self-signed certificate),
a private dbus-daemon; everything driven through the bridge client, as a frontend would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from libervia.frontends.bridge.client import BridgeError
from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.net import free_port

pytestmark = pytest.mark.timeout(180)


@aio
async def test_two_profiles_chat_and_subscribe(daemon: Daemon, prosody: Prosody) -> None:
    bridge = await daemon.bridge()
    try:
        recorder = Recorder(
            bridge, ["message_new", "connected", "action_new", "contact_new", "presence_update"]
        )
        alice, bob = unique("alice"), unique("bob")
        alice_jid = await make_account(bridge, prosody, alice, alice)
        bob_jid = await make_account(bridge, prosody, bob, bob)
        assert await bridge.connect(alice, "", {}) is False
        assert await bridge.connect(bob, "", {}) is False
        assert await bridge.connect(bob, "", {}) is True  # already connected
        assert await bridge.is_connected(alice) and await bridge.is_connected(bob)
        await recorder.wait("connected", lambda a: a[1] == alice and a[0].startswith(alice_jid))

        # messages both ways: message_new on both sides, history on both sides
        await bridge.message_send(bob_jid, {"": "hello bob ✓"}, {}, "chat", "", alice)
        received = await recorder.wait(
            "message_new", lambda a: a[8] == bob and a[4] == {"": "hello bob ✓"}
        )
        assert received[2].startswith(alice_jid + "/") and received[6] == "chat"
        extra = json.loads(received[7])
        assert extra["origin_id"] and extra["stanza_id"]  # ids from XEP-0359 (MAM on Prosody)
        sent = await recorder.wait("message_new", lambda a: a[8] == alice)
        assert sent[3] == bob_jid and sent[0] == extra["origin_id"]
        await bridge.message_send(
            alice_jid, {"": "hi alice", "fr": "salut"}, {"": "re"}, "normal", "", bob
        )
        await recorder.wait("message_new", lambda a: a[8] == alice and a[4].get("fr") == "salut")

        for profile, peer in ((alice, bob_jid), (bob, alice_jid)):
            history = await bridge.history_get(peer, "", -1, True, {}, profile)
            assert [(h[4], h[6]) for h in history] == [
                ({"": "hello bob ✓"}, "chat"),
                ({"": "hi alice", "fr": "salut"}, "normal"),
            ], profile
        found = await bridge.history_get(alice_jid, "", 10, True, {"search": "salut"}, bob)
        assert [h[4]["fr"] for h in found] == ["salut"]

        # roster subscription: alice asks, bob is asked (action_new) and accepts
        await bridge.contact_add(bob_jid, alice)
        action = await recorder.wait("action_new", lambda a: a[3] == bob)
        data = json.loads(action[0])
        assert data == {"type": "subscription", "subtype": "subscribe", "from_jid": alice_jid}
        await bridge.subscription("subscribed", alice_jid, bob)
        # bob's acceptance asks back; alice, who asked first, accepts at once: mutual
        await recorder.wait(
            "contact_new",
            lambda a: a[3] == alice and a[0] == bob_jid and a[1]["to"] == a[1]["from"] == "true",
        )
        await recorder.wait(
            "contact_new",
            lambda a: a[3] == bob and a[0] == alice_jid and a[1]["to"] == a[1]["from"] == "true",
        )
        contacts = await bridge.contacts_get(alice)
        assert [c[0] for c in contacts] == [bob_jid]
        await recorder.wait("presence_update", lambda a: a[4] == alice and a[0].startswith(bob_jid))
        statuses = await bridge.presence_statuses_get(alice)
        assert bob_jid in statuses

        infos = await bridge.disco_infos("localhost", "", True, alice)
        assert "jabber:iq:version" in infos[0]
        assert ("server", "im", "Prosody") in [tuple(i) for i in infos[1]]
        account = await bridge.disco_infos(alice_jid, "", False, alice)
        assert "urn:xmpp:mam:2" in account[0]
        await bridge.disconnect(bob)
        assert not await bridge.is_connected(bob)
    finally:
        await bridge.close()


@aio
async def test_protected_profile_and_login_errors(daemon: Daemon, prosody: Prosody) -> None:
    bridge = await daemon.bridge()
    try:
        # a protected profile: nothing secret can be used before its session is started
        carol = unique("carol")
        await bridge.profile_create(carol, "profile secret", "")
        assert await bridge.profile_is_session_started(carol) is False
        with pytest.raises(BridgeError) as raised:
            await bridge.param_set("Password", "x", "Connection", -1, carol)
        assert raised.value.code == "PasswordError" and "start its session" in raised.value.message
        with pytest.raises(BridgeError) as raised:
            await bridge.profile_start_session("wrong", carol)
        assert raised.value.code == "PasswordError"
        with pytest.raises(BridgeError) as raised:
            await bridge.connect(carol, "wrong", {})
        assert raised.value.code == "PasswordError"
        assert "Traceback" not in raised.value.message
        assert await bridge.profile_start_session("profile secret", carol) is True
        await bridge.param_set("Password", "x", "Connection", -1, carol)
        assert await bridge.param_get_a_async("Password", "Connection", "value", -1, carol) == (
            "********"
        )

        # wrong XMPP password
        dave = unique("dave")
        await make_account(bridge, prosody, dave, dave)
        await bridge.param_set("Password", "not the password", "Connection", -1, dave)
        with pytest.raises(BridgeError) as raised:
            await bridge.connect(dave, "", {})
        assert raised.value.code == "AuthenticationFailed", raised.value
        assert "Connection/Password" in raised.value.message

        # unreachable server
        erin = unique("erin")
        await make_account(bridge, prosody, erin, erin, port=free_port(), register=False)
        with pytest.raises(BridgeError) as raised:
            await bridge.connect(erin, "", {})
        assert raised.value.code == "ConnectionFailed" and "cannot reach" in raised.value.message

        # a self-signed certificate is refused unless the profile trusts it
        frank = unique("frank")
        await make_account(bridge, prosody, frank, frank, check_certificate=True)
        with pytest.raises(BridgeError) as raised:
            await bridge.connect(frank, "", {})
        assert raised.value.code == "TLSFailed" and "check_certificate" in raised.value.message

        # bad arguments never crash the daemon
        with pytest.raises(BridgeError) as raised:
            await bridge.message_send("not a jid@@", {"": "x"}, {}, "chat", "", dave)
        assert raised.value.code == "InvalidInput"
        with pytest.raises(BridgeError) as raised:
            await bridge.message_send("x@localhost", {"": "x"}, {}, "chat", "{bad json", dave)
        assert raised.value.code == "InvalidInput"
        with pytest.raises(BridgeError) as raised:
            await bridge.connect("nobody-" + unique(""), "", {})
        assert raised.value.code == "ProfileUnknown"
        assert await bridge.version_get()
    finally:
        await bridge.close()


@aio
async def test_profiles_roster_edits_and_presence(daemon: Daemon, prosody: Prosody) -> None:
    bridge = await daemon.bridge()
    try:
        recorder = Recorder(bridge, ["contact_new", "contact_deleted", "presence_update"])
        gina, hank = unique("gina"), unique("hank")
        gina_jid = await make_account(bridge, prosody, gina, gina)
        hank_jid = await make_account(bridge, prosody, hank, hank)
        assert {gina, hank} <= set(await bridge.profiles_list_get(True, False))
        await bridge.profile_set_default(hank)
        assert await bridge.profile_name_get("@DEFAULT@") == hank
        with pytest.raises(BridgeError) as raised:
            await bridge.profile_name_get("nobody-" + unique(""))
        assert raised.value.code == "ProfileUnknown"

        await bridge.connect(gina, "", {})
        await bridge.connect("@DEFAULT@", "", {})  # hank
        await bridge.contact_update(hank_jid, "Hank", ["Work", "Friends"], gina)
        added = await recorder.wait("contact_new", lambda a: a[3] == gina and a[0] == hank_jid)
        assert added[1]["name"] == "Hank" and sorted(added[2]) == ["Friends", "Work"]
        await bridge.contact_add(gina_jid, hank)
        await recorder.wait("contact_new", lambda a: a[3] == hank and a[0] == gina_jid)
        # gina has hank in her roster but never asked: she is asked (not auto-accepted)
        await bridge.subscription("subscribed", hank_jid, gina)
        await recorder.wait(
            "contact_new", lambda a: a[3] == hank and a[0] == gina_jid and a[1]["to"] == "true"
        )
        await bridge.presence_set("", "away", {"": "brb"}, gina)
        update = await recorder.wait(
            "presence_update",
            lambda a: a[4] == hank and a[0].startswith(gina_jid) and a[1] == "away",
        )
        assert update[3] == {"": "brb"}

        await bridge.contact_del(hank_jid, gina)
        await recorder.wait("contact_deleted", lambda a: a == (hank_jid, gina))
        assert await bridge.contacts_get(gina) == []
        with pytest.raises(BridgeError) as raised:
            await bridge.contact_del(hank_jid, gina)
        assert raised.value.code == "NotFound"

        # deleting a connected profile disconnects it first
        await bridge.profile_delete_async(gina)
        assert gina not in await bridge.profiles_list_get(True, False)
        with pytest.raises(BridgeError) as raised:
            await bridge.is_connected(gina)
        assert raised.value.code == "ProfileUnknown"
    finally:
        await bridge.close()


@aio
async def test_autoconnect_at_start(prosody: Prosody, tmp_path: Path) -> None:
    """A profile marked autoconnect is connected when the daemon starts (its own bus)."""
    bus = DBusDaemon()
    bus.start()
    process = Daemon(tmp_path, bus.address)
    process.start()
    try:
        bridge = await process.bridge()
        ivy = unique("ivy")
        await make_account(bridge, prosody, ivy, ivy)
        await bridge.param_set("autoconnect", "true", "Connection", -1, ivy)
        await bridge.close()
        assert process.stop() == 0, process.logs()
        process.start()
        bridge = await process.bridge()
        connected = asyncio.Event()
        bridge.on_signal("connected", lambda jid, profile: connected.set())
        if not await bridge.is_connected(ivy):
            await asyncio.wait_for(connected.wait(), 15)
        assert await bridge.is_connected(ivy)
        await bridge.close()
    finally:
        try:
            assert process.stop() in (0, None), process.logs()
        finally:
            bus.stop()


@aio
async def test_ping_and_software_version(daemon: Daemon, prosody: Prosody) -> None:
    """Plugin bridge methods (XEP-0199, XEP-0092), answered by Prosody and by the daemon."""
    bridge = await daemon.bridge()
    try:
        jack, kate = unique("jack"), unique("kate")
        await make_account(bridge, prosody, jack, jack)
        await make_account(bridge, prosody, kate, kate)
        recorder = Recorder(bridge, ["connected"])
        await bridge.connect(jack, "", {})
        await bridge.connect(kate, "", {})
        kate_full = (await recorder.wait("connected", lambda a: a[1] == kate))[0]
        assert 0 < await bridge.ping("", jack) < 5
        assert 0 < await bridge.ping(kate_full, jack) < 5
        name, version, _ = await bridge.software_version_get("localhost", jack)
        assert name == "Prosody" and version
        assert tuple(await bridge.software_version_get(kate_full, jack))[:2] == (
            "Libervia",
            await bridge.version_get(),
        )
        with pytest.raises(BridgeError) as raised:
            await bridge.ping("not a jid@@", jack)
        assert raised.value.code == "InvalidInput"
    finally:
        await bridge.close()
