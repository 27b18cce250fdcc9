"""LiberviaBackend: the host object. Wiring and lifecycle only.

The host owns the configuration, the storage, the parameters, the profiles, the trigger
manager, the plugins, the connected clients, the questions pending for the user
(``host.actions``, core/actions.py) and the running long operations (``host.progress``,
core/progress.py). The bridge is given to it (``host.bridge``)
by the daemon entry point: core never imports the bridge (DESIGN.md §3); it only calls
``bridge.emit(signal, *args)``, ``bridge.add_method(...)`` and ``bridge.add_signal(...)``.

Lifecycle: ``await host.start()`` (storage created or migrated, plugins loaded, then ready;
profiles marked ``autoconnect`` connect in the background), ``await host.wait_ready()`` for
callers that arrive early, ``await host.stop()`` (profiles disconnected, pending history
written, database closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID

from libervia.backend import __version__
from libervia.backend.core import plugins as plugin_loader
from libervia.backend.core import roster
from libervia.backend.core.actions import ActionManager
from libervia.backend.core.aio import background
from libervia.backend.core.config import Config
from libervia.backend.core.exceptions import (
    InvalidInput,
    LiberviaError,
    NotConnected,
    NotReady,
)
from libervia.backend.core.log import get_logger
from libervia.backend.core.messages import MessageManager
from libervia.backend.core.profiles import ProfileManager
from libervia.backend.core.progress import ProgressManager
from libervia.backend.core.triggers import TriggerManager
from libervia.backend.core.xmpp import (
    DEFAULT_PORT,
    LOGIN_TIMEOUT,
    ConnectionSettings,
    LiberviaClient,
)
from libervia.backend.memory.params import Params
from libervia.backend.memory.sqla import HistoryMessage, Storage
from libervia.backend.tools.jid import parse_jid

log = get_logger(__name__)

CONNECT_OPTIONS = ("login_timeout",)


class Bridge(Protocol):
    """What core needs from the bridge."""

    def emit(self, signal: str, *args: Any) -> None: ...

    def add_method(self, name: str, handler: Any, **kwargs: Any) -> None: ...

    def add_signal(self, name: str, args: Any, doc: str = "") -> None: ...


class NullBridge:
    """A bridge that goes nowhere (tests, and the daemon before its bridge is attached)."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, tuple[Any, ...]]] = []
        self.keep = False
        #: plugin methods by name (tests call them as the bridge would)
        self.methods: dict[str, Any] = {}

    def emit(self, signal: str, *args: Any) -> None:
        if self.keep:
            self.emitted.append((signal, args))

    def add_method(self, name: str, handler: Any, **kwargs: Any) -> None:
        self.methods[name] = handler

    def add_signal(self, name: str, args: Any, doc: str = "") -> None:
        pass


