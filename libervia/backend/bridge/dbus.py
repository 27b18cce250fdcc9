"""The D-Bus service: serves the methods declared in :mod:`.api` on the session bus.

dbus-fast's low-level API is used on purpose (one message handler on the bus instead of
``ServiceInterface`` classes): methods are plain entries of the :class:`~.api.BridgeAPI`
registry, so plugins can add methods and signals at runtime, and introspection is generated
from the same registry.

How dbus-fast calls us (``BaseMessageBus._process_message``): every incoming message goes
through our handler first; returning a ``Message`` sends it as the reply, returning ``True``
marks the call as handled without a reply (we answer later, when the handler's coroutine is
done), returning ``None`` lets dbus-fast handle the message (replies to our own calls, signals,
``Peer.GetMachineId``...). Our handler never raises: errors become D-Bus error replies, so no
caller can break the connection, and every coroutine runs in its own task, so a slow call never
blocks the others.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.signature import get_signature_tree
from twisted.internet.defer import Deferred

from libervia.backend.bridge import render
from libervia.backend.bridge.api import (
    BUS_NAME,
    INTERFACE_PREFIX,
    OBJECT_PATH,
    Arg,
    BridgeAPI,
    Method,
    Signal,
    core_api,
)
from libervia.backend.bridge.errors import (
    UNKNOWN_METHOD,
    UNKNOWN_PROPERTY,
    check_call,
    error_name,
    to_dbus_error,
)
from libervia.backend.core.exceptions import (
    ConfigError,
    ConflictError,
    ErrorCode,
    InvalidInput,
    LiberviaError,
)
from libervia.backend.core.log import get_logger
from libervia.frontends.bridge import dbus_fast_compat

log = get_logger(__name__)

INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PEER = "org.freedesktop.DBus.Peer"
PROPERTIES = "org.freedesktop.DBus.Properties"
_NO_REPLY = MessageFlag.NO_REPLY_EXPECTED.value
_METHOD_CALL = MessageType.METHOD_CALL
_METHOD_RETURN = MessageType.METHOD_RETURN
_SIGNAL = MessageType.SIGNAL
_ERROR = MessageType.ERROR

ArgSpec = Arg | tuple[str, str] | tuple[str, str, str]


def _as_args(args: Iterable[ArgSpec]) -> tuple[Arg, ...]:
    return tuple(a if isinstance(a, Arg) else Arg(*a) for a in args)


def _log_send_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("could not send a D-Bus message: %s", fut.exception())


class DBusBridge:
    """The bridge service.

    Args:
        handlers: object whose attribute ``<name>`` serves the core method ``<name>`` (plain or
            ``async`` function, or returning a Deferred); it receives the arguments positionally
            and returns a value of the declared return type.
        api: the declarations (default: a fresh :func:`~.api.core_api`).
        wait_ready: awaited before serving any method not declared ``before_ready`` (until it
            has returned once).
        bus_address: D-Bus address; default: the session bus (``DBUS_SESSION_BUS_ADDRESS``).
        reconnect_delay, reconnect_delay_max: when the bus connection is lost without
            :meth:`disconnect` (the dbus-daemon restarted), the bridge connects to the same
            address again and owns its name again: first after ``reconnect_delay`` seconds,
            then twice later each time up to ``reconnect_delay_max``.
        sleep: ``await sleep(seconds)`` between attempts (tests pass a fake one).
    """

    def __init__(
        self,
        handlers: Any,
        *,
        api: BridgeAPI | None = None,
        wait_ready: Callable[[], Awaitable[Any]] | None = None,
        bus_address: str | None = None,
        reconnect_delay: float = 0.1,
        reconnect_delay_max: float = 5.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.api = api if api is not None else core_api()
        self._handlers = handlers
        self._plugin_handlers: dict[str, Callable[..., Any]] = {}
        self._wait_ready = wait_ready
        self._ready = wait_ready is None
        self._bus_address = bus_address
        self._bus: MessageBus | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._xml: tuple[tuple[int, int], str] | None = None
        self._reconnect_delay = reconnect_delay
        self._reconnect_delay_max = reconnect_delay_max
        self._sleep = sleep
        self._closing = False
        self._watcher: asyncio.Future[None] | None = None
        #: how many times the bus connection was restored (tests, diagnostics)
        self.reconnections = 0

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._bus is not None and self._bus.connected

    async def wait_disconnected(self) -> None:
        """Return when the bus connection ends (``disconnect()``, or the bus went away: the
        daemon may want to stop then, no frontend can reach it any more)."""
        bus = self._bus
        if bus is None:
            return
        try:
            await bus.wait_for_disconnect()
        except Exception as e:
            log.error("lost the D-Bus connection: %s", e)

    async def connect(self) -> None:
        """Connect to the bus, serve the bridge object and own ``org.libervia.Libervia``.

        The connection is then watched: if it is lost (the dbus-daemon restarted), the bridge
        connects again to the same address and owns the name again, with backoff
        (:meth:`_reconnect`); frontends find it there as before.

        Raises:
            ConfigError: the bus cannot be reached.
            ConflictError: another process owns the name (another daemon is running).
        """
        dbus_fast_compat.install()
        missing = [m.name for m in self.api.methods.values() if self._handler(m) is None]
        if missing:
            log.warning("bridge methods without a handler (answered NotSupported): %s", missing)
        self._closing = False
        self._bus = await self._open()
        log.info("bridge serving %s on D-Bus (%s)", BUS_NAME, self._bus.unique_name)
        self._watch(self._bus)

    async def _open(self) -> MessageBus:
        """A bus connection serving the bridge and owning its name."""
        try:
            bus = await MessageBus(bus_address=self._bus_address).connect()
        except Exception as e:
            where = self._bus_address or "the session bus (DBUS_SESSION_BUS_ADDRESS)"
            raise ConfigError(f"cannot connect to D-Bus at {where}: {e}") from e
        bus.add_message_handler(self._on_message)
        try:
            reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        except Exception as e:
            await self._close_bus(bus)
            raise ConfigError(f"cannot request the D-Bus name {BUS_NAME}: {e}") from e
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            await self._close_bus(bus)
            raise ConflictError(
                f"another libervia-backend is already running on this bus (it owns {BUS_NAME}); "
                "stop it first (libervia-backend stop)"
            )
        return bus

    @staticmethod
    async def _close_bus(bus: MessageBus) -> None:
        if bus.connected:
            bus.disconnect()
            try:
                await bus.wait_for_disconnect()
            except Exception as e:
                log.debug("bus disconnected with %s", e)

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
        self._bus = None  # signals are dropped (and logged) until the bus is back
        try:
            await self._reconnect()
        except Exception:
            log.exception("D-Bus reconnection failed")

    async def _reconnect(self) -> None:
        """Connect again with backoff until the name is ours again (or :meth:`disconnect`)."""
        delay = self._reconnect_delay
        attempt = 0
        while not self._closing:
            await self._sleep(delay)
            if self._closing:
                return
            attempt += 1
            try:
                bus = await self._open()
            except ConflictError as e:
                log.error("D-Bus connection back, but the bridge name is taken: %s", e)
                return
            except Exception as e:
                log.info("D-Bus reconnection attempt %d failed: %s", attempt, e)
                delay = min(delay * 2, self._reconnect_delay_max)
                continue
            if self._closing:
                await self._close_bus(bus)
                return
            self._bus = bus
            self.reconnections += 1
            log.info(
                "D-Bus connection restored after %d attempt(s): serving %s again (%s)",
                attempt,
                BUS_NAME,
                bus.unique_name,
            )
            self._watch(bus)
            return

    async def disconnect(self) -> None:
        """Cancel the calls in progress and leave the bus (the name is released with it)."""
        self._closing = True
        bus, self._bus = self._bus, None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if bus is not None and bus.connected:
            bus.disconnect()
            try:
                await bus.wait_for_disconnect()
            except Exception as e:
                log.debug("bus disconnected with %s", e)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # only now: cancelling the watcher while it waits would cancel the bus's own future
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            if not watcher.done():
                watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    # --- runtime additions (plugins) -------------------------------------------------------

    def add_method(
        self,
        name: str,
        handler: Callable[..., Any],
        args: Sequence[ArgSpec] = (),
        returns: str = "",
        doc: str = "",
        *,
        before_ready: bool = False,
    ) -> Method:
        """Declare and serve a plugin method (interface ``org.libervia.Libervia.plugin``).

        ``args`` are :class:`~.api.Arg` or ``(name, signature[, doc])`` tuples.

        Raises:
            InvalidInput: invalid name or signature, or the name is already declared.
        """
        if not callable(handler):
            raise InvalidInput(f"handler of bridge method {name!r} is not callable")
        method = Method(name, _as_args(args), returns, doc, "plugin", before_ready)
        self.api.add_method(method)
        self._plugin_handlers[name] = handler
        return method

    def add_signal(self, name: str, args: Sequence[ArgSpec] = (), doc: str = "") -> Signal:
        """Declare a plugin signal (interface ``org.libervia.Libervia.plugin``)."""
        return self.api.add_signal(Signal(name, _as_args(args), doc, "plugin"))

    # --- signals ---------------------------------------------------------------------------

    def emit(self, signal: str, *args: Any) -> None:
        """Send a signal to every listening frontend.

        Raises:
            InvalidInput: unknown signal, or arguments not matching its declaration (bugs of
                the caller). A bus problem is logged, never raised.
        """
        declared = self.api.signals.get(signal)
        if declared is None:
            raise InvalidInput(f"unknown bridge signal {signal!r}")
        if len(args) != len(declared.args):
            raise InvalidInput(
                f"signal {signal} takes {len(declared.args)} arguments, got {len(args)}"
            )
        body = list(args)
        try:
            get_signature_tree(declared.signature).verify(body)
        except Exception as e:
            raise InvalidInput(f"signal {signal}: {e}") from None
        bus = self._bus
        if bus is None or not bus.connected:
            log.warning("signal %s dropped: the bridge is not connected", signal)
            return
        message = Message(
            path=OBJECT_PATH,
            interface=declared.full_interface,
            member=signal,
            message_type=_SIGNAL,
            signature=declared.signature,
            body=body,
            validate=False,
        )
        try:
            bus.send(message).add_done_callback(_log_send_failure)
        except Exception as e:
            log.error("could not send signal %s: %s", signal, e)

    # --- incoming calls --------------------------------------------------------------------

    def _on_message(self, msg: Message) -> Message | bool | None:
        """dbus-fast's message handler (see the module docstring). Never raises."""
        if msg.message_type is not _METHOD_CALL:
            return None
        try:
            if msg.path != OBJECT_PATH:
                return self._ancestor_introspect(msg)
            interface = msg.interface
            member = msg.member
            if interface is None:
                if member in self.api.methods:
                    interface = self.api.methods[member].full_interface
                elif member == "Introspect":
                    interface = INTROSPECTABLE
                elif member == "Ping":
                    interface = PEER
            if interface is not None and interface.startswith(INTERFACE_PREFIX):
                method = self.api.methods.get(member)  # type: ignore[arg-type]
                if method is None or method.full_interface != interface:
                    return self._error_message(
                        msg, UNKNOWN_METHOD, f"no method {member} on interface {interface}"
                    )
                self._dispatch(msg, method)
                return True
            if interface == INTROSPECTABLE and member == "Introspect":
                return Message.new_method_return(msg, "s", [self._introspection()])
            if interface == PEER and member == "Ping":
                return Message.new_method_return(msg)
            if interface == PROPERTIES:
                return self._properties(msg)
        except Exception as e:  # a bug here must not reach dbus-fast's loop
            name, text = to_dbus_error(e, f"{msg.interface}.{msg.member}")
            return self._error_message(msg, name, text)
        return None

    def _dispatch(self, msg: Message, method: Method) -> None:
        try:
            args = check_call(method, msg.signature, msg.body)
            fn = self._handler(method)
            if fn is None:
                raise NotImplementedError(f"{method.name} is not implemented by this daemon")
            if not self._ready and not method.before_ready:
                self._spawn(msg, method, self._call_when_ready(fn, args))
                return
            result = fn(*args)
        except Exception as e:
            self._reply_error(msg, method, e)
            return
        if isinstance(result, Deferred):
            result = result.asFuture(asyncio.get_running_loop())
        if inspect.isawaitable(result):
            self._spawn(msg, method, result)
        else:
            self._reply(msg, method, result)

    def _handler(self, method: Method) -> Callable[..., Any] | None:
        if method.interface == "plugin":
            return self._plugin_handlers.get(method.name)
        return getattr(self._handlers, method.name, None)

    async def _call_when_ready(self, fn: Callable[..., Any], args: list[Any]) -> Any:
        if not self._ready:
            assert self._wait_ready is not None
            await self._wait_ready()
            self._ready = True
        result = fn(*args)
        if isinstance(result, Deferred):
            result = result.asFuture(asyncio.get_running_loop())
        if inspect.isawaitable(result):
            result = await result
        return result

    def _spawn(self, msg: Message, method: Method, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                if self.connected:
                    self._reply_error(msg, method, LiberviaError("call cancelled"))
                return
            exc = t.exception()
            if exc is not None:
                self._reply_error(msg, method, exc)
            else:
                self._reply(msg, method, t.result())

        task.add_done_callback(done)

    # --- replies ---------------------------------------------------------------------------

    def _reply(self, msg: Message, method: Method, value: Any) -> None:
        if msg.flags.value & _NO_REPLY:
            return
        body = [value] if method.returns else []
        try:
            if method.returns:
                get_signature_tree(method.returns).verify(body)
            reply = Message(
                message_type=_METHOD_RETURN,
                reply_serial=msg.serial,
                destination=msg.sender,
                signature=method.returns,
                body=body,
                validate=False,
            )
            self._send(reply, raise_errors=True)
        except Exception as e:
            log.error(
                "bridge method %s returned %r, not a value of its declared type %r (%s)",
                method.name,
                value,
                method.returns,
                e,
            )
            self._send_error(
                msg,
                error_name(ErrorCode.INTERNAL),
                f"internal error: {method.name} returned a value not matching its "
                f"declared type {method.returns!r}",
            )

    def _reply_error(self, msg: Message, method: Method, exc: BaseException) -> None:
        name, text = to_dbus_error(exc, method.name)
        if msg.flags.value & _NO_REPLY:
            return
        self._send_error(msg, name, text)

    @staticmethod
    def _error_message(msg: Message, name: str, text: str) -> Message:
        return Message(
            message_type=_ERROR,
            reply_serial=msg.serial,
            destination=msg.sender,
            error_name=name,
            signature="s",
            body=[text],
            validate=False,
        )

    def _send_error(self, msg: Message, name: str, text: str) -> None:
        self._send(self._error_message(msg, name, text))

    def _send(self, message: Message, raise_errors: bool = False) -> None:
        bus = self._bus
        if bus is None or not bus.connected:
            log.debug("reply dropped, the bridge is not connected")
            return
        try:
            bus.send(message).add_done_callback(_log_send_failure)
        except Exception as e:
            if raise_errors:
                raise
            log.error("could not send a D-Bus reply: %s", e)

    # --- standard interfaces ---------------------------------------------------------------

    def _introspection(self) -> str:
        key = (len(self.api.methods), len(self.api.signals))
        if self._xml is None or self._xml[0] != key:
            self._xml = (key, render.introspection_xml(self.api))
        return self._xml[1]

    def _ancestor_introspect(self, msg: Message) -> Message | None:
        """Answer Introspect on ``/``, ``/org``... with the way down to the bridge object."""
        if msg.member != "Introspect" or msg.interface not in (None, INTROSPECTABLE):
            return None
        path = msg.path or ""
        prefix = "/" if path == "/" else path + "/"
        if not OBJECT_PATH.startswith(prefix):
            return None
        child = OBJECT_PATH[len(prefix) :].split("/", 1)[0]
        return Message.new_method_return(msg, "s", [render.child_node_xml(child)])

    def _properties(self, msg: Message) -> Message:
        """The bridge has no properties: GetAll is empty, Get and Set fail."""
        if msg.member == "GetAll" and msg.signature == "s":
            return Message.new_method_return(msg, "a{sv}", [{}])
        return self._error_message(msg, UNKNOWN_PROPERTY, "the Libervia bridge has no properties")
