"""The bridge on a real private dbus-daemon: DBusBridge (fake handlers) driven through
BridgeClient, gdbus and raw dbus-fast."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from libervia.backend.bridge.dbus import DBusBridge
from libervia.backend.core.exceptions import ConflictError
from libervia.frontends.bridge import (
    BridgeClient,
    BridgeError,
    BridgeTimeout,
    BridgeUnavailable,
)
from tests.bridge_fake import FakeHandlers
from tests.conftest import aio
from tests.dbus import DBusDaemon, wait_pid_gone

pytestmark = pytest.mark.timeout(60)

NAME = "org.libervia.Libervia"
PATH = "/org/libervia/Libervia/bridge"
CORE = "org.libervia.Libervia.core"


@contextlib.asynccontextmanager
async def serving(
    address: str, *, ready: bool = True, **kwargs: Any
) -> AsyncIterator[tuple[DBusBridge, BridgeClient, FakeHandlers]]:
    handlers = FakeHandlers()
    if ready:
        handlers.ready.set()
    else:
        kwargs["wait_ready"] = handlers.ready.wait
    bridge = DBusBridge(handlers, bus_address=address, **kwargs)
    await bridge.connect()
    client = None
    try:
        client = await BridgeClient.connect(address)
        yield bridge, client, handlers
    finally:
        if client is not None:
            await client.close()
        await bridge.disconnect()


async def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command line tool in a thread (the loop keeps serving the bridge meanwhile)."""
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is missing (the test command installs it)")
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=30)


@aio
async def test_every_kind_of_signature(bus_address: str) -> None:
    async with serving(bus_address) as (_, client, handlers):
        assert await client.version_get() == "0.0.test"
        assert await client.profiles_list_get(True, True) == ["alice", "bob", "pubsub"]
        assert await client.profiles_list_get(False, False) == []
        assert await client.connect("alice", "pw", {"already": "yes", "é": "ü"}) is True
        assert await client.call("connect", "alice", "", {}) is False
        assert await client.profile_create("carol", "", "") is None
        assert (
            await client.param_get_a_async("jid", "Connection", "value", -1, "@DEFAULT@")
            == "Connection/jid/value/-1/@DEFAULT@"
        )
        await client.contact_update("bob@example.org", "Bob", ["a", "b"], "alice")
        rows = await client.history_get("a@x", "b@x", 2, True, {"search": "x"}, "alice")
        assert rows == [
            ("uid0", 1.7e9, "a@x", "b@x", {"": "m0"}, {}, "chat", "{}"),
            ("uid1", 1.7e9 + 0.25, "a@x", "b@x", {"": "m1"}, {}, "chat", "{}"),
        ]
        assert await client.contacts_get("alice") == [
            ("bob@example.org", {"name": "Bob"}, ["friends", "work"])
        ]
        assert await client.presence_statuses_get("alice") == {
            "bob@example.org": {"phone": ("away", -1, {"": "out", "fr": "dehors"})}
        }
        features, identities, extensions = await client.disco_infos("x", "", True, "alice")
        assert features == ["http://jabber.org/protocol/disco#info"]
        assert identities == [("client", "pc", "Libervia")]
        assert extensions == {"urn:xmpp:dataforms:softwareinfo": [({"var": "os"}, ["Linux"])]}
    # the handlers received Python values of the right types
    calls = dict(handlers.calls)
    assert calls["profiles_list_get"] == (False, False)
    assert calls["connect"] == ("alice", "", {})
    assert calls["profile_create"] == ("carol", "", "")
    assert calls["contact_update"] == ("bob@example.org", "Bob", ["a", "b"], "alice")
    assert calls["history_get"] == ("a@x", "b@x", 2, True, {"search": "x"}, "alice")
    assert type(calls["history_get"][2]) is int and type(calls["history_get"][3]) is bool


