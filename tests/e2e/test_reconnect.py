"""End to end: session continuity against a real Prosody of its own (restarted and frozen here,
so that other tests' server is untouched) and the real daemon.

- Prosody restarted under two connected profiles: both reconnect without user action
  (``disconnected`` then ``connected``), then a message goes through;
- Prosody frozen (SIGSTOP): the keepalive ping times out, the connection is dropped, and the
  profiles come back after SIGCONT.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, make_account
from tests.e2e.prosody import Prosody
from tests.e2e.test_daemon_xmpp import Recorder

pytestmark = pytest.mark.timeout(180)

#: short delays so that the test is fast (the defaults are 1 s, 60 s and 30 s)
OPTIONS = "reconnect_delay = 0.2\nkeepalive_interval = 1\nkeepalive_timeout = 1\n"


@pytest.fixture(scope="module")
def server() -> Iterator[Prosody]:
    prosody = Prosody()
    try:
        prosody.start()
        yield prosody
    finally:
        prosody.stop()


@pytest.fixture(scope="module")
def bus() -> Iterator[DBusDaemon]:
    with DBusDaemon() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def daemon(bus: DBusDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    process = Daemon(tmp_path_factory.mktemp("daemon"), bus.address, OPTIONS)
    process.start()
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, process.logs()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def chat(bridge, recorder: Recorder, sender: str, to_jid: str, receiver: str) -> None:
    text = unique("hello ")
    await bridge.message_send(to_jid, {"": text}, {}, "chat", "", sender)
    await recorder.wait("message_new", lambda a: a[8] == receiver and a[4] == {"": text})


@aio
async def test_server_restart_and_freeze(daemon: Daemon, server: Prosody) -> None:
    bridge = await daemon.bridge()
    try:
        recorder = Recorder(bridge, ["connected", "disconnected", "message_new"])
        alice, bob = unique("alice"), unique("bob")
        await make_account(bridge, server, alice, alice)
        bob_jid = await make_account(bridge, server, bob, bob)
        await bridge.connect(alice, "", {})
        await bridge.connect(bob, "", {})
        await chat(bridge, recorder, alice, bob_jid, bob)

        def count(signal: str, profile: str) -> int:
            return sum(1 for s, a in recorder.events if s == signal and profile in a)

        # the server restarts: both profiles come back by themselves
        restarted = time.monotonic()
        server.restart()
        for profile in (alice, bob):
            await recorder.wait("disconnected", lambda a, p=profile: a == (p,))
        for profile in (alice, bob):
            await until(lambda p=profile: count("connected", p) == 2)
        back = time.monotonic() - restarted
        assert await bridge.is_connected(alice) and await bridge.is_connected(bob)
        await chat(bridge, recorder, alice, bob_jid, bob)

        # the server freezes without closing anything: the keepalive notices (1 s idle +
        # 1 s without answer) and drops the connection; stream management then resumes the
        # session once the server answers again (or, failing that, a fresh session)
        server.pause()
        frozen = time.monotonic()
        # a message sent meanwhile reaches bob once (Prosody reads it from its socket when it
        # wakes up and acknowledges it on resumption; unacknowledged, it would be sent again)
        stalled = unique("sent while frozen ")
        await bridge.message_send(bob_jid, {"": stalled}, {}, "chat", "", alice)
        try:
            for profile in (alice, bob):
                await until_async(lambda p=profile: not_connected(bridge, p), 10)
            detected = time.monotonic() - frozen
            assert detected < 5, detected
        finally:
            server.resume()
        for profile in (alice, bob):
            await until_async(lambda p=profile: bridge.is_connected(p), 40)
        await recorder.wait("message_new", lambda a: a[8] == bob and a[4] == {"": stalled}, 20)
        alice_jid = await bridge.param_get_a_async("JabberID", "Connection", "value", -1, alice)
        await chat(bridge, recorder, bob, alice_jid, alice)
        history = await bridge.history_get(alice_jid, "", -1, True, {}, bob)
        assert [h[4] for h in history].count({"": stalled}) == 1
        print(f"reconnected {back:.2f} s after the restart; freeze detected in {detected:.2f} s")

        # a profile the user disconnects stays disconnected
        await bridge.disconnect(bob)
        await until_async(lambda: not_connected(bridge, bob))
        connected = count("connected", bob)
        await asyncio.sleep(1)
        assert not await bridge.is_connected(bob)
        assert count("connected", bob) == connected
    finally:
        await bridge.close()


async def until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def not_connected(bridge, profile: str) -> bool:
    return not await bridge.is_connected(profile)


async def until_async(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@aio
async def test_stream_resumed_after_a_dropped_socket(daemon: Daemon, server: Prosody) -> None:
    """The TCP connections are killed (``ss -K``, RST both ways) under two connected profiles:
    the sessions are resumed (XEP-0198 with Prosody's mod_smacks): no ``disconnected``, no
    new ``connected``, and messages go through."""
    if shutil.which("ss") is None or os.geteuid() != 0:
        pytest.skip("killing sockets needs ss and root")
    bridge = await daemon.bridge()
    try:
        recorder = Recorder(bridge, ["connected", "disconnected", "message_new"])
        alice, bob = unique("alice"), unique("bob")
        alice_jid = await make_account(bridge, server, alice, alice)
        bob_jid = await make_account(bridge, server, bob, bob)
        await bridge.connect(alice, "", {})
        await bridge.connect(bob, "", {})
        await chat(bridge, recorder, alice, bob_jid, bob)
        await asyncio.sleep(0.3)  # acks settled
        connected = len(recorder.events)
        kill = subprocess.run(
            ["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{server.c2s_port}"],
            capture_output=True,
            text=True,
        )
        if kill.returncode != 0 or "ESTAB" not in kill.stdout:
            pytest.skip(f"ss -K cannot kill sockets here: {kill.stderr or kill.stdout}")
        logs_before = daemon.logs().count("stream resumed")
        await until(lambda: daemon.logs().count("stream resumed") >= logs_before + 2, 20)
        for profile in (alice, bob):
            assert await bridge.is_connected(profile)
        assert not [e for e in recorder.events[connected:] if e[0] != "message_new"]
        await chat(bridge, recorder, bob, alice_jid, alice)
        await chat(bridge, recorder, alice, bob_jid, bob)
    finally:
        await bridge.close()
