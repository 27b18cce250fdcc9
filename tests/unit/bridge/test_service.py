"""DBusBridge's dispatch, without a bus: messages in, replies captured by a fake bus."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest
from dbus_fast import Message, MessageFlag, MessageType
from twisted.internet import defer

from libervia.backend.bridge.dbus import DBusBridge
from libervia.backend.core.exceptions import InvalidInput, ProfileUnknownError
from tests.conftest import aio

CORE = "org.libervia.Libervia.core"
PLUGIN = "org.libervia.Libervia.plugin"
PATH = "/org/libervia/Libervia/bridge"
_serials = itertools.count(1)


class FakeBus:
    """Captures what the bridge sends."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.connected = True

    def send(self, msg: Message) -> asyncio.Future[None]:
        msg._marshall(False)  # fails like the real bus on values not matching the signature
        self.sent.append(msg)
        fut: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        fut.set_result(None)
        return fut


class Handlers:
    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def version_get(self) -> str:
        return "1.2"

    async def ready_get(self) -> None:
        await self.ready.wait()

    def profiles_list_get(self, clients: bool, components: bool) -> list[str]:
        self.calls.append(("profiles_list_get", (clients, components)))
        return ["alice"] if clients else []

    async def connect(self, profile_key: str, password: str, options: dict[str, str]) -> bool:
        self.calls.append(("connect", (profile_key, password, options)))
        return True

    def profile_name_get(self, profile_key: str) -> str:
        raise ProfileUnknownError(f"unknown profile {profile_key!r}")

    def is_connected(self, profile_key: str) -> Any:
        return "not a boolean"

    def disconnect(self, profile_key: str) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        asyncio.get_event_loop().call_soon(d.callback, None)
        return d


def make_bridge(**kwargs: Any) -> tuple[DBusBridge, FakeBus, Handlers]:
    handlers = Handlers()
    bridge = DBusBridge(handlers, **kwargs)
    bus = FakeBus()
    bridge._bus = bus  # type: ignore[assignment]
    return bridge, bus, handlers


def call(
    bridge: DBusBridge,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
    interface: str | None = CORE,
    path: str = PATH,
    flags: MessageFlag = MessageFlag.NONE,
) -> Message:
    msg = Message(
        message_type=MessageType.METHOD_CALL,
        serial=next(_serials),
        sender=":1.42",
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body or [],
        flags=flags,
    )
    result = bridge._on_message(msg)
    if isinstance(result, Message):  # dbus-fast sends what the handler returns
        bridge._bus.send(result)  # type: ignore[union-attr]
    return msg


