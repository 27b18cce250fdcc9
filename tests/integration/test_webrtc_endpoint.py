"""The frontends' WebRTC data-channel endpoints, with real aiortc on 127.0.0.1, against an
in-process fake of the daemon that relays the signalling the way the real backend does: each
SDP loses its ``a=candidate`` lines (a Jingle description carries none; ``a=mid`` is put back
when missing), the candidates travel as ``ice_candidates_new`` dicts, the sender gets some of
the receiver's candidates *before* the answer (they must be queued), and the transfer ends with
``progress_finished`` once both "done" reports agree (``progress_error`` otherwise)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from libervia.frontends.webrtc import (
    WEBRTC_TRANSPORT,
    DataChannelReceiver,
    DataChannelSender,
    TransferFailed,
    WebRTCConfig,
    WebRTCError,
    candidates_from_sdp,
    strip_candidates,
)
from tests.conftest import aio

pytestmark = pytest.mark.timeout(120)

CONFIG = WebRTCConfig(host_addresses=("127.0.0.1",))
SID = "sid-1"
ALICE, BOB = "alice", "bob"


def jingle_sdp(sdp: str) -> str:
    """What the daemon hands over for an SDP gone through Jingle: no candidates, a mid."""
    sdp = strip_candidates(sdp)
    if "\na=mid:" not in sdp:
        sdp = sdp.replace("\r\nc=IN IP4 0.0.0.0\r\n", "\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n")
    return sdp


class Handle:
    def __init__(self, handlers: list[Any], cb: Any) -> None:
        self.handlers, self.cb = handlers, cb

    def remove(self) -> None:
        if self.cb in self.handlers:
            self.handlers.remove(self.cb)


class Side:
    """The bridge client of one profile: the daemon's methods and signals."""

    def __init__(self, daemon: FakeDaemon, profile: str) -> None:
        self.daemon, self.profile = daemon, profile
        self.handlers: dict[str, list[Any]] = {}

    def on_signal(self, name: str, cb: Any) -> Handle:
        handlers = self.handlers.setdefault(name, [])
        handlers.append(cb)
        return Handle(handlers, cb)

    def emit(self, name: str, *args: Any) -> None:
        for cb in list(self.handlers.get(name, [])):
            cb(*args, self.profile)

    async def file_send(self, *args: Any) -> str:
        return await self.daemon.file_send(*args)

    async def action_launch(self, *args: Any) -> str:
        return await self.daemon.action_launch(*args)

    async def file_webrtc_report(self, session_id: str, report: str, profile: str) -> None:
        self.daemon.report(profile, json.loads(report))


