"""Faults: Prosody killed (SIGKILL) and restarted under connected profiles.

tests/e2e/test_reconnect.py already proves that profiles reconnect after a clean server restart
(SIGTERM), that a frozen server (SIGSTOP) is detected by the keepalive within its configured
time and left after SIGCONT, and that dropped sockets are resumed (XEP-0198). This test adds a
server that dies without closing anything (SIGKILL: its stream-management state is gone, no
resumption is possible), stays down while the profiles try again (the backoff is checked in the
daemon's log), and comes back: messages sent before the kill, archived by the server while the
profiles were still disconnected, and sent after they reconnected are each in the history of
every profile exactly once (the archive catch-up fills the gap, nothing is duplicated).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.e2e.test_carbons_mam import RawClient
from tests.reliability.conftest import until

pytestmark = pytest.mark.timeout(120)

#: quick reconnections: 0.3 s, 0.6 s, 1.2 s... (±20 %) up to 2 s
OPTIONS = "reconnect_delay = 0.3\nreconnect_delay_max = 2\nkeepalive_interval = 2\n"
PER_PHASE = 30
DOWN_FOR = 1.5


@pytest.fixture
def server() -> Iterator[Prosody]:
    # its own server: killed here, so that the other tests' one is untouched
    with Prosody("smacks_hibernation_time = 5") as prosody:
        yield prosody


async def send_all(server: Prosody, jid: str, to: list[str], phase: str) -> None:
    raw = await RawClient.login(server, jid, "xmpp-pass", unique("pc"))
    try:
        for i in range(PER_PHASE):
            for dest in to:
                raw.message(dest, f"{phase}-{i:03d}")
        await asyncio.sleep(0.2)
    finally:
        raw.close()


@aio
async def test_server_killed_under_connected_profiles(
    server: Prosody, bus: DBusDaemon, tmp_path: Path
) -> None:
    (tmp_path / "daemon").mkdir()
    daemon = Daemon(tmp_path / "daemon", bus.address, OPTIONS)
    daemon.start()
    try:
        bridge = await daemon.bridge()
        recorder = Recorder(bridge, ["connected", "disconnected", "message_new"])
        profiles = [unique("bob"), unique("carol")]
        jids = [await make_account(bridge, server, p, p) for p in profiles]
        alice = server.adduser(unique("alice"), "xmpp-pass")
        for profile in profiles:
            await bridge.connect(profile, "", {})

        def stored(profile: str) -> int:
            return sum(1 for n, a in recorder.events if n == "message_new" and a[8] == profile)

        await send_all(server, alice, jids, "before")
        for profile in profiles:
            await until(lambda p=profile: stored(p) == PER_PHASE, 20, "before")

        # SIGKILL: no stream is closed; the daemon sees the TCP connections reset
        assert server.process is not None
        server.process.kill()
        server.process.wait(timeout=10)
        killed = time.monotonic()
        for profile in profiles:
            await recorder.wait("disconnected", lambda a, p=profile: a == (p,), 15)
        await asyncio.sleep(DOWN_FOR)
        server._spawn()
        respawned = time.monotonic()
        # archived while the profiles are still waiting for their next attempt
        down = [not await bridge.is_connected(p) for p in profiles]
        await send_all(server, alice, jids, "down")

        def connections(profile: str) -> int:
            return sum(1 for n, a in recorder.events if n == "connected" and a[1] == profile)

        for profile in profiles:
            await until(lambda p=profile: connections(p) == 2, 30, f"{profile} reconnected")
        back = time.monotonic() - killed
        after_respawn = time.monotonic() - respawned
        await send_all(server, alice, jids, "after")
        expected = sorted(
            f"{phase}-{i:03d}" for phase in ("before", "down", "after") for i in range(PER_PHASE)
        )
        for profile in profiles:
            await until(lambda p=profile: stored(p) >= 3 * PER_PHASE, 30, "all stored")
        await asyncio.sleep(1)  # anything duplicated would be in by now
        for profile in profiles:
            rows = await bridge.history_get("", "", -1, True, {}, profile)
            assert sorted(r[4][""] for r in rows) == expected, daemon.logs()
            assert stored(profile) == 3 * PER_PHASE
        logs = daemon.logs()
        attempts = {
            p: [float(d) for d in re.findall(rf"{p}: reconnection attempt \d+ in ([\d.]+) s", logs)]
            for p in profiles
        }
        for profile, delays in attempts.items():
            # several attempts while the server was down, each waiting longer (backoff)
            assert len(delays) >= 3, logs
            assert delays[2] > delays[0], delays
            assert f"{profile}: reconnected after" in logs
        await bridge.close()
        print(
            f"\nserver killed for {DOWN_FOR} s: both profiles back {back:.2f} s after the kill, "
            f"{after_respawn:.2f} s after the server was up again; "
            f"delays {attempts}; still disconnected when the 'down' messages were sent: {down}; "
            f"{3 * PER_PHASE} messages per profile, each once"
        )
    finally:
        assert daemon.stop() == 0, daemon.logs()
