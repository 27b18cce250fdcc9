"""host.actions and host.progress: actions answered or cancelled, progress entries started,
polled, finished or failed; the bridge adapters (action_launch, progress_get,
progress_get_all); what a disconnecting profile does to both."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from libervia.backend.bridge.adapters import CoreAdapters
from libervia.backend.core.actions import ActionManager
from libervia.backend.core.exceptions import (
    ActionCancelled,
    ConflictError,
    ErrorCode,
    InvalidInput,
    NotFound,
)
from libervia.backend.core.main import NullBridge
from libervia.backend.core.progress import ProgressManager
from tests.conftest import aio
from tests.unit.core.fakes import logged_in, started_host

BOB = "bob@localhost/phone"
OFFER = {"type": "file", "subtype": "jingle", "from_jid": "alice@localhost/pc"}


def fake_host() -> Any:
    """A host with only what the two managers use: a recording bridge."""
    bridge = NullBridge()
    bridge.keep = True
    host = SimpleNamespace(bridge=bridge)
    host.actions = ActionManager(host)
    host.progress = ProgressManager(host)
    return host


def client(profile: str = "bob") -> Any:
    return SimpleNamespace(profile=profile)


def signals(host: Any, name: str) -> list[tuple[Any, ...]]:
    return [args for signal, args in host.bridge.emitted if signal == name]


async def turn() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# --- actions --------------------------------------------------------------------------------


@aio
async def test_action_answered() -> None:
    """new() emits action_new with the serialised data; launch() resolves the answer once."""
    host = fake_host()
    action = host.actions.new(client(), OFFER, security_limit=3)
    assert signals(host, "action_new") == [(json.dumps(OFFER), action.id, 3, "bob")]
    assert action.pending and action.profile == "bob" and action.data == OFFER
    assert host.actions.pending("bob") == [action]
    host.actions.launch("bob", action.id, {"accept": True, "path": "/tmp/x"})
    assert await action.answer == {"accept": True, "path": "/tmp/x"}
    assert not action.pending and host.actions.pending() == []
    # answered: the id is gone, and answering again is NotFound
    with pytest.raises(NotFound):
        host.actions.launch("bob", action.id, {})
    # nothing but action_new was emitted
    assert [s for s, _ in host.bridge.emitted] == ["action_new"]


@aio
async def test_action_ids_are_unique_and_per_profile() -> None:
    """Each action has its own id; another profile cannot answer it."""
    host = fake_host()
    first = host.actions.new(client(), OFFER)
    second = host.actions.new(client(), OFFER)
    assert first.id != second.id
    with pytest.raises(NotFound, match="no pending action"):
        host.actions.launch("alice", first.id, {"accept": True})
    assert first.pending


@aio
async def test_action_cancelled() -> None:
    """cancel() emits action_update (cancelled, reason) and fails the answer with
    ActionCancelled; a second cancel or a late answer changes nothing."""
    host = fake_host()
    action = host.actions.new(client(), OFFER)
    action.cancel("the sender retracted the offer")
    reason = "the sender retracted the offer"
    assert signals(host, "action_update") == [
        (action.id, json.dumps({"status": "cancelled", "reason": reason}), "bob")
    ]
    with pytest.raises(ActionCancelled) as info:
        await action.answer
    assert info.value.reason == "the sender retracted the offer"
    assert info.value.code is ErrorCode.CANCELLED
    action.cancel("again")
    with pytest.raises(NotFound):
        host.actions.launch("bob", action.id, {"accept": True})
    assert len(signals(host, "action_update")) == 1


@aio
async def test_answered_action_cannot_be_cancelled() -> None:
    """Once answered, cancel() is a no-op: no action_update, the answer stays."""
    host = fake_host()
    action = host.actions.new(client(), OFFER)
    host.actions.launch("bob", action.id, {"accept": False})
    action.cancel("too late")
    assert signals(host, "action_update") == []
    assert await action.answer == {"accept": False}


@aio
async def test_abandoned_action_tells_frontends() -> None:
    """When the code awaiting the answer is cancelled, frontends are told (action_update)."""
    host = fake_host()
    action = host.actions.new(client(), OFFER)
    waiter = asyncio.ensure_future(action.answer)
    await turn()
    waiter.cancel()
    await turn()
    assert action.answer.cancelled()
    assert signals(host, "action_update") == [
        (action.id, json.dumps({"status": "cancelled", "reason": "cancelled"}), "bob")
    ]
    assert host.actions.pending() == []


@aio
async def test_cancel_profile_only_cancels_that_profile() -> None:
    """cancel_profile() cancels the actions of one profile with reason "disconnected"."""
    host = fake_host()
    bobs = [host.actions.new(client("bob"), OFFER) for _ in range(2)]
    alices = host.actions.new(client("alice"), OFFER)
    host.actions.cancel_profile("bob")
    for action in bobs:
        with pytest.raises(ActionCancelled, match="disconnected"):
            await action.answer
    assert [(a[0], json.loads(a[1])["reason"]) for a in signals(host, "action_update")] == [
        (bobs[0].id, "disconnected"),
        (bobs[1].id, "disconnected"),
    ]
    assert host.actions.pending() == [alices]


@aio
async def test_action_data_must_be_serialisable() -> None:
    """Data that JSON cannot hold is refused before anything is emitted."""
    host = fake_host()
    with pytest.raises(InvalidInput, match="serialised"):
        host.actions.new(client(), {"when": object()})
    assert host.bridge.emitted == [] and host.actions.pending() == []


# --- progress -------------------------------------------------------------------------------


def test_progress_lifecycle() -> None:
    """add() emits progress_started; get() calls the position getter; finish() emits
    progress_finished and forgets the id."""
    host = fake_host()
    done = {"n": 0}
    meta = {"type": "file", "direction": "in", "name": "a.txt", "size": 10}
    host.progress.add(client(), "p1", lambda: {"position": done["n"], "size": 10}, meta)
    assert signals(host, "progress_started") == [("p1", json.dumps(meta), "bob")]
    assert host.progress.get("bob", "p1") == {"position": 0, "size": 10}
    done["n"] = 7
    assert host.progress.get("bob", "p1") == {"position": 7, "size": 10}
    assert host.progress.metadata("bob", "p1") == meta
    assert host.progress.is_running("bob", "p1")
    with pytest.raises(NotFound):
        host.progress.get("alice", "p1")  # another profile's id
    finished = {"size": 10, "hash_verified": True}
    host.progress.finish(client(), "p1", finished)
    assert signals(host, "progress_finished") == [("p1", json.dumps(finished), "bob")]
    assert not host.progress.is_running("bob", "p1")
    with pytest.raises(NotFound, match="no running progress"):
        host.progress.get("bob", "p1")
    # ended once: a late fail or finish is ignored
    host.progress.fail(client(), "p1", "late")
    host.progress.finish(client(), "p1", {})
    assert signals(host, "progress_error") == []
    assert len(signals(host, "progress_finished")) == 1


def test_progress_failed() -> None:
    """fail() emits progress_error with the text and forgets the id."""
    host = fake_host()
    host.progress.add(client(), "p1", lambda: {"position": 1, "size": 2}, {})
    host.progress.fail(client(), "p1", "hash mismatch: the file was removed")
    assert signals(host, "progress_error") == [("p1", "hash mismatch: the file was removed", "bob")]
    assert host.progress.get_all() == {}


def test_progress_get_all_and_duplicates() -> None:
    """get_all() per profile or for all; a running id cannot be added twice."""
    host = fake_host()
    host.progress.add(client("bob"), "p1", lambda: {"position": 1, "size": 2}, {})
    host.progress.add(client("bob"), "p2", lambda: {"position": 3, "size": 4}, {})
    host.progress.add(client("alice"), "p1", lambda: {"position": 5, "size": 6}, {})
    with pytest.raises(ConflictError):
        host.progress.add(client("bob"), "p1", lambda: {}, {})
    assert host.progress.get_all() == {
        "bob": {"p1": {"position": 1, "size": 2}, "p2": {"position": 3, "size": 4}},
        "alice": {"p1": {"position": 5, "size": 6}},
    }
    assert host.progress.get_all("alice") == {"alice": {"p1": {"position": 5, "size": 6}}}
    assert host.progress.get_all("carol") == {"carol": {}}
    host.progress.fail_profile("bob")
    assert [(a[0], a[2]) for a in signals(host, "progress_error")] == [("p1", "bob"), ("p2", "bob")]
    assert "disconnected" in signals(host, "progress_error")[0][1]
    assert host.progress.get_all() == {"alice": {"p1": {"position": 5, "size": 6}}}


def test_progress_broken_getter_does_not_hide_the_others() -> None:
    """get_all() skips (and logs) an entry whose position getter fails."""
    host = fake_host()

    def broken() -> dict[str, int]:
        raise OSError("file gone")

    host.progress.add(client(), "bad", broken, {})
    host.progress.add(client(), "ok", lambda: {"position": 1, "size": 1}, {})
    assert host.progress.get_all("bob") == {"bob": {"ok": {"position": 1, "size": 1}}}


def test_progress_metadata_must_be_serialisable() -> None:
    """Metadata that JSON cannot hold is refused, nothing is registered."""
    host = fake_host()
    with pytest.raises(InvalidInput):
        host.progress.add(client(), "p1", lambda: {}, {"path": Path("/x")})
    assert host.bridge.emitted == [] and host.progress.get_all() == {}


# --- bridge adapters and disconnection, on a started host ---------------------------------


@aio
async def test_bridge_adapters(tmp_path: Path) -> None:
    """action_launch decodes the answer (bad JSON: InvalidInput, unknown id: NotFound);
    progress_get / progress_get_all give decimal strings."""
    host = await started_host(tmp_path)
    try:
        bob, _ = await logged_in(host, "bob", BOB)
        adapters = CoreAdapters(host)
        action = host.actions.new(bob, OFFER)
        for bad in ("{", "[1]", '"yes"'):
            with pytest.raises(InvalidInput):
                await adapters.action_launch(action.id, bad, "bob")
        with pytest.raises(NotFound):
            await adapters.action_launch("nope", "{}", "bob")
        assert action.pending
        assert await adapters.action_launch(action.id, '{"accept": true}', "@DEFAULT@") == "{}"
        assert await action.answer == {"accept": True}

        host.progress.add(bob, "p1", lambda: {"position": 512, "size": 2048}, {})
        assert await adapters.progress_get("p1", "bob") == {"position": "512", "size": "2048"}
        with pytest.raises(NotFound):
            await adapters.progress_get("p2", "bob")
        expected = {"bob": {"p1": {"position": "512", "size": "2048"}}}
        assert await adapters.progress_get_all("@ALL@") == expected
        assert await adapters.progress_get_all("bob") == expected
        host.progress.finish(bob, "p1", {})
        assert await adapters.progress_get_all("@ALL@") == {}
        assert await adapters.progress_get_all("@DEFAULT@") == {"bob": {}}
    finally:
        await host.stop()


@aio
async def test_disconnect_cancels_actions_and_fails_progress(tmp_path: Path) -> None:
    """A profile disconnecting: its actions are cancelled (reason "disconnected"), its
    running progress fails with a clear error, before the disconnected signal."""
    host = await started_host(tmp_path)
    try:
        bob, _ = await logged_in(host, "bob", BOB)
        action = host.actions.new(bob, OFFER)
        host.progress.add(bob, "p1", lambda: {"position": 1, "size": 9}, {"type": "file"})
        await host.disconnect("bob")
        with pytest.raises(ActionCancelled, match="disconnected"):
            await action.answer
        names = [s for s, _ in host.bridge.emitted]
        assert names.index("action_update") < names.index("disconnected")
        assert names.index("progress_error") < names.index("disconnected")
        (update,) = signals(host, "action_update")
        assert update == (action.id, '{"status": "cancelled", "reason": "disconnected"}', "bob")
        (error,) = signals(host, "progress_error")
        assert error[0] == "p1" and error[2] == "bob"
        assert "'bob' was disconnected" in error[1]
        assert host.progress.get_all() == {} and host.actions.pending() == []
    finally:
        await host.stop()


@aio
async def test_subscription_request_is_an_action(tmp_path: Path) -> None:
    """A presence subscription request is a host action: answered with action_launch
    ({"accept": ...}) or with the subscription method; cancelled on disconnection."""
    host = await started_host(tmp_path)
    try:
        bob, stream = await logged_in(host, "bob", BOB)
        stream.sent()
        stream.receive("<presence from='eve@localhost/x' type='subscribe'/>")
        stream.receive("<presence from='eve@localhost' type='subscribe'/>")  # asked once
        (eve,) = host.actions.pending("bob")
        assert [a[1] for a in signals(host, "action_new")] == [eve.id]
        host.actions.launch("bob", eve.id, {"accept": True})
        await turn()
        assert stream.sent_xml() == [
            "<presence to='eve@localhost' type='subscribed'/>",
            "<presence to='eve@localhost' type='subscribe'/>",
        ]
        # answered with the subscription method: the action is answered too
        stream.receive("<presence from='mallory@localhost' type='subscribe'/>")
        (mallory,) = host.actions.pending("bob")
        await CoreAdapters(host).subscription("unsubscribed", "mallory@localhost", "bob")
        assert await mallory.answer == {"accept": False}
        await turn()
        assert stream.sent_xml() == ["<presence to='mallory@localhost' type='unsubscribed'/>"]
        # a request still pending when bob disconnects is cancelled
        stream.receive("<presence from='trent@localhost' type='subscribe'/>")
        (trent,) = host.actions.pending("bob")
        await host.disconnect("bob")
        assert signals(host, "action_update") == [
            (trent.id, '{"status": "cancelled", "reason": "disconnected"}', "bob")
        ]
    finally:
        await host.stop()
