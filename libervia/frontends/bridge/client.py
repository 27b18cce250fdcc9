"""The async bridge client every frontend uses (dbus-fast, asyncio).

The client knows nothing of the daemon's API in advance: it introspects the bridge object once
and learns every method and signal with its signature (core and plugin interfaces), so a
frontend can call plugin methods the daemon added at load time. Arguments are checked against
those signatures before anything is sent, so a wrong type fails early with a clear message.

    client = await BridgeClient.connect()
    await client.wait_ready()
    await client.profile_create("alice", "", "")
    handle = client.on_signal("message_new", on_message)
    ...
    handle.remove()
    await client.close()

A long-running frontend opens the client with ``reconnect=True``: if the bus connection is
lost (the dbus-daemon restarted), the client connects to the same address again with backoff,
adds its signal match rules again and calls the callbacks given to :meth:`on_reconnect` (a
frontend refreshes its state there: signals sent meanwhile were missed). Calls made while it is
disconnected raise :class:`BridgeUnavailable`.

This module must not import ``libervia.backend`` (import-linter contract): the fixed names are
repeated here, and a test checks that they match the daemon's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.introspection import Node
from dbus_fast.signature import get_signature_tree

from libervia.frontends.bridge import dbus_fast_compat

log = logging.getLogger(__name__)

BUS_NAME = "org.libervia.Libervia"
OBJECT_PATH = "/org/libervia/Libervia/bridge"
INTERFACE_PREFIX = "org.libervia.Libervia."
ERROR_PREFIX = "org.libervia.Libervia.Error."
INTERFACES = (INTERFACE_PREFIX + "core", INTERFACE_PREFIX + "plugin")

#: seconds a call waits for its answer by default (``timeout=None``: no limit)
DEFAULT_TIMEOUT = 60.0
#: seconds to wait for the daemon at connection time (D-Bus activation may start it)
CONNECT_TIMEOUT = 60.0

#: arguments that do not match the method (checked before sending, and by the daemon)
INVALID_INPUT = ERROR_PREFIX + "InvalidInput"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
TIMEOUT = "org.freedesktop.DBus.Error.Timeout"
_UNAVAILABLE_ERRORS = (SERVICE_UNKNOWN, "org.freedesktop.DBus.Error.NameHasNoOwner")
_SPAWN_PREFIX = "org.freedesktop.DBus.Error.Spawn."
_DBUS = {
    "destination": "org.freedesktop.DBus",
    "path": "/org/freedesktop/DBus",
    "interface": "org.freedesktop.DBus",
}
NOT_RUNNING = (
    f"the Libervia daemon is not running (nobody owns {BUS_NAME} on this D-Bus session bus, "
    "and it cannot be started by D-Bus activation); start it with: libervia-backend start"
)


class BridgeError(Exception):
    """An error answered by the daemon (or by D-Bus on its behalf).

    Attributes:
        name: the full D-Bus error name (``org.libervia.Libervia.Error.ProfileUnknown``).
        code: the part after ``org.libervia.Libervia.Error.`` (``ProfileUnknown``), or the full
            D-Bus name for errors that are not Libervia's (``org.freedesktop.DBus.Error...``).
        message: the human-readable text.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)
        self.name = name
        self.code = name[len(ERROR_PREFIX) :] if name.startswith(ERROR_PREFIX) else name
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BridgeUnavailable(BridgeError):
    """The daemon cannot be reached (not running, no session bus, connection lost)."""

    def __init__(self, message: str, name: str = SERVICE_UNKNOWN) -> None:
        super().__init__(name, message)


class BridgeTimeout(BridgeError, TimeoutError):
    """No answer in time (the call may still complete in the daemon)."""

    def __init__(self, message: str) -> None:
        super().__init__(TIMEOUT, message)


@dataclass(frozen=True)
class RemoteMethod:
    name: str
    interface: str
    in_signature: str
    out_signature: str
    arg_names: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.name}({', '.join(self.arg_names)})"


