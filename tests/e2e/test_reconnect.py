"""End to end: session continuity against a real Prosody of its own (restarted and frozen here,
so that other tests' server is untouched) and the real daemon.

- Prosody restarted under two connected profiles: both reconnect without user action
  (``disconnected`` then ``connected``), then a message goes through;
- Prosody frozen (SIGSTOP): the keepalive ping times out, the connection is dropped, and the
  profiles come back after SIGCONT;
- TCP connections killed (``ss -K``): the sessions are resumed (XEP-0198);
- through a TCP proxy that swallows what alice sends then cuts the connection: the message
  the server never got is sent again on resumption, or, when the session expired meanwhile,
  on the fresh session with its original id; bob gets it once either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
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
    # a lost session is kept 3 s (the default is minutes): the fallback test outlasts it
    with Prosody("smacks_hibernation_time = 3") as prosody:
        yield prosody


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


class Proxy:
    """A TCP proxy to Prosody that can swallow what clients send, cut every connection
    abruptly (reset both ways), and refuse new ones."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.refuse = False
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.swallowing: set[int] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        link = (writer, up_writer)
        self.links.append(link)
        for task in (
            self._pipe(reader, up_writer, id(link)),
            self._pipe(up_reader, writer, None),
        ):
            running = asyncio.ensure_future(task)
            self.tasks.add(running)
            running.add_done_callback(self.tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: int | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if link is not None and link in self.swallowing:
                    continue
                writer.write(data)
        except (ConnectionError, OSError):
            pass
        writer.transport.abort()

    def swallow(self) -> None:
        """From now on, what the current connections send is lost."""
        self.swallowing = {id(link) for link in self.links}

    def cut(self) -> None:
        for client, server in self.links:
            client.transport.abort()
            server.transport.abort()
        self.links.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()
        for task in list(self.tasks):
            task.cancel()


@aio
async def test_unacknowledged_message_sent_again(daemon: Daemon, server: Prosody) -> None:
    bridge = await daemon.bridge()
    proxy = Proxy(server.c2s_port)
    await proxy.start()
    try:
        recorder = Recorder(bridge, ["connected", "disconnected", "message_new"])
        alice, bob = unique("alice"), unique("bob")
        alice_jid = await make_account(bridge, server, alice, alice, port=proxy.port)
        bob_jid = await make_account(bridge, server, bob, bob)
        await bridge.connect(alice, "", {})
        await bridge.connect(bob, "", {})
        await chat(bridge, recorder, alice, bob_jid, bob)
        await asyncio.sleep(0.3)  # acks settled

        async def lost_message(text: str) -> None:
            proxy.swallow()
            await bridge.message_send(bob_jid, {"": text}, {}, "chat", "", alice)
            await asyncio.sleep(0.2)
            proxy.cut()

        # resumed: the server says it never got the message, it is sent again
        first = unique("swallowed ")
        await lost_message(first)
        await recorder.wait("message_new", lambda a: a[8] == bob and a[4] == {"": first}, 20)
        await until(lambda: re.search(rf"{alice}: stream resumed \([1-9]", daemon.logs()))
        assert not [e for e in recorder.events if e[0] == "disconnected"]

        # the server is unreachable longer than it keeps the session (3 s): resumption fails,
        # a fresh session sends the message again with its original id
        second = unique("swallowed again ")
        proxy.refuse = True
        await lost_message(second)
        await asyncio.sleep(3.5)
        proxy.refuse = False
        await recorder.wait("disconnected", lambda a: a == (alice,), 20)
        await recorder.wait("message_new", lambda a: a[8] == bob and a[4] == {"": second}, 20)
        assert f"{alice}: sending again 1 message(s)" in daemon.logs()
        sent = [e[1] for e in recorder.events if e[0] == "message_new" and e[1][8] == alice]
        (original,) = [a for a in sent if a[4] == {"": second}]
        received = [e[1] for e in recorder.events if e[0] == "message_new" and e[1][8] == bob]
        (copy,) = [a for a in received if a[4] == {"": second}]
        assert json.loads(copy[7])["origin_id"] == original[0]
        history = await bridge.history_get(alice_jid, "", -1, True, {}, bob)
        texts = [h[4].get("") for h in history]
        assert texts.count(first) == 1 and texts.count(second) == 1
    finally:
        await proxy.close()
        await bridge.close()