class FakeDaemon:
    """Both daemons of a transfer (alice sends, bob receives) in one object."""

    def __init__(
        self,
        directory: Path,
        size_delta: int = 0,
        relay_candidates: bool = True,
        transport: str = WEBRTC_TRANSPORT,
        fallback: bool = False,
    ) -> None:
        self.alice, self.bob = Side(self, ALICE), Side(self, BOB)
        self.directory = directory
        self.size_delta = size_delta
        self.relay_candidates = relay_candidates
        self.transport = transport
        self.fallback = fallback
        self.reports: dict[str, list[dict[str, Any]]] = {ALICE: [], BOB: []}
        self.offer_candidates: dict[str, Any] = {}
        self.offer: dict[str, Any] = {}
        self.offered = asyncio.get_running_loop().create_future()
        self.set_up = asyncio.Event()
        self.ended = False
        self.final: Path | None = None
        self.partial: Path | None = None

    async def file_send(
        self, peer: str, path: str, name: str, desc: str, extra: str, profile: str
    ) -> str:
        options = json.loads(extra)
        assert options["webrtc"] is True and options["transport"] == "auto"
        sdp = options["call_data"]["sdp"]
        self.offer_candidates = candidates_from_sdp(sdp)
        size = os.path.getsize(path) + self.size_delta
        self.offer = {
            "type": "file",
            "subtype": "jingle",
            "from_jid": "alice@example.org/li",
            "session_id": SID,
            "progress_id": "p-bob",
            "file": {"name": name, "size": size, "desc": desc, "hash_algo": "", "hash": ""},
            "webrtc": {"sdp": jingle_sdp(sdp)},
        }
        if self.transport == WEBRTC_TRANSPORT:
            self.offered.set_result(self.offer)
        return json.dumps({"progress": "p-alice", "session_id": SID, "transport": self.transport})

    async def action_launch(self, action_id: str, data: str, profile: str) -> str:
        answer = json.loads(data)
        assert answer["accept"] is True and "path" in answer
        directory = Path(answer["path"] or self.directory)
        self.final = directory / "received.bin"
        self.partial = directory / "received.bin.part"
        self.partial.touch()
        sdp = answer["sdp"]
        loop = asyncio.get_running_loop()
        loop.call_soon(self._accepted, sdp)
        return "{}"

    def _accepted(self, answer_sdp: str) -> None:
        metadata = {"path": str(self.final), "partial": str(self.partial)}
        self.bob.emit("progress_started", "p-bob", json.dumps(metadata))
        if self.relay_candidates:
            # the receiver's candidates reach the sender BEFORE its answer: to be queued
            self.alice.emit("ice_candidates_new", SID, json.dumps(candidates_from_sdp(answer_sdp)))
        self.alice.emit(
            "call_setup", SID, json.dumps({"role": "initiator", "sdp": jingle_sdp(answer_sdp)})
        )
        self.set_up.set()
        if self.relay_candidates:
            self.bob.emit("ice_candidates_new", SID, json.dumps(self.offer_candidates))

    def report(self, profile: str, report: dict[str, Any]) -> None:
        self.reports[profile].append(report)
        if self.ended:
            return
        if report["state"] == "failed":
            self.end_with_error(f"{profile}: {report['error']}")
            return
        if self.fallback and report["state"] == "connected" and profile == ALICE:
            # the daemon gives WebRTC up (e.g. its own ICE timeout) and moves the bytes
            self.ended = True
            ended = json.dumps({"reason": "failed-transport", "fallback": True})
            self.alice.emit("call_ended", SID, ended)
            self.bob.emit("call_ended", SID, ended)
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, self.alice.emit, "progress_finished", "p-alice", "{}")
            loop.call_later(0.2, self.bob.emit, "progress_finished", "p-bob", "{}")
            return
        done = {
            p: next((r for r in reports if r["state"] == "done"), None)
            for p, reports in self.reports.items()
        }
        if done[ALICE] and done[BOB]:
            if done[ALICE]["hash"] != done[BOB]["hash"]:
                self.end_with_error("hash mismatch")
                return
            assert self.partial is not None and self.final is not None
            self.partial.rename(self.final)
            self.ended = True
            metadata = {"hash_algo": "sha-256", "hash_verified": True, "size": done[BOB]["size"]}
            self.alice.emit("progress_finished", "p-alice", json.dumps(metadata))
            self.bob.emit(
                "progress_finished", "p-bob", json.dumps({**metadata, "path": str(self.final)})
            )

    def end_with_error(self, text: str) -> None:
        self.ended = True
        self.alice.emit("call_ended", SID, json.dumps({"reason": "failed-transport"}))
        self.alice.emit("progress_error", "p-alice", text)
        self.bob.emit("progress_error", "p-bob", text)


def random_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path, data


async def start(
    daemon: FakeDaemon, source: Path, inbox: Path
) -> tuple[DataChannelSender, DataChannelReceiver]:
    positions: list[int] = []
    sender = DataChannelSender(daemon.alice, ALICE, CONFIG, lambda p, s: positions.append(p))
    receiver = DataChannelReceiver(daemon.bob, BOB, CONFIG)
    answer = await sender.send("bob@example.org/li", source, "data.bin", "random bytes")
    assert answer == {"progress": "p-alice", "session_id": SID, "transport": WEBRTC_TRANSPORT}
    assert sender.uses_webrtc
    offer = await daemon.offered
    await receiver.accept("action-1", offer, str(inbox))
    sender.positions = positions  # type: ignore[attr-defined]
    return sender, receiver