@aio
async def test_errors_reach_the_client(bus_address: str) -> None:
    async with serving(bus_address) as (bridge, client, _):
        with pytest.raises(BridgeError) as info:
            await client.profile_name_get("nobody")
        assert info.value.name == "org.libervia.Libervia.Error.ProfileUnknown"
        assert info.value.code == "ProfileUnknown"
        assert info.value.message == "unknown profile 'nobody'"
        assert str(info.value) == "ProfileUnknown: unknown profile 'nobody'"
        # an unexpected exception: InternalError, no details, and the bridge still answers
        with pytest.raises(BridgeError) as info:
            await client.contact_del("secret@example.org", "alice")
        assert info.value.code == "InternalError"
        assert "RuntimeError" in info.value.message
        assert "secret" not in info.value.message
        # a handler returning the wrong type is a bug of ours: InternalError too
        with pytest.raises(BridgeError) as info:
            await client.disco_items("x", "", True, "alice")
        assert info.value.code == "InternalError"
        # a method the daemon does not implement
        with pytest.raises(BridgeError) as info:
            await client.presence_set("", "", {}, "alice")
        assert info.value.code == "org.freedesktop.DBus.Error.NotSupported"
        assert await client.profile_name_get("@DEFAULT@") == "alice"
        assert bridge.connected


@aio
async def test_wrong_arguments(bus_address: str) -> None:
    async with serving(bus_address) as (_, client, handlers):
        # checked by the client before sending
        with pytest.raises(BridgeError) as info:
            await client.profile_create("alice")
        assert info.value.code == "InvalidInput"
        assert "profile_create(profile, password, component) takes 3 arguments" in str(info.value)
        with pytest.raises(BridgeError) as info:
            await client.profiles_list_get("yes", 1)
        assert info.value.code == "InvalidInput"
        with pytest.raises(BridgeError) as info:
            await client.no_such_method()
        assert info.value.code == "org.freedesktop.DBus.Error.UnknownMethod"
        # checked by the daemon, for callers that do not use our client
        raw = await MessageBus(bus_address=bus_address).connect()
        try:
            reply = await raw.call(
                Message(
                    destination=NAME,
                    path=PATH,
                    interface=CORE,
                    member="profiles_list_get",
                    signature="si",
                    body=["yes", 1],
                )
            )
        finally:
            raw.disconnect()
            await raw.wait_for_disconnect()
        assert reply.message_type is MessageType.ERROR
        assert reply.error_name == "org.libervia.Libervia.Error.InvalidInput"
        assert "profiles_list_get expects (clients: b, components: b)" in reply.body[0]
        assert "got (s, i)" in reply.body[0]
        assert not any(name == "profiles_list_get" for name, _ in handlers.calls)


@aio
async def test_slow_call_does_not_block_others(bus_address: str) -> None:
    async with serving(bus_address) as (_, client, handlers):
        slow = asyncio.ensure_future(client.disconnect("alice"))
        assert await client.version_get() == "0.0.test"  # answered while disconnect waits
        assert not slow.done()
        assert await client.is_connected("alice") is True  # opens the gate
        assert await slow is None


@aio
async def test_timeout(bus_address: str) -> None:
    async with serving(bus_address) as (_, client, handlers):
        # a long deadline first, then a short one: the short one still fires on time
        patient = asyncio.ensure_future(client.disconnect("alice", timeout=30))
        with pytest.raises(BridgeTimeout) as info:
            await asyncio.wait_for(client.disconnect("bob", timeout=0.05), 10)
        assert isinstance(info.value, TimeoutError)
        assert info.value.message == "no answer to disconnect within 0.05 s"
        assert len(client._bus._method_return_handlers) == 1  # only the patient call waits
        assert await client.is_connected("alice") is True  # opens the gate
        assert await patient is None  # answered in time
        assert client._bus._method_return_handlers == {}
        assert await client.version_get() == "0.0.test"  # the late answer was ignored


