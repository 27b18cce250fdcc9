"""Faults: the D-Bus daemon restarted (same socket path) under the daemon and a frontend.

The backend notices the lost bus, connects again with backoff and owns
``org.libervia.Libervia`` again; a frontend's :class:`BridgeClient` opened with
``reconnect=True`` connects again too, adds its signal match rules again and is told
(``on_reconnect``). XMPP sessions are untouched: the profile stays connected, and signals
reach the frontend again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from libervia.frontends.bridge.client import BridgeClient, BridgeUnavailable
from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.reliability.conftest import restart_bus, until

pytestmark = pytest.mark.timeout(90)


async def answers(client: BridgeClient) -> bool:
    try:
        await client.ready_get(timeout=2)
    except BridgeUnavailable:
        return False
    return True


@aio
async def test_dbus_daemon_restarted(prosody: Prosody, bus: DBusDaemon, tmp_path: Path) -> None:
    (tmp_path / "daemon").mkdir()
    daemon = Daemon(tmp_path / "daemon", bus.address)
    daemon.start()
    client: BridgeClient | None = None
    try:
        first = await daemon.bridge()
        bob = unique("bob")
        await make_account(first, prosody, bob, bob)
        await first.close()

        client = await BridgeClient.open(bus.address, reconnect=True)
        reconnected: list[float] = []
        client.on_reconnect(lambda: reconnected.append(time.monotonic()))
        recorder = Recorder(client, ["connected", "disconnected"])
        await client.connect(bob, "", {})
        await recorder.wait("connected", lambda a: a[1] == bob)

        restarted = time.monotonic()
        restart_bus(bus)
        await until(lambda: bool(reconnected), 20, "the frontend reconnected")
        took = await until(lambda: answers(client), 20, "the daemon owns its name again")
        back = time.monotonic() - restarted
        logs = daemon.logs()
        assert "lost the D-Bus connection" in logs and "D-Bus connection restored" in logs, logs
        assert daemon.process is not None and daemon.process.poll() is None
        # the XMPP session did not notice
        assert await client.is_connected(bob)
        assert not [e for e in recorder.events if e[0] == "disconnected"]
        # signals reach the reconnected frontend (its match rules were added again)
        await client.disconnect(bob)
        await recorder.wait("disconnected", lambda a: a == (bob,))
        await client.connect(bob, "", {})
        await until(
            lambda: sum(1 for n, a in recorder.events if n == "connected") == 2, 15, "connected"
        )
        # a new frontend finds the daemon as before
        other = await BridgeClient.open(bus.address, timeout=10)
        assert await other.is_connected(bob)
        await other.close()
        print(
            f"\ndbus-daemon restarted: frontend reconnected in "
            f"{reconnected[0] - restarted:.2f} s, daemon serving its name again "
            f"{back:.2f} s after the restart ({took:.2f} s after the frontend)"
        )
    finally:
        if client is not None:
            await client.close()
        assert daemon.stop() == 0, daemon.logs()