@aio
async def test_transfer_2mb(tmp_path: Path) -> None:
    """2 MB over loopback: the partial file has the bytes, both "done" reports the size and
    sha-256, the queued early candidates were applied after the answer, the progress
    callback saw every position, and progress_finished closes both peer connections."""
    source, data = random_file(tmp_path, 2_000_000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = FakeDaemon(tmp_path)
    applied: list[tuple[bool, int]] = []
    original = DataChannelSender._add_candidates

    async def spy(self: DataChannelSender, candidates: Any) -> None:
        candidates = list(candidates)
        applied.append((self._remote_set, len(candidates)))
        await original(self, candidates)

    DataChannelSender._add_candidates = spy  # type: ignore[method-assign]
    began = time.monotonic()
    try:
        sender, receiver = await start(daemon, source, inbox)
        try:
            sent = await sender.wait_done(60)
            received = await receiver.wait_done(60)
            elapsed = time.monotonic() - began
            finished = await sender.wait_ended(10)
            assert (await receiver.wait_ended(10))["path"] == str(daemon.final)
        finally:
            await sender.close()
            await receiver.close()
    finally:
        DataChannelSender._add_candidates = original  # type: ignore[method-assign]
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    expected = {"state": "done", "size": 2_000_000, "hash_algo": "sha-256", "hash": digest}
    assert sent == received == expected
    assert finished["hash_verified"] is True
    assert daemon.final is not None and daemon.final.read_bytes() == data
    for profile in (ALICE, BOB):
        states = [r["state"] for r in daemon.reports[profile]]
        assert states[0] == "connected" and states[-1] == "done", states
        assert set(states) <= {"connected", "progress", "done"}
        positions = [r["position"] for r in daemon.reports[profile] if r["state"] == "progress"]
        assert positions == sorted(positions)
    # the early candidate was queued, then applied once the answer was set
    assert applied and all(remote_set for remote_set, _ in applied)
    assert sum(count for _, count in applied) >= 1
    positions = [0, *sender.positions]  # type: ignore[attr-defined]
    assert positions[-1] == 2_000_000
    assert max(b - a for a, b in itertools.pairwise(positions)) <= 65536
    assert sender.pc is not None and sender.pc.connectionState == "closed"
    assert receiver.pc is not None and receiver.pc.connectionState == "closed"
    print(f"\n2 MB in {elapsed:.2f} s: {2 / elapsed:.2f} MB/s")


@aio
async def test_more_bytes_than_announced(tmp_path: Path) -> None:
    """The offer announces 1000 bytes less than the sender sends: the receiver reports
    "failed", the daemon ends the transfer with an error."""
    source, _data = random_file(tmp_path, 300_000)
    daemon = FakeDaemon(tmp_path, size_delta=-1000)
    sender, receiver = await start(daemon, source, tmp_path)
    try:
        with pytest.raises(TransferFailed, match="more data than the announced 299000 bytes"):
            await receiver.wait_done(60)
        with pytest.raises(TransferFailed):
            await sender.wait_ended(10)
        with pytest.raises(TransferFailed):
            await receiver.wait_ended(10)
    finally:
        await sender.close()
        await receiver.close()
    failed = [r for r in daemon.reports[BOB] if r["state"] == "failed"]
    assert failed == [{"state": "failed", "error": "more data than the announced 299000 bytes"}]
    assert not any(r["state"] == "done" for r in daemon.reports[BOB])


@aio
async def test_no_candidates_close(tmp_path: Path) -> None:
    """No candidate is ever relayed: nothing connects, and close() still releases both
    endpoints at once (their "done" then fails)."""
    source, _data = random_file(tmp_path, 10_000)
    daemon = FakeDaemon(tmp_path, relay_candidates=False)
    sender, receiver = await start(daemon, source, tmp_path)
    await daemon.set_up.wait()
    for _ in range(20):  # let the sender apply the answer
        await asyncio.sleep(0)
    assert receiver.position == 0 and not sender.done.done()
    async with asyncio.timeout(15):
        await sender.close()
        await receiver.close()
    with pytest.raises(WebRTCError):
        await sender.wait_done()
    with pytest.raises(WebRTCError):
        await receiver.wait_done()
    assert sender.pc is not None and sender.pc.connectionState == "closed"
    assert receiver.pc is not None and receiver.pc.connectionState == "closed"
    assert daemon.reports[BOB] == [] and daemon.reports[ALICE] == []


@aio
async def test_other_transport_chosen(tmp_path: Path) -> None:
    """The peer cannot do WebRTC: the daemon chose another transport, the sender closes its
    peer connection at once and sends nothing."""
    source, _data = random_file(tmp_path, 1000)
    daemon = FakeDaemon(tmp_path, transport="urn:xmpp:jingle:transports:ibb:1")
    sender = DataChannelSender(daemon.alice, ALICE, CONFIG)
    try:
        answer = await sender.send("bob@example.org/li", source)
        assert answer["transport"] == "urn:xmpp:jingle:transports:ibb:1"
        assert not sender.uses_webrtc
        assert sender.pc is not None and sender.pc.connectionState == "closed"
        daemon.alice.emit("progress_finished", "p-alice", json.dumps({"size": 1000}))
        assert await sender.wait_ended(5) == {"size": 1000}
    finally:
        await sender.close()
    assert daemon.reports[ALICE] == []


@aio
async def test_fallback(tmp_path: Path) -> None:
    """call_ended with "fallback": both peer connections close, no "done" is reported, and
    the endpoints still see the end of the transfer the daemon completes itself."""
    source, _data = random_file(tmp_path, 2_000_000)
    daemon = FakeDaemon(tmp_path, fallback=True)
    sender, receiver = await start(daemon, source, tmp_path)
    try:
        with pytest.raises(TransferFailed, match="fell back"):
            await sender.wait_done(60)
        with pytest.raises(TransferFailed, match="fell back"):
            await receiver.wait_done(60)
        assert await sender.wait_ended(10) == {}
        assert await receiver.wait_ended(10) == {}
        assert sender.fallback and not sender.uses_webrtc
        assert receiver.fallback and not receiver.uses_webrtc
        assert sender.pc is not None and sender.pc.connectionState == "closed"
        assert receiver.pc is not None and receiver.pc.connectionState == "closed"
        assert receiver._file is None  # the daemon writes the partial file now
    finally:
        await sender.close()
        await receiver.close()
    for profile in (ALICE, BOB):
        assert not any(r["state"] in ("done", "failed") for r in daemon.reports[profile])