class LiberviaBackend:
    """The host.

    Args:
        config: the parsed ``libervia.conf``.
        reactor: Twisted reactor (TCP + clock); the global one by default.
        plugins_package: where plugins are discovered (tests use their own).
    """

    version = __version__

    def __init__(
        self,
        config: Config,
        *,
        reactor: Any = None,
        plugins_package: str = plugin_loader.PLUGINS_PACKAGE,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.config = config
        self.reactor = reactor
        self.plugins_package = plugins_package
        self.bridge: Bridge = NullBridge()
        self.trigger = TriggerManager()
        self.plugins = plugin_loader.Plugins()
        self.storage = Storage(config.db_url)
        self.params = Params(self.storage)
        self.profiles = ProfileManager(self.storage, self.params, config)
        self.messages = MessageManager(self)
        self.actions = ActionManager(self)
        self.progress = ProgressManager(self)
        self.clients: dict[str, LiberviaClient] = {}
        self._connecting: dict[str, asyncio.Future[None]] = {}
        self._ready: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Prepare the storage, load the plugins, then become ready.

        Raises:
            LiberviaError: the database cannot be used (see Storage.initialise); the bridge
                reports it to callers waiting for readiness.
        """
        try:
            self.messages.setup_bridge()
            await self.storage.initialise()
            disabled = self.disabled_plugins()
            candidates, failures = plugin_loader.discover(self.plugins_package)
            self.plugins.refused.update(failures)
            self.plugins.load(self, candidates, disabled)
        except BaseException as e:
            if not self._ready.done():
                self._ready.set_exception(
                    e if isinstance(e, LiberviaError) else NotReady(f"start failed: {e}")
                )
                self._ready.exception()  # mark as retrieved: start()'s caller reports it
            raise
        self._ready.set_result(None)
        log.info("backend ready (%d plugins)", len(self.plugins.instances))
        for profile in self.profiles.list(clients=True, components=False):
            if await self.params.get("Connection", "autoconnect", profile):
                background(self._autoconnect(profile), f"autoconnect {profile}")

    def disabled_plugins(self) -> list[str]:
        """Import names listed in the ``plugins_disabled`` option (comma or space separated)."""
        value = self.config.get("plugins_disabled") or ""
        return [name for name in value.replace(",", " ").split() if name]

    async def _autoconnect(self, profile: str) -> None:
        try:
            await self.connect(profile)
        except LiberviaError as e:
            log.warning("autoconnect of profile %r failed: %s", profile, e)

    async def wait_ready(self) -> None:
        """Return once the host is ready (raises the start error if it failed)."""
        await asyncio.shield(self._ready)

    @property
    def is_ready(self) -> bool:
        return self._ready.done() and self._ready.exception() is None

    @property
    def is_stopping(self) -> bool:
        """True once :meth:`stop` was called (nothing may reconnect any more)."""
        return self._stopping

    async def stop(self) -> None:
        """Disconnect every profile, write pending history, close the database.

        Runs the ``backend_stopping`` trigger point first (plugins cancel their timers, e.g.
        pending reconnections).
        """
        self._stopping = True
        self.trigger.point("backend_stopping")
        if self.clients:
            await asyncio.gather(
                *(self.disconnect(p) for p in list(self.clients)), return_exceptions=True
            )
        await self.messages.writer.drain()
        await self.messages.writer.close()
        await self.storage.close()
        log.info("backend stopped")

    # --- profiles -----------------------------------------------------------------------------

    async def profile_delete(self, profile: str) -> None:
        name = await self.profiles.get_name(profile)
        if name in self.clients:
            await self.disconnect(name)
        await self.profiles.delete(name)

    # --- connection ---------------------------------------------------------------------------

    def get_client(self, profile: str) -> LiberviaClient:
        """The connected client of a profile (a name, not ``@DEFAULT@``).

        Raises:
            NotConnected: the profile is not connected.
        """
        client = self.clients.get(profile)
        if client is None or not client.is_connected():
            raise NotConnected(f"profile {profile!r} is not connected: connect it first")
        return client

    async def client_of(self, profile_key: str) -> LiberviaClient:
        """The connected client of a profile key (a name or ``@DEFAULT@``), for bridge methods.

        Raises:
            ProfileUnknownError, NotConnected.
        """
        return self.get_client(await self.profiles.get_name(profile_key))

    def is_connected(self, profile: str) -> bool:
        client = self.clients.get(profile)
        return client is not None and client.is_connected()

    async def connect(
        self, profile_key: str, password: str = "", options: Mapping[str, str] | None = None
    ) -> bool:
        """Connect a profile; True when it was already connected (or its lost session is
        being resumed).

        ``password`` is the *profile* password, needed when the profile is protected and its
        session is not started yet.

        Raises:
            PasswordError, ProfileUnknownError, InvalidInput (no JabberID...),
            AuthenticationFailed, TLSFailed, ConnectionFailed, OperationTimeout.
        """
        name = await self.profiles.get_name(profile_key)
        if self.is_connected(name):
            return True
        lost = self.clients.get(name)
        if lost is not None and not lost.close_requested:
            # its stream was lost and a plugin is re-establishing the session (XEP-0198
            # resumption) or the loss is being reported: it comes back, or is reconnected
            return True
        pending = self._connecting.get(name)
        if pending is not None:
            await asyncio.shield(pending)
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connecting[name] = future
        try:
            await self._connect(name, password, options or {})
        except BaseException as e:
            future.set_exception(e)
            future.exception()
            raise
        else:
            future.set_result(None)
        finally:
            del self._connecting[name]
        return False

    async def _connect(self, name: str, password: str, options: Mapping[str, str]) -> None:
        if self._stopping:
            raise NotReady("the backend is stopping")
        if self.storage.profile_is_component(name):
            raise InvalidInput(f"profile {name!r} is a component: components cannot connect yet")
        if not self.profiles.is_session_started(name):
            await self.profiles.start_session(name, password)
        settings = await self.connection_settings(name, options)
        client = await self.prepare_client(name, settings)
        await client.connect()
        await self.client_ready(client)

    async def prepare_client(self, name: str, settings: ConnectionSettings) -> LiberviaClient:
        """A client with every handler attached (core, then plugins), not connected yet."""
        client = LiberviaClient(name, settings, self.reactor, self.client_lost)
        roster.setup(client, self._emit, self.trigger, self.actions)
        self.messages.setup(client)
        for handler in self.plugins.handlers(client):
            handler.setHandlerParent(client)
        await self.plugins.profile_hook("profile_connecting", client)
        return client

    async def client_ready(self, client: LiberviaClient) -> None:
        """After login: roster, initial presence, plugins' ``profile_connected``, signal."""
        self.clients[client.profile] = client
        try:
            await roster.start_roster_and_presence(client)
        except LiberviaError as e:
            log.warning("%s: roster not fetched: %s", client.profile, e)
        await self.plugins.profile_hook("profile_connected", client)
        self.bridge.emit("connected", client.jid.full(), client.profile)

    async def connection_settings(
        self, name: str, options: Mapping[str, str] | None = None
    ) -> ConnectionSettings:
        """The connection settings of a profile, from its ``Connection`` parameters.

        Raises:
            InvalidInput: no or invalid JabberID, bad port or option.
            PasswordError: protected profile without a started session.
        """
        options = options or {}
        unknown = set(options) - set(CONNECT_OPTIONS)
        if unknown:
            raise InvalidInput(f"unknown connection options {sorted(unknown)}")
        key = await self.profiles.personal_key(name)
        jid_text = await self.params.get("Connection", "JabberID", name)
        if not jid_text:
            raise InvalidInput(
                f"profile {name!r} has no XMPP address: set the Connection/JabberID parameter"
            )
        jid = parse_jid(jid_text)
        if not jid.user:
            raise InvalidInput(f"{jid_text!r} is not an XMPP account address (user@server)")
        password = await self.params.get("Connection", "Password", name, personal_key=key)
        host = (await self.params.get("Connection", "Force server", name)) or jid.host
        port_text = (await self.params.get("Connection", "Force port", name)) or ""
        try:
            port = int(port_text) if port_text else DEFAULT_PORT
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise InvalidInput(f"Connection/Force port {port_text!r} is not a port") from None
        try:
            timeout = float(options.get("login_timeout", LOGIN_TIMEOUT))
        except ValueError:
            raise InvalidInput("login_timeout must be a number of seconds") from None
        return ConnectionSettings(
            jid=jid,
            password=password or "",
            host=host,
            port=port,
            check_certificate=await self.params.get("Connection", "check_certificate", name),
            login_timeout=timeout,
        )

    async def disconnect(self, profile_key: str) -> None:
        """Disconnect a profile at the user's request: it stays disconnected.

        Runs the ``disconnect_requested`` trigger point (``profile``) first, also when the
        profile is not connected (a pending reconnection is cancelled).
        """
        name = await self.profiles.get_name(profile_key)
        self.trigger.point("disconnect_requested", name)
        client = self.clients.get(name)
        if client is None:
            return
        await client.disconnect()
        await self._cleanup(client)

    def _emit(self, signal: str, *args: Any) -> None:
        self.bridge.emit(signal, *args)

    def client_lost(self, client: LiberviaClient, reason: Failure) -> None:
        """An established stream ended: the profile is disconnected.

        The ``client_lost`` trigger point (``client, reason``) runs first: a plugin that
        returns False takes the loss over (stream management resuming the session on the same
        client) and calls this method again if it gives up.
        """
        if not self.trigger.point("client_lost", client, reason):
            return
        log.info("%s: disconnected (%s)", client.profile, reason.getErrorMessage())
        background(self._cleanup(client), f"cleanup {client.profile}")

    async def _cleanup(self, client: LiberviaClient) -> None:
        if self.clients.get(client.profile) is not client:
            return
        del self.clients[client.profile]
        await self.plugins.profile_hook("profile_disconnected", client)
        # after the plugins, which may end their own operations with a better message
        self.actions.cancel_profile(client.profile)
        self.progress.fail_profile(client.profile)
        self.bridge.emit("disconnected", client.profile)

    # --- messages -----------------------------------------------------------------------------

    async def message_send(
        self,
        profile: str,
        to: JID,
        message: Mapping[str, str],
        subject: Mapping[str, str] | None = None,
        mess_type: str = "auto",
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        client = self.get_client(await self.profiles.get_name(profile))
        return await self.messages.send(client, to, message, subject, mess_type, extra)

    async def history_get(
        self,
        profile: str,
        from_jid: JID | None,
        to_jid: JID | None,
        limit: int | None,
        between: bool,
        filters: Mapping[str, Any],
    ) -> list[HistoryMessage]:
        """Messages of a profile's history, oldest first (Libervia's ``history_get``).

        ``between`` ignores the direction: with one of ``from_jid``/``to_jid``, messages
        exchanged with that entity either way; with both, messages between the two. Without
        ``between``, exactly from ``from_jid`` and/or to ``to_jid``.
        """
        name = await self.profiles.get_name(profile)
        if between and (from_jid is None) != (to_jid is None):
            return await self.storage.history_get(
                name, peer=from_jid or to_jid, limit=limit, **filters
            )
        return await self.storage.history_get(
            name, from_jid=from_jid, to_jid=to_jid, limit=limit, between=between, **filters
        )