@dataclass(frozen=True)
class RemoteSignal:
    name: str
    interface: str
    signature: str
    arg_names: tuple[str, ...]


class SignalHandle:
    """Returned by :meth:`BridgeClient.on_signal`; :meth:`remove` stops the callbacks."""

    def __init__(
        self,
        client: BridgeClient,
        name: str,
        callback: Callable[..., Any],
        rule: asyncio.Future[None],
    ) -> None:
        self._client = client
        self._rule = rule
        self.name = name
        self.callback = callback
        self.active = True

    async def ready(self) -> None:
        """Wait until the bus applies the match rule (then even signals sent by other
        connections reach us; calls this client makes afterwards never need it)."""
        await asyncio.shield(self._rule)

    def remove(self) -> None:
        """Stop calling the callback (idempotent)."""
        if self.active:
            self.active = False
            self._client._remove_handle(self)


class _Deadlines:
    """The timeouts of the calls in flight, with one timer for all of them.

    A timer per call (``loop.call_later`` + ``cancel``) was about a third of the client's own
    time per call, more with thousands of calls in flight (heap operations); the calls share
    one timer set at the earliest deadline instead.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop  # default: the running loop (a fake one in tests)
        self._pending: dict[asyncio.Future[Any], tuple[float, Callable[[], None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def add(self, fut: asyncio.Future[Any], timeout: float, expire: Callable[[], None]) -> None:
        """Call ``expire()`` in ``timeout`` seconds unless :meth:`discard` comes first."""
        loop = self._loop or asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._pending[fut] = (deadline, expire)
        if deadline < self._timer_at:
            self._arm(loop, deadline)

    def discard(self, fut: asyncio.Future[Any]) -> None:
        self._pending.pop(fut, None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
        self._pending.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        self._timer, self._timer_at = None, math.inf
        next_at = math.inf
        for fut, (deadline, expire) in list(self._pending.items()):
            if deadline <= now:
                del self._pending[fut]
                expire()
            elif deadline < next_at:
                next_at = deadline
        if next_at < math.inf:
            self._arm(loop, next_at)


class _ConnectOrCall:
    """``BridgeClient.connect(...)`` opens a client; ``client.connect(...)`` is the bridge's
    core method ``connect`` (connect a profile), like every other method of the daemon."""

    def __get__(self, obj: BridgeClient | None, owner: type[BridgeClient]) -> Any:
        if obj is None:
            return owner.open
        return obj.__getattr__("connect")


class BridgeClient:
    """A connection to the daemon's bridge. Create it with ``await BridgeClient.connect()``.

    Bridge methods are coroutine attributes (``await client.profile_name_get("@DEFAULT@")``)
    or, equivalently, ``await client.call("profile_name_get", "@DEFAULT@")``. Names the client
    itself uses (``call``, ``close``, ``refresh``, ``wait_ready``, ``on_signal``...) can only be
    called through :meth:`call`; ``connect`` is both (see :class:`_ConnectOrCall`).
    """

    connect = _ConnectOrCall()

    #: first delay before connecting again to a lost bus, doubled up to the maximum (seconds)
    reconnect_delay = 0.1
    reconnect_delay_max = 5.0

    def __init__(
        self, bus: MessageBus, *, bus_address: str | None = None, reconnect: bool = False
    ) -> None:
        self._bus = bus
        self._bus_address = bus_address
        self._reconnect = reconnect
        self._closing = False
        self._watcher: asyncio.Future[None] | None = None
        self._on_reconnect: list[Callable[[], Any]] = []
        #: how many times the bus connection was restored
        self.reconnections = 0
        self.methods: dict[str, RemoteMethod] = {}
        self.signals: dict[str, RemoteSignal] = {}
        self._handles: dict[str, list[SignalHandle]] = {}
        self._rules: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._deadlines = _Deadlines()
        bus.add_message_handler(self._on_message)

    # --- connection ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        bus_address: str | None = None,
        *,
        timeout: float | None = CONNECT_TIMEOUT,
        reconnect: bool = False,
    ) -> BridgeClient:
        """Connect to the session bus (or ``bus_address``) and learn the daemon's API (also
        reachable as ``BridgeClient.connect``).

        If the daemon is not running but is D-Bus activatable, the first call starts it.
        ``reconnect``: connect again when the bus connection is lost (see the module's doc).

        Raises:
            BridgeUnavailable: no bus, or the daemon is neither running nor activatable.
        """
        dbus_fast_compat.install()
        try:
            bus = await MessageBus(bus_address=bus_address).connect()
        except Exception as e:
            where = bus_address or "the session bus (DBUS_SESSION_BUS_ADDRESS)"
            raise BridgeUnavailable(
                f"cannot connect to D-Bus at {where}: {e}; is a D-Bus session running?"
            ) from e
        client = cls(bus, bus_address=bus_address, reconnect=reconnect)
        try:
            await client.refresh(timeout=timeout)
        except BaseException:
            await client.close()
            raise
        if reconnect:
            client._watch(bus)
        return client

    def on_reconnect(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` (plain or ``async``) each time the bus connection is restored
        (with ``reconnect=True``)."""
        self._on_reconnect.append(callback)

    def _watch(self, bus: MessageBus) -> None:
        self._watcher = asyncio.ensure_future(self._watch_bus(bus))

    async def _watch_bus(self, bus: MessageBus) -> None:
        reason: object = "closed"
        try:
            await bus.wait_for_disconnect()
        except Exception as e:
            reason = e
        if self._closing or self._bus is not bus:
            return
        log.warning("lost the D-Bus connection (%s): connecting again", reason)
        delay = self.reconnect_delay
        attempt = 0
        while not self._closing:
            await asyncio.sleep(delay)
            attempt += 1
            try:
                new = await MessageBus(bus_address=self._bus_address).connect()
            except Exception as e:
                log.info("D-Bus reconnection attempt %d failed: %s", attempt, e)
                delay = min(delay * 2, self.reconnect_delay_max)
                continue
            if self._closing:
                new.disconnect()
                return
            self._bus = new
            new.add_message_handler(self._on_message)
            for name in list(self._handles):
                signal = self.signals.get(name)
                if signal is not None:
                    self._rules[name] = self._match("AddMatch", self._match_rule(signal))
            self.reconnections += 1
            log.info("D-Bus connection restored after %d attempt(s)", attempt)
            self._watch(new)
            for callback in list(self._on_reconnect):
                try:
                    result = callback()
                    if inspect.isawaitable(result):
                        self._track(asyncio.ensure_future(result), "reconnection callback")
                except Exception:
                    log.exception("reconnection callback failed")
            return

    async def refresh(self, timeout: float | None = CONNECT_TIMEOUT) -> None:
        """Introspect the bridge object again (e.g. after a plugin added methods)."""
        msg = Message(
            destination=BUS_NAME,
            path=OBJECT_PATH,
            interface="org.freedesktop.DBus.Introspectable",
            member="Introspect",
        )
        reply = await self._send_call(msg, timeout)
        node = Node.parse(reply.body[0])
        methods: dict[str, RemoteMethod] = {}
        signals: dict[str, RemoteSignal] = {}
        for iface in node.interfaces:
            if iface.name not in INTERFACES:
                continue
            for m in iface.methods:
                methods[m.name] = RemoteMethod(
                    m.name,
                    iface.name,
                    m.in_signature,
                    m.out_signature,
                    tuple(a.name or f"arg{i}" for i, a in enumerate(m.in_args)),
                )
            for s in iface.signals:
                signals[s.name] = RemoteSignal(
                    s.name, iface.name, s.signature, tuple(a.name or "" for a in s.args)
                )
        self.methods, self.signals = methods, signals

    @property
    def connected(self) -> bool:
        return self._bus.connected

    async def close(self) -> None:
        """Stop the signal callbacks in progress and leave the bus."""
        self._closing = True
        self._deadlines.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bus.connected:
            self._bus.disconnect()
            try:
                await self._bus.wait_for_disconnect()
            except Exception as e:
                log.debug("bus disconnected with %s", e)
        # only now: cancelling the watcher while it waits would cancel the bus's own future
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            if not watcher.done():
                watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def __aenter__(self) -> BridgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- calls -----------------------------------------------------------------------------

    async def call(self, name: str, *args: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Call a bridge method; return its result (``None`` when it returns nothing).

        Values are those of dbus-fast: ``a{..}`` are dicts, arrays lists, structs tuples.

        Raises:
            BridgeError: the daemon answered an error (``.code`` tells which), or the arguments
                do not match the method (``.code`` ``InvalidInput``).
            BridgeTimeout: no answer within ``timeout`` seconds.
            BridgeUnavailable: the daemon or the bus went away.
        """
        method = self.methods.get(name)
        if method is None:
            await self.refresh()
            method = self.methods.get(name)
            if method is None:
                raise BridgeError(UNKNOWN_METHOD, f"the Libervia daemon has no method {name!r}")
        if len(args) != len(method.arg_names):
            raise BridgeError(
                INVALID_INPUT,
                f"{method.describe()} takes {len(method.arg_names)} arguments, got {len(args)}",
            )
        body = list(args)
        try:
            get_signature_tree(method.in_signature).verify(body)
        except Exception as e:
            raise BridgeError(
                INVALID_INPUT, f"{method.describe()} [signature {method.in_signature!r}]: {e}"
            ) from None
        msg = Message(
            destination=BUS_NAME,
            path=OBJECT_PATH,
            interface=method.interface,
            member=name,
            signature=method.in_signature,
            body=body,
            validate=False,
        )
        reply = await self._send_call(msg, timeout)
        if not method.out_signature:
            return None
        if len(reply.body) == 1:
            return reply.body[0]
        return tuple(reply.body)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """``client.profile_create(...)`` is ``client.call("profile_create", ...)``."""
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Awaitable[Any]:
            return self.call(name, *args, timeout=timeout)

        method.__name__ = method.__qualname__ = name
        self.__dict__[name] = method  # found directly next time
        return method

    async def wait_ready(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Return once the daemon is ready to serve every method."""
        await self.call("ready_get", timeout=timeout)

    async def _send_call(self, msg: Message, timeout: float | None) -> Message:
        """Send a call and wait for its answer.

        Uses dbus-fast's callback form (``_call``) and :class:`_Deadlines` rather than
        ``bus.call`` under ``asyncio.timeout``: one coroutine, one timeout context and one timer
        less per call, which showed in the pipelined figures of bench/bridge.py.
        """
        bus = self._bus
        if not bus.connected:
            raise BridgeUnavailable("the connection to D-Bus is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Message] = loop.create_future()

        def answered(reply: Message | None, err: Exception | None) -> None:
            if fut.done():
                return
            if err is not None or reply is None:
                fut.set_exception(err or BridgeUnavailable("lost the connection to D-Bus"))
            else:
                fut.set_result(reply)

        def expired() -> None:
            # forget the pending call, or its handler would stay until an answer that may
            # never come
            bus._method_return_handlers.pop(msg.serial, None)
            if not fut.done():
                fut.set_exception(BridgeTimeout(f"no answer to {msg.member} within {timeout} s"))

        try:
            bus._call(msg, answered)
        except Exception as e:
            bus._method_return_handlers.pop(msg.serial, None)
            if not bus.connected:
                raise BridgeUnavailable(f"lost the connection to D-Bus: {e}") from e
            raise BridgeError("org.freedesktop.DBus.Error.Failed", f"{msg.member}: {e}") from e
        if timeout is not None:
            self._deadlines.add(fut, timeout, expired)
        try:
            reply = await fut
        except BridgeError:
            raise
        except asyncio.CancelledError:
            bus._method_return_handlers.pop(msg.serial, None)
            raise
        except Exception as e:
            raise BridgeUnavailable(f"lost the connection to D-Bus: {e}") from e
        finally:
            self._deadlines.discard(fut)
        if reply.message_type is MessageType.ERROR:
            name = reply.error_name or "org.freedesktop.DBus.Error.Failed"
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            if name in _UNAVAILABLE_ERRORS:
                raise BridgeUnavailable(NOT_RUNNING, name)
            if name.startswith(_SPAWN_PREFIX):
                raise BridgeUnavailable(
                    f"D-Bus could not start the Libervia daemon ({text}); start it with: "
                    "libervia-backend start",
                    name,
                )
            raise BridgeError(name, text)
        return reply

    # --- signals ---------------------------------------------------------------------------

    def on_signal(self, name: str, callback: Callable[..., Any]) -> SignalHandle:
        """Call ``callback(*args)`` (plain or ``async``) on each ``name`` signal.

        The bus sends us only this signal of the bridge object (one match rule per signal
        name, removed with the last handle).

        Raises:
            ValueError: the daemon declares no such signal (``await client.refresh()`` first if
                a plugin declared it after we connected).
        """
        signal = self.signals.get(name)
        if signal is None:
            raise ValueError(f"the Libervia daemon has no signal {name!r}")
        handles = self._handles.setdefault(name, [])
        if not handles:
            self._rules[name] = self._match("AddMatch", self._match_rule(signal))
        handle = SignalHandle(self, name, callback, self._rules[name])
        handles.append(handle)
        return handle

    def _remove_handle(self, handle: SignalHandle) -> None:
        handles = self._handles.get(handle.name, [])
        if handle in handles:
            handles.remove(handle)
        if not handles:
            self._handles.pop(handle.name, None)
            signal = self.signals.get(handle.name)
            self._rules.pop(handle.name, None)
            if signal is not None and self._bus.connected:
                self._match("RemoveMatch", self._match_rule(signal))

    @staticmethod
    def _match_rule(signal: RemoteSignal) -> str:
        return (
            f"type='signal',sender='{BUS_NAME}',path='{OBJECT_PATH}',"
            f"interface='{signal.interface}',member='{signal.name}'"
        )

    def _match(self, member: str, rule: str) -> asyncio.Future[None]:
        """Send AddMatch/RemoveMatch now, without waiting for the answer: the bus handles a
        connection's messages in order, so any call this client sends afterwards already
        sees the rule. The returned future tells when the bus has applied it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def answered(reply: Message | None, err: Exception | None) -> None:
            if err is None and reply is not None and reply.message_type is MessageType.ERROR:
                err = BridgeError(reply.error_name or "?", str(reply.body))
            if err is not None:
                log.warning("D-Bus %s %s failed: %s", member, rule, err)
            if not done.done():
                done.set_result(None)

        msg = Message(member=member, signature="s", body=[rule], **_DBUS)
        try:
            self._bus._call(msg, answered)  # sends at once (bus.call would wait for a task)
        except Exception as e:
            answered(None, e)
        return done

    def _on_message(self, msg: Message) -> None:
        if (
            msg.message_type is not MessageType.SIGNAL
            or msg.path != OBJECT_PATH
            or msg.interface not in INTERFACES
        ):
            return None
        for handle in list(self._handles.get(msg.member or "", ())):
            if not handle.active:
                continue
            try:
                result = handle.callback(*msg.body)
                if inspect.isawaitable(result):
                    self._track(asyncio.ensure_future(result), f"signal {msg.member}")
            except Exception:
                log.exception("callback of signal %s failed", msg.member)
        return None

    def _track(self, task: asyncio.Future[Any], what: str) -> None:
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)
