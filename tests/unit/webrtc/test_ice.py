"""ICE signalling of WebRTC sessions (XEP-0176 through the data-channel transport): ICE
restarts both ways, candidates from the frontend, limits, disco features."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from libervia.backend.core.exceptions import InvalidInput, NotFound
from tests.conftest import aio
from tests.unit.jingle.test_file_transfer import emitted, until
from tests.unit.webrtc.test_datachannel import ANSWER, jingle_log, offer


def candidate(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "foundation": f"f{port}",
        "component_id": 1,
        "transport": "udp",
        "priority": 2130706431,
        "address": "127.0.0.1",
        "port": port,
        "type": "host",
        **extra,
    }


async def add(host: Any, client: Any, wire: Any, sid: str, data: Any) -> None:
    """The frontend's ice_candidates_add, the wire pumped until it returns (it waits for
    the peer's acks of the transport-infos)."""
    task = asyncio.ensure_future(host.plugins["XEP-0176"].add_candidates(client, sid, data))
    await until(task.done, "candidates added", wire.pump)
    task.result()


async def accepted(tmp_path: Path) -> Any:
    (ha, ca, ra), (hb, cb, rb), wire, result, source = await offer(tmp_path, b"x" * 100)
    (action,) = emitted(hb, "action_new")
    hb.actions.launch("bob", action[1], {"accept": True, "path": str(tmp_path), "sdp": ANSWER})
    await until(lambda: emitted(ha, "call_setup"), "answer", wire.pump)
    await until(lambda: emitted(hb, "ice_candidates_new"), "bob's frontend ready", wire.pump)
    return (ha, ca), (hb, cb), wire, result["session_id"]


@aio
async def test_candidates_and_restart_from_the_frontend(tmp_path: Path) -> None:
    (ha, ca), (hb, cb), wire, sid = await accepted(tmp_path)
    try:
        before = len(emitted(ha, "ice_candidates_new"))
        # a late candidate of bob's frontend: one transport-info, relayed to alice's frontend
        late = [candidate(40000, rel_addr="127.0.0.1", rel_port=1)]
        await add(hb, cb, wire, sid, {"0": {"candidates": late}})
        await until(lambda: len(emitted(ha, "ice_candidates_new")) > before, "relayed", wire.pump)
        relayed = json.loads(emitted(ha, "ice_candidates_new")[-1][1])["0"]
        assert relayed["restart"] is False and relayed["ufrag"] == "e5Lw"
        assert [c["port"] for c in relayed["candidates"]] == [40000]
        # an ICE restart by bob's frontend: new credentials, with the fingerprint
        before = len(emitted(ha, "ice_candidates_new"))
        credentials = {"ufrag": "NEWU", "pwd": "newpassword0123456789xx", "candidates": []}
        await add(hb, cb, wire, sid, {"0": credentials})
        await until(lambda: len(emitted(ha, "ice_candidates_new")) > before, "restart", wire.pump)
        info = [x for x in jingle_log(wire) if "transport-info" in x and "NEWU" in x]
        assert len(info) == 1 and "<fingerprint" in info[0]
        restart = json.loads(emitted(ha, "ice_candidates_new")[-1][1])["0"]
        assert restart == {
            "ufrag": "NEWU",
            "pwd": "newpassword0123456789xx",
            "candidates": [],
            "restart": True,
        }
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_candidate_limits_and_bad_input(tmp_path: Path) -> None:
    (ha, ca), (hb, cb), wire, sid = await accepted(tmp_path)
    try:
        ice = hb.plugins["XEP-0176"]
        for bad, error in (
            ({}, InvalidInput),
            ({"0": "nope"}, InvalidInput),
            ({"0": {"candidates": [{"port": 1}]}}, InvalidInput),
            ({"0": {"candidates": [candidate(0)]}}, InvalidInput),
            ({"0": {"candidates": [candidate(1, type="bogus")]}}, InvalidInput),
            ({"0": {"candidates": [candidate(1, address="1.2.3.4\r\na=x")]}}, InvalidInput),
            ({"0": {"candidates": [candidate(p) for p in range(1, 70)]}}, InvalidInput),
            ({"1": {"candidates": []}}, NotFound),
        ):
            with pytest.raises(error):
                await ice.add_candidates(cb, sid, bad)
        with pytest.raises(NotFound):
            await ice.add_candidates(cb, "unknown", {"0": {"candidates": []}})
        # a peer flooding candidates: at most 64 reach the frontend
        before = sum(
            len(json.loads(a[1])["0"]["candidates"]) for a in emitted(ha, "ice_candidates_new")
        )
        for start in (1000, 2000):
            batch = [candidate(p) for p in range(start, start + 40)]
            await add(hb, cb, wire, sid, {"0": {"candidates": batch}})
        relayed = sum(
            len(json.loads(a[1])["0"]["candidates"]) for a in emitted(ha, "ice_candidates_new")
        )
        assert relayed - before <= 64 and relayed <= 64
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_disco_features(tmp_path: Path) -> None:
    (ha, ca), (hb, cb), wire, sid = await accepted(tmp_path)
    try:
        features = ha.plugins["XEP-0030"].features
        for namespace in (
            "urn:xmpp:jingle:transports:webrtc-datachannel:1",
            "urn:xmpp:jingle:transports:ice-udp:1",
            "urn:xmpp:jingle:apps:dtls:0",
            "urn:xmpp:jingle:apps:rtp:1",
            "urn:xmpp:jingle:apps:rtp:audio",
            "urn:xmpp:jingle:apps:rtp:video",
        ):
            assert namespace in features, namespace
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_selected_pair_told_with_remote_candidate(tmp_path: Path) -> None:
    """Once ICE completed, the initiator's frontend tells the pair it selected: a
    transport-info with <remote-candidate/> (XEP-0176), relayed to the peer's frontend."""
    (ha, ca), (hb, cb), wire, sid = await accepted(tmp_path)
    try:
        before = len(emitted(hb, "ice_candidates_new"))
        selected = {"component_id": 1, "address": "127.0.0.1", "port": 38214}
        await add(ha, ca, wire, sid, {"0": {"candidates": [], "remote_candidate": selected}})
        info = [x for x in jingle_log(wire) if "<remote-candidate" in x]
        assert len(info) == 1 and "component='1' ip='127.0.0.1' port='38214'" in info[0]
        await until(lambda: len(emitted(hb, "ice_candidates_new")) > before, "told", wire.pump)
        relayed = json.loads(emitted(hb, "ice_candidates_new")[-1][1])["0"]
        assert relayed["remote_candidate"] == selected and relayed["candidates"] == []
        # only the initiator selects; a malformed pair is refused
        with pytest.raises(InvalidInput, match="initiator"):
            await add(hb, cb, wire, sid, {"0": {"remote_candidate": selected}})
        for bad in ("x", {"address": "127.0.0.1"}, {"address": "a b", "port": 1}):
            with pytest.raises(InvalidInput):
                await add(ha, ca, wire, sid, {"0": {"remote_candidate": bad}})
    finally:
        await ha.stop()
        await hb.stop()
