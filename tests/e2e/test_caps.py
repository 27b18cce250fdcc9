"""Entity capabilities against Prosody and real daemon processes: a hash is asked once, and a
restarted daemon asks nothing for the hashes it knows (the cache is in the database)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account
from tests.e2e.prosody import Prosody

pytestmark = pytest.mark.timeout(120)

ASKING = "for its capabilities"
KNOWN = "known by hash"


def log_text(daemon: Daemon) -> str:
    return daemon.log.read_text(errors="replace")


async def until(predicate, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@aio
async def test_caps_asked_once_and_known_after_restart(prosody: Prosody, tmp_path: Path) -> None:
    bus = DBusDaemon()
    bus.start()
    daemon = Daemon(tmp_path, bus.address, log_level="DEBUG")
    daemon.start()
    try:
        bridge = await daemon.bridge()
        alice, bob = (f"{n}{uuid.uuid4().hex[:6]}" for n in ("alice", "bob"))
        alice_jid = await make_account(bridge, prosody, alice, alice)
        bob_jid = await make_account(bridge, prosody, bob, bob)
        for profile in (alice, bob):
            await bridge.param_set("autoconnect", "true", "Connection", -1, profile)
            await bridge.connect(profile, "", {})
        # mutual subscription: presences (with capabilities) flow both ways
        recorder = Recorder(bridge, ["action_new"])
        await bridge.contact_add(bob_jid, alice)
        await recorder.wait("action_new", lambda a: a[3] == bob)
        await bridge.subscription("subscribed", alice_jid, bob)
        await until(lambda: ASKING in log_text(daemon))
        asked_first = log_text(daemon).count(ASKING)
        assert asked_first == 1, log_text(daemon)[-3000:]  # both run Libervia: one hash, asked once
        await bridge.close()
        assert daemon.stop() == 0

        mark = len(log_text(daemon))
        daemon.start()
        bridge = await daemon.bridge()
        statuses: dict = {}

        async def both_see_each_other() -> bool:
            statuses["a"] = await bridge.presence_statuses_get(alice)
            statuses["b"] = await bridge.presence_statuses_get(bob)
            return bob_jid in statuses["a"] and alice_jid in statuses["b"]

        for _ in range(200):
            if await bridge.is_connected(alice) and await bridge.is_connected(bob):
                if await both_see_each_other():
                    break
            await asyncio.sleep(0.1)
        assert await both_see_each_other(), statuses
        # each profile looked the other's capabilities up in the database, asking nothing
        await until(lambda: log_text(daemon)[mark:].count(KNOWN) >= 2)
        after_restart = log_text(daemon)[mark:]
        assert ASKING not in after_restart, after_restart
        await bridge.close()
    finally:
        try:
            daemon.stop()
        finally:
            bus.stop()