@aio
async def test_signals(bus_address: str) -> None:
    async with serving(bus_address) as (bridge, client, _):
        received: list[tuple[Any, ...]] = []
        got_message = asyncio.Event()
        sentinel = asyncio.Event()

        async def on_message(*args: Any) -> None:
            received.append(args)
            got_message.set()

        handle = client.on_signal("message_new", on_message)
        client.on_signal("disconnected", lambda profile: sentinel.set())
        seen_by_bus: list[str] = []

        def probe(msg: Message) -> None:
            if msg.message_type is MessageType.SIGNAL and msg.path == PATH:
                seen_by_bus.append(msg.member or "")

        client._bus.add_message_handler(probe)
        await handle.ready()
        bridge.emit(
            "message_new", "u1", 1.7e9 + 0.5, "a@x/r", "b@x", {"": "hi"}, {}, "chat", "{}", "p"
        )
        await asyncio.wait_for(got_message.wait(), 10)
        assert received == [("u1", 1.7e9 + 0.5, "a@x/r", "b@x", {"": "hi"}, {}, "chat", "{}", "p")]
        # not after removal, and the bus does not even send it to us any more
        handle.remove()
        handle.remove()  # idempotent
        await client.version_get()  # the bus has applied RemoveMatch before this call
        bridge.emit("message_new", "u2", 0.0, "a", "b", {}, {}, "chat", "{}", "p")
        bridge.emit("disconnected", "p")
        await asyncio.wait_for(sentinel.wait(), 10)
        assert len(received) == 1
        assert seen_by_bus == ["message_new", "disconnected"]
        with pytest.raises(ValueError, match="no signal 'nope'"):
            client.on_signal("nope", print)


@aio
async def test_plugin_method_added_at_runtime(bus_address: str) -> None:
    async with serving(bus_address) as (bridge, client, _):

        async def plugin_sum(values: list[int], options: dict[str, Any]) -> int:
            return sum(values) * options["factor"].value

        bridge.add_method(
            "plugin_sum",
            plugin_sum,
            [("values", "ax", "numbers to add"), ("options", "a{sv}", "factor")],
            "x",
            "Sum (a test plugin method).",
        )
        bridge.add_signal("plugin_tick", [("count", "u")], "A test plugin signal.")
        assert "plugin_sum" not in client.methods
        from dbus_fast import Variant

        # unknown to the client: it introspects again and finds it
        assert await client.plugin_sum([1, 2, 2**40], {"factor": Variant("x", 2)}) == 2 * (
            3 + 2**40
        )
        assert client.methods["plugin_sum"].interface == "org.libervia.Libervia.plugin"
        assert client.methods["plugin_sum"].arg_names == ("values", "options")
        ticks: list[int] = []
        tick = asyncio.Event()
        handle = client.on_signal("plugin_tick", lambda n: (ticks.append(n), tick.set()))
        await handle.ready()
        bridge.emit("plugin_tick", 7)
        await asyncio.wait_for(tick.wait(), 10)
        assert ticks == [7]
        result = await run_tool(
            "gdbus", "introspect", "--address", bus_address, "--dest", NAME, "--object-path", PATH
        )
        assert "interface org.libervia.Libervia.plugin" in result.stdout
        assert "plugin_sum(in  ax values," in result.stdout
        assert "in  a{sv} options," in result.stdout
        assert "plugin_tick(u count);" in result.stdout


@aio
async def test_wait_ready(bus_address: str) -> None:
    async with serving(bus_address, ready=False) as (_, client, handlers):
        call = asyncio.ensure_future(client.profiles_list_get(True, False))
        ready = asyncio.ensure_future(client.wait_ready())
        # before_ready methods are answered; calls are handled in order, so once this
        # answer is here, the two calls above reached the daemon and are waiting
        assert await client.version_get() == "0.0.test"
        with pytest.raises(BridgeTimeout):
            await client.wait_ready(timeout=0.05)
        assert not call.done() and not ready.done()
        assert handlers.calls == []
        handlers.ready.set()
        assert await call == ["alice", "bob"]
        assert await ready is None
        await client.wait_ready(timeout=5)


@aio
async def test_second_daemon_is_refused(bus_address: str) -> None:
    async with serving(bus_address) as (_, client, _handlers):
        other = DBusBridge(FakeHandlers(), bus_address=bus_address)
        with pytest.raises(ConflictError, match="another libervia-backend is already running"):
            await other.connect()
        assert not other.connected
        assert await client.version_get() == "0.0.test"  # the first one still serves


