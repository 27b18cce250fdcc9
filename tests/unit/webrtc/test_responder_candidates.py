"""The callee's frontend trickles its candidates before it gives its answer (a browser fires
``icecandidate`` as soon as the answer is its local description, and may send them before
or while ``action_launch`` / ``call_answer_sdp`` carries the answer): they are kept and sent
after the session-accept, not refused (found by tests/e2e/test_call.py: they were refused
with InvalidInput "no local WebRTC description", and lost)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from libervia.backend.core.exceptions import InvalidInput
from tests.conftest import aio
from tests.unit.webrtc.test_calls import ANSWER, host_for, incoming, norm
from tests.unit.webrtc.test_ice import candidate
from tests.webrtc_peer import strip_candidates


async def add(host: Any, candidates: dict[str, Any]) -> str:
    result: str = await host.bridge.methods["ice_candidates_add"](
        "call1", json.dumps(candidates), "alice"
    )
    return result


async def sent_candidates(wire: Any) -> list[tuple[str, str]]:
    """(content name, port) of each transport-info's candidate sent after the
    session-accept (each transport-info acknowledged: the next one follows)."""
    infos = []
    while raw := await wire.read():
        for index in range(len(raw)):
            wire.ack(index)
        infos += [norm(x) for x in raw]
    return ports(infos)


def ports(infos: list[str]) -> list[tuple[str, str]]:
    """(content name, port) of each transport-info's candidate."""
    found = []
    for info in infos:
        assert "action='transport-info'" in info and info.count("<candidate ") == 1, info
        name = info.split("<content creator='initiator' name='")[1].split("'")[0]
        found.append((name, info.split(" port='")[1].split("'")[0]))
    return found


@aio
@pytest.mark.parametrize("later", [False, True], ids=["action_launch", "call_answer_sdp"])
async def test_candidates_before_the_answer_are_kept(tmp_path: Path, later: bool) -> None:
    """Before the user answered, then after accepting without SDP (call_answer_sdp comes
    later): the candidates are taken, nothing is sent; the session-accept carries none, the
    transport-infos after it carry them, once each (the answer's own candidate too)."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        _, action_id, wire = await incoming(host, stream)
        assert await add(host, {"0": {"candidates": [candidate(5001)]}}) == "{}"
        answer = strip_candidates(ANSWER)
        if later:
            host.actions.launch("alice", action_id, {"accept": True})
            assert await wire.read() == []
            await add(host, {"1": {"candidates": [candidate(5002)], "ufrag": "B0bU"}})
            assert await wire.read() == []
            await host.bridge.methods["call_answer_sdp"]("call1", answer, "alice")
        else:
            host.actions.launch("alice", action_id, {"accept": True, "sdp": answer})
        (accept,) = [norm(x) for x in await wire.read()]
        assert "action='session-accept'" in accept and "<candidate " not in accept
        wire.ack()
        expected = [("0", "5001")] + ([("1", "5002")] if later else [])
        assert await sent_candidates(wire) == expected
    finally:
        await host.stop()


@aio
async def test_early_candidates_of_the_answer_sent_once(tmp_path: Path) -> None:
    """A frontend trickling the candidates that its answer SDP also has: each goes once."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        _, action_id, wire = await incoming(host, stream)
        await add(host, {"0": {"candidates": [candidate(41234), candidate(5001)]}})
        host.actions.launch("alice", action_id, {"accept": True, "sdp": ANSWER})
        (accept,) = await wire.read()
        wire.ack()
        infos = await sent_candidates(wire)
        assert sorted(infos) == [("0", "41234"), ("0", "5001"), ("1", "41234")]
    finally:
        await host.stop()


@aio
async def test_early_candidates_refused_or_dropped(tmp_path: Path) -> None:
    """The callee never tells a selected pair; candidates gathered with other ICE
    credentials than the answer's do not belong to it (dropped); no flood is kept."""
    host, client, stream, _ = await host_for(tmp_path)
    try:
        _, action_id, wire = await incoming(host, stream)
        selected = {"component_id": 1, "address": "127.0.0.1", "port": 1}
        with pytest.raises(InvalidInput, match="only the initiator"):
            await add(host, {"0": {"candidates": [], "remote_candidate": selected}})
        await add(host, {"0": {"candidates": [candidate(5001)], "ufrag": "x", "pwd": "y"}})
        with pytest.raises(InvalidInput, match="too many"):
            for port in range(6000, 6100):
                await add(host, {"1": {"candidates": [candidate(port)]}})
        host.actions.launch("alice", action_id, {"accept": True, "sdp": strip_candidates(ANSWER)})
        await wire.read()
        wire.ack()
        infos = await sent_candidates(wire)
        assert ("0", "5001") not in infos
        assert len(infos) == 64 and all(name == "1" for name, _ in infos)
    finally:
        await host.stop()