async def settle(bridge: DBusBridge) -> None:
    """Let the calls in progress finish (no sleeping: each step waits for real work)."""
    while bridge._tasks:
        await asyncio.gather(*bridge._tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the tasks' done callbacks send the replies


def reply_to(bus: FakeBus, msg: Message) -> Message:
    replies = [m for m in bus.sent if m.reply_serial == msg.serial]
    assert len(replies) == 1, replies
    return replies[0]


@aio
async def test_sync_handler_answers_at_once() -> None:
    bridge, bus, handlers = make_bridge()
    msg = call(bridge, "profiles_list_get", "bb", [True, False])
    reply = reply_to(bus, msg)
    assert reply.message_type is MessageType.METHOD_RETURN
    assert (reply.signature, reply.body, reply.destination) == ("as", [["alice"]], ":1.42")
    assert handlers.calls == [("profiles_list_get", (True, False))]


@aio
async def test_async_handler_and_deferred() -> None:
    bridge, bus, handlers = make_bridge()
    first = call(bridge, "connect", "ssa{ss}", ["alice", "pw", {"k": "v"}])
    second = call(bridge, "disconnect", "s", ["alice"])
    assert bus.sent == []  # answered later
    await settle(bridge)
    assert reply_to(bus, first).body == [True]
    assert reply_to(bus, second).message_type is MessageType.METHOD_RETURN
    assert reply_to(bus, second).body == []
    assert handlers.calls == [("connect", ("alice", "pw", {"k": "v"}))]


@aio
async def test_call_without_interface_is_dispatched() -> None:
    bridge, bus, _ = make_bridge()
    msg = call(bridge, "version_get", interface=None)
    assert reply_to(bus, msg).body == ["1.2"]


@aio
async def test_wrong_arguments_are_invalid_args() -> None:
    bridge, bus, handlers = make_bridge()
    msg = call(bridge, "profiles_list_get", "si", ["x", 1])
    reply = reply_to(bus, msg)
    assert reply.error_name == "org.libervia.Libervia.Error.InvalidInput"
    assert "profiles_list_get expects (clients: b, components: b)" in reply.body[0]
    assert "got (s, i)" in reply.body[0]
    assert handlers.calls == []


@aio
async def test_unknown_method_or_wrong_interface() -> None:
    bridge, bus, _ = make_bridge()
    for msg in (call(bridge, "nope"), call(bridge, "version_get", interface=PLUGIN)):
        assert reply_to(bus, msg).error_name == "org.freedesktop.DBus.Error.UnknownMethod"


@aio
async def test_libervia_error_and_bad_return_value(caplog: pytest.LogCaptureFixture) -> None:
    bridge, bus, _ = make_bridge()
    msg = call(bridge, "profile_name_get", "s", ["bob"])
    reply = reply_to(bus, msg)
    assert reply.error_name == "org.libervia.Libervia.Error.ProfileUnknown"
    assert reply.body == ["unknown profile 'bob'"]
    with caplog.at_level(logging.ERROR):
        msg = call(bridge, "is_connected", "s", ["bob"])
    reply = reply_to(bus, msg)
    assert reply.error_name == "org.libervia.Libervia.Error.InternalError"
    assert "is_connected returned a value not matching its declared type 'b'" in reply.body[0]
    assert "not a boolean" in caplog.text


@aio
async def test_missing_handler_is_not_supported() -> None:
    bridge, bus, _ = make_bridge()
    msg = call(bridge, "contacts_get", "s", ["alice"])
    reply = reply_to(bus, msg)
    assert reply.error_name == "org.freedesktop.DBus.Error.NotSupported"
    assert "contacts_get" in reply.body[0]


@aio
async def test_no_reply_expected_sends_nothing() -> None:
    bridge, bus, handlers = make_bridge()
    call(bridge, "profiles_list_get", "bb", [True, True], flags=MessageFlag.NO_REPLY_EXPECTED)
    call(bridge, "profile_name_get", "s", ["x"], flags=MessageFlag.NO_REPLY_EXPECTED)
    assert bus.sent == []
    assert handlers.calls == [("profiles_list_get", (True, True))]


@aio
async def test_wait_ready_holds_calls_except_before_ready() -> None:
    handlers = Handlers()
    bridge = DBusBridge(handlers, wait_ready=handlers.ready.wait)
    bus = FakeBus()
    bridge._bus = bus  # type: ignore[assignment]
    held = call(bridge, "profiles_list_get", "bb", [True, False])
    waiting = call(bridge, "ready_get")
    version = call(bridge, "version_get")
    assert reply_to(bus, version).body == ["1.2"]  # before_ready: answered at once
    for _ in range(5):
        await asyncio.sleep(0)
    assert [m.reply_serial for m in bus.sent] == [version.serial]
    assert handlers.calls == []
    handlers.ready.set()
    await settle(bridge)
    assert reply_to(bus, held).body == [["alice"]]
    assert reply_to(bus, waiting).message_type is MessageType.METHOD_RETURN
    # once ready, calls are answered at once again
    now = call(bridge, "profiles_list_get", "bb", [True, False])
    assert reply_to(bus, now).body == [["alice"]]


@aio
async def test_standard_interfaces() -> None:
    bridge, bus, _ = make_bridge()
    intro = reply_to(
        bus, call(bridge, "Introspect", interface="org.freedesktop.DBus.Introspectable")
    )
    assert '<method name="profile_create">' in intro.body[0]
    assert reply_to(bus, call(bridge, "Ping", interface="org.freedesktop.DBus.Peer")).body == []
    props = "org.freedesktop.DBus.Properties"
    assert reply_to(bus, call(bridge, "GetAll", "s", [CORE], interface=props)).body == [{}]
    error = reply_to(bus, call(bridge, "Get", "ss", [CORE, "x"], interface=props))
    assert error.error_name == "org.freedesktop.DBus.Error.UnknownProperty"
    # GetMachineId is left to dbus-fast
    assert (
        bridge._on_message(
            Message(
                serial=1,
                sender=":1.1",
                path=PATH,
                interface="org.freedesktop.DBus.Peer",
                member="GetMachineId",
            )
        )
        is None
    )


@aio
async def test_ancestors_lead_to_the_bridge_object() -> None:
    bridge, bus, _ = make_bridge()
    for path, child in [
        ("/", "org"),
        ("/org/libervia", "Libervia"),
        ("/org/libervia/Libervia", "bridge"),
    ]:
        reply = reply_to(
            bus,
            call(bridge, "Introspect", interface="org.freedesktop.DBus.Introspectable", path=path),
        )
        assert f'<node name="{child}" />' in reply.body[0]
    other = Message(
        serial=1,
        sender=":1.1",
        path="/elsewhere",
        member="Introspect",
        interface="org.freedesktop.DBus.Introspectable",
    )
    assert bridge._on_message(other) is None


@aio
async def test_other_messages_are_left_to_dbus_fast() -> None:
    bridge, _, _ = make_bridge()
    signal = Message.new_signal(PATH, CORE, "connected", "ss", ["a", "b"])
    assert bridge._on_message(signal) is None
    ret = Message(message_type=MessageType.METHOD_RETURN, reply_serial=3, destination=":1.1")
    assert bridge._on_message(ret) is None


@aio
async def test_plugin_methods() -> None:
    bridge, bus, _ = make_bridge()
    seen = []

    async def double(values: list[int]) -> list[int]:
        seen.append(values)
        return [v * 2 for v in values]

    method = bridge.add_method("plugin_double", double, [("values", "ai", "numbers")], "ai", "x2")
    assert method.interface == "plugin" and method.args[0].doc == "numbers"
    assert '<method name="plugin_double">' in bridge._introspection()
    msg = call(bridge, "plugin_double", "ai", [[1, 2]], interface=PLUGIN)
    await settle(bridge)
    assert reply_to(bus, msg).body == [[2, 4]]
    with pytest.raises(InvalidInput, match="already declared"):
        bridge.add_method("plugin_double", double, [("values", "ai")], "ai")
    with pytest.raises(InvalidInput, match="not callable"):
        bridge.add_method("plugin_other", None, [], "")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        bridge.add_method("plugin_bad", double, [("values", "a{")], "")


@aio
async def test_emit(caplog: pytest.LogCaptureFixture) -> None:
    bridge, bus, _ = make_bridge()
    bridge.add_signal("plugin_event", [("what", "s")], "doc")
    bridge.emit("connected", "alice@example.org/x", "alice")
    bridge.emit("plugin_event", "hi")
    assert [(m.message_type, m.interface, m.member, m.body) for m in bus.sent] == [
        (MessageType.SIGNAL, CORE, "connected", ["alice@example.org/x", "alice"]),
        (MessageType.SIGNAL, PLUGIN, "plugin_event", ["hi"]),
    ]
    assert all(m.path == PATH for m in bus.sent)
    with pytest.raises(InvalidInput, match="unknown bridge signal"):
        bridge.emit("nope")
    with pytest.raises(InvalidInput, match="takes 2 arguments, got 1"):
        bridge.emit("connected", "x")
    with pytest.raises(InvalidInput, match="connected"):
        bridge.emit("connected", "x", 3)
    bus.connected = False
    with caplog.at_level(logging.WARNING):
        bridge.emit("disconnected", "alice")  # logged, not raised
    assert "signal disconnected dropped" in caplog.text
    assert len(bus.sent) == 2


@aio
async def test_handler_crash_in_the_dispatcher_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even a bug of the dispatcher itself becomes an error reply, never an exception."""
    bridge, bus, _ = make_bridge()

    def broken(*args: object) -> None:
        raise RuntimeError("dispatcher bug")

    monkeypatch.setattr(bridge, "_dispatch", broken)
    msg = call(bridge, "version_get")
    assert reply_to(bus, msg).error_name == "org.libervia.Libervia.Error.InternalError"
