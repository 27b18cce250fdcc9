"""End to end: file transfer over a WebRTC data channel (XEP-0343) between two ``li``
processes (aiortc, loopback host candidates only) through a daemon and a real Prosody.

One daemon holds alice and bob (``webrtc_ice_timeout = 5``: a connection not made within
5 s falls back to in-band bytestreams). ``li file receive --webrtc`` (bob) waits for the
offer that ``li file send --webrtc`` (alice) makes; the frontends move the bytes, the daemon
signals. Checked: the 20 MB file arrives with the same sha-256; when alice's side has no
usable candidate (``--ice-address 192.0.2.1``, an address of no interface here) the daemon
replaces the transport with IBB and the file still arrives; a sender without WebRTC gets
SOCKS5, which ``li file receive --webrtc`` takes as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.file_transfer import make_file, sha256_file
from libervia.cli import constants as C
from libervia.frontends.bridge.client import BridgeClient
from tests.conftest import aio, run
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.e2e.test_file_transfer import li_send_while_receiving

pytestmark = pytest.mark.timeout(240)

MB = 1_000_000
DC = "urn:xmpp:jingle:transports:webrtc-datachannel:1"
CONFIG = (
    "webrtc_ice_timeout = 5\n"
    "socks5_interfaces = 127.0.0.1\nsocks5_allow_loopback = true\nsocks5_proxy = none\n"
)
SIGNALS = ["connected", "call_setup", "call_ended", "ice_candidates_new", "progress_finished"]


@dataclass
class World:
    daemon: Daemon
    bridge: BridgeClient
    events: Recorder
    alice: str
    bob: str
    bob_full: str


@pytest.fixture(scope="module")
def world(
    prosody: Prosody, bus: DBusDaemon, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    daemon = Daemon(tmp_path_factory.mktemp("webrtc"), bus.address, CONFIG)
    daemon.start()
    bridge: BridgeClient | None = None
    try:

        async def start() -> World:
            nonlocal bridge
            bridge = await daemon.bridge()
            await bridge.refresh()  # the plugins' signals (call_setup...)
            events = Recorder(bridge, SIGNALS)
            jids = {}
            for profile in ("alice", "bob"):
                jids[profile] = await make_account(bridge, prosody, profile, unique(profile))
            full = {}
            for profile in ("alice", "bob"):
                await bridge.connect(profile, "", {})
                connected = await events.wait("connected", lambda a, p=profile: a[1] == p)
                full[profile] = connected[0]
            return World(daemon, bridge, events, jids["alice"], jids["bob"], full["bob"])

        yield run(start())
    finally:
        if bridge is not None:
            run(bridge.close())
        code = daemon.stop()
        assert code == 0, daemon.logs()


async def li_transfer(
    world: World,
    bus: DBusDaemon,
    tmp_path: Path,
    size: int,
    send_options: list[str],
    receive_options: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """bob's ``li file receive --yes --path INBOX -O json RECEIVE_OPTIONS`` waits for the
    file that alice's ``li file send BOB FILE -O json SEND_OPTIONS`` sends: both results,
    after checking that both succeeded and that the file arrived intact."""
    source = tmp_path / "photo.bin"
    expected = make_file(source, size)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sent, received = await li_send_while_receiving(
        bus,
        ["file", "receive", world.alice, "--yes", "--path", str(inbox), "-p", "bob"]
        + ["-O", "json", *receive_options],
        ["file", "send", world.bob_full, str(source), "-p", "alice", "-O", "json"] + send_options,
        timeout=120,
    )
    out, err = received.stdout, received.stderr
    assert sent.returncode == C.EXIT_OK, (sent.stdout, sent.stderr, world.daemon.logs()[-3000:])
    assert received.returncode == C.EXIT_OK, (out, err)
    assert "Traceback" not in err and "Traceback" not in sent.stderr
    (result,) = json.loads(sent.stdout)
    got = json.loads(out)
    assert sha256_file(inbox / source.name) == expected
    assert sorted(p.name for p in inbox.iterdir()) == [source.name]  # no partial left
    assert result["status"] == got["status"] == "finished"
    assert got["hash_verified"] is True
    return result, got


def ended(world: World, session_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(args[1])
        for name, args in world.events.events
        if name == "call_ended" and args[0] == session_id
    ]


@aio
async def test_webrtc_20mb(world: World, bus: DBusDaemon, tmp_path: Path) -> None:
    """20 MB over the data channel: the transport stays WebRTC (no fallback), the peers'
    candidates were relayed, the hash is verified."""
    ice = ["--webrtc", "--ice-address", "127.0.0.1"]
    result, got = await li_transfer(world, bus, tmp_path, 20 * MB, ice, ice)
    assert result["transport"] == DC
    assert got["size"] == result["size"] == 20 * MB
    session_id = result["session_id"]
    assert [e["fallback"] for e in ended(world, session_id)] == [False, False]
    relayed = [
        a for n, a in world.events.events if n == "ice_candidates_new" and a[0] == session_id
    ]
    assert {a[2] for a in relayed} == {"alice", "bob"}


@aio
async def test_webrtc_ice_failure_falls_back_to_ibb(
    world: World, bus: DBusDaemon, tmp_path: Path
) -> None:
    """alice's WebRTC has no usable candidate: after webrtc_ice_timeout (5 s) the daemon
    replaces the transport with IBB and moves the bytes; both frontends are told."""
    send = ["--webrtc", "--ice-address", "192.0.2.1"]
    receive = ["--webrtc", "--ice-address", "127.0.0.1"]
    result, got = await li_transfer(world, bus, tmp_path, 2 * MB, send, receive)
    fallbacks = [e for e in ended(world, result["session_id"]) if e["fallback"]]
    assert len(fallbacks) == 2  # alice's and bob's frontends


@aio
async def test_sender_without_webrtc_gets_socks5(
    world: World, bus: DBusDaemon, tmp_path: Path
) -> None:
    """A sending frontend without WebRTC: no call data, so the data channel is not usable
    and SOCKS5 is offered; the receiving li --webrtc takes it like any offer."""
    result, got = await li_transfer(
        world, bus, tmp_path, 2 * MB, [], ["--webrtc", "--ice-address", "127.0.0.1"]
    )
    assert result.get("transport", "") != DC
    assert not ended(world, result["session_id"])


@aio
async def test_receiver_without_webrtc_gets_ibb(
    world: World, bus: DBusDaemon, tmp_path: Path
) -> None:
    """alice sends with WebRTC, bob's li receives without it: bob's daemon proposes IBB
    before accepting and the daemons move the bytes; alice's li is told (fallback)."""
    result, got = await li_transfer(
        world, bus, tmp_path, 2 * MB, ["--webrtc", "--ice-address", "127.0.0.1"], []
    )
    assert result["transport"] == DC  # offered; replaced before bob accepted
    assert [e["fallback"] for e in ended(world, result["session_id"])] == [True, True]