@pytest.mark.timeout(120)
@aio
async def test_flood_of_pipelined_calls(bus_address: str) -> None:
    """5,000 calls in flight (about 1 kB answers) through our bridge and client: all answered,
    nobody knocked off the bus."""
    async with serving(bus_address) as (bridge, client, _):
        calls = 5000
        results = await asyncio.gather(
            *(client.history_get(f"a{i}@x", "b@x", 5, False, {}, "p") for i in range(calls)),
            return_exceptions=True,
        )
        errors = [r for r in results if not isinstance(r, list)]
        assert errors == []
        assert all(r[0][2] == f"a{i}@x" and len(r) == 5 for i, r in enumerate(results))
        assert bridge.connected and client.connected
        assert await client.version_get() == "0.0.test"


@aio
async def test_unavailable_when_no_daemon(bus_address: str) -> None:
    with pytest.raises(BridgeUnavailable) as info:
        await BridgeClient.connect(bus_address)
    assert "not running" in info.value.message
    assert "libervia-backend start" in info.value.message
    assert info.value.code == "org.freedesktop.DBus.Error.ServiceUnknown"


@aio
async def test_unavailable_when_no_bus(tmp_path: Path) -> None:
    with pytest.raises(BridgeUnavailable, match="cannot connect to D-Bus"):
        await BridgeClient.connect(f"unix:path={tmp_path / 'nothing'}")


@aio
async def test_client_after_close(bus_address: str) -> None:
    async with serving(bus_address) as (_, client, _handlers):
        await client.close()
        with pytest.raises(BridgeUnavailable):
            await client.version_get()


@aio
async def test_standard_tools_see_the_bridge(bus_address: str) -> None:
    async with serving(bus_address) as (bridge, _, _handlers):
        result = await run_tool(
            "gdbus", "introspect", "--address", bus_address, "--dest", NAME, "--object-path", PATH
        )
        assert result.returncode == 0, result.stderr
        out = result.stdout
        for iface in ("org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer", CORE):
            assert f"interface {iface} {{" in out
        for method in bridge.api.methods.values():
            assert f"{method.name}(" in out or f"{method.name}();" in out, method.name
            for arg in method.args:
                assert f"in  {arg.signature} {arg.name}" in out, (method.name, arg.name)
        assert "out a(sdssa{ss}a{ss}ss) result" in out
        for signal in bridge.api.signals.values():
            assert f"{signal.name}(" in out, signal.name
        # a call and an error through gdbus
        base = ["gdbus", "call", "--address", bus_address, "--dest", NAME, "--object-path", PATH]
        result = await run_tool(*base, "--method", f"{CORE}.profiles_list_get", "true", "false")
        assert result.stdout.strip() == "(['alice', 'bob'],)"
        result = await run_tool(*base, "--method", f"{CORE}.profile_name_get", "nobody")
        assert result.returncode != 0
        assert "org.libervia.Libervia.Error.ProfileUnknown" in result.stderr
        # walking the tree from / finds the object
        result = await run_tool(
            "gdbus",
            "introspect",
            "--address",
            bus_address,
            "--dest",
            NAME,
            "--object-path",
            "/",
            "--recurse",
            "--only-properties",
        )
        assert f"node {PATH}" in result.stdout


@aio
async def test_dbus_activation(tmp_path: Path) -> None:
    """A daemon that is not running but activatable is started by the client's first call."""
    services = tmp_path / "services"
    services.mkdir()
    script = Path(__file__).resolve().parents[1] / "bridge_fake.py"
    (services / f"{NAME}.service").write_text(
        f"[D-BUS Service]\nName={NAME}\nExec={sys.executable} {script}\n"
    )
    with DBusDaemon(service_dirs=[services]) as daemon:
        client = await BridgeClient.connect(daemon.address, timeout=30)
        try:
            assert await client.version_get() == "0.0.test"
            reply = await client._bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="GetConnectionUnixProcessID",
                    signature="s",
                    body=[NAME],
                )
            )
            pid = reply.body[0]
        finally:
            await client.close()
    # stopping the bus stopped the service it had started
    assert await asyncio.to_thread(wait_pid_gone, pid, 10)
