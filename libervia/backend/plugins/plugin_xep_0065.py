"""XEP-0065: SOCKS5 Bytestreams — the essentials other transports build on.

Jingle's SOCKS5 transport (XEP-0260) uses this plugin for:

* :func:`dstaddr`: the SOCKS5 DST.ADDR of a bytestream, hex SHA-1(sid + requester JID + target
  JID);
* :func:`socks5_connect`: a SOCKS5 client (no authentication, CONNECT with ATYP domain = the
  dstaddr, port 0, strict parsing of the replies);
* :class:`Socks5Server`: a SOCKS5 server for direct candidates. It accepts only a CONNECT whose
  dstaddr was registered for a pending bytestream (:meth:`Socks5Server.register`); anything else
  is answered "not allowed" and closed at once;
* :meth:`XEP_0065.get_proxy`: the proxy (proxy65) of our server, found with disco#items,
  disco#info (identity proxy/bytestreams) and the bytestreams streamhost query, cached per
  profile session; :meth:`XEP_0065.activate`: the activation of a mediated bytestream.

Everything runs on asyncio streams (``asyncio.open_connection``/``start_server`` on the
reactor's loop); timeouts use the profile's injected clock.

Configuration (``[DEFAULT]`` of libervia.conf):

``socks5_interfaces``
    the local IP addresses the SOCKS5 server listens on for direct candidates (comma or space
    separated); by default the non-loopback addresses of this machine (IPv4 and global IPv6);
    ``none`` offers no direct candidate (the peer learns none of our addresses). Loopback
    addresses are used only when listed here or when ``socks5_allow_loopback`` is true;
``socks5_allow_loopback``
    also offer loopback addresses (tests, two profiles on one machine); default false;
``socks5_port``
    the port to listen on (default 0: a random free port, one per address);
``socks5_proxy``
    the JID of the SOCKS5 proxy to use (default: discovered on our server); ``none``: no proxy;
``socks5_connect_timeout``
    seconds for a TCP connection and the SOCKS5 handshake (default 10).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import struct
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import (
    ConnectionFailed,
    LiberviaError,
    OperationTimeout,
    XMPPError,
)
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq
from libervia.backend.tools import bytestream
from libervia.backend.tools.bytestream import ByteStream

log = get_logger(__name__)
#: the reading end of a bytestream (ours: a ByteStream; tests may use asyncio's streams)
Reader = ByteStream | asyncio.StreamReader
#: its writing end
Writer = ByteStream | asyncio.StreamWriter

PLUGIN_INFO = {
    "name": "SOCKS5 Bytestreams",
    "import_name": "XEP-0065",
    "type": "XEP",
    "protocols": ["XEP-0065"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0065",
    "handler": False,
    "description": "SOCKS5 client and server for direct bytestreams, proxy65 discovery",
}

NS_BYTESTREAMS = "http://jabber.org/protocol/bytestreams"

SOCKS_VERSION = 0x05
METHOD_NO_AUTH = 0x00
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04
REP_SUCCEEDED = 0x00
REP_NOT_ALLOWED = 0x02
REP_COMMAND_NOT_SUPPORTED = 0x07
REP_ADDRESS_NOT_SUPPORTED = 0x08

#: seconds for a TCP connection and the SOCKS5 handshake
CONNECT_TIMEOUT = 10.0
#: seconds an accepted connection has to complete its SOCKS5 handshake
HANDSHAKE_TIMEOUT = 10.0
#: seconds for the proxy's answers (streamhost query, activation)
PROXY_IQ_TIMEOUT = 30.0
#: the most connections accepted for one pending bytestream (one per candidate address)
MAX_CONNECTIONS = 16
#: the most handshakes in progress at once on the server (more connections are closed)
MAX_HANDSHAKES = 64
PROXY_CACHE_KEY = "XEP-0065_proxy"

T = TypeVar("T")


class Socks5Error(ConnectionFailed):
    """A SOCKS5 connection could not be made (refused, malformed answer, closed...)."""


def dstaddr(sid: str, requester: JID | str, target: JID | str) -> str:
    """The SOCKS5 DST.ADDR of a bytestream: hex SHA-1(sid + requester JID + target JID).

    The JIDs are the (full) JIDs of the IQ exchange, in their normalised form.
    """
    req = requester.full() if isinstance(requester, JID) else JID(requester).full()
    tgt = target.full() if isinstance(target, JID) else JID(target).full()
    return hashlib.sha1(f"{sid}{req}{tgt}".encode()).hexdigest()


async def with_timeout(coro: Coroutine[Any, Any, T], timeout: float, clock: Any, what: str) -> T:
    """Run ``coro`` for at most ``timeout`` seconds of ``clock`` (an ``IReactorTime``), or
    of the asyncio loop when ``clock`` is None.

    Raises:
        OperationTimeout: the time ran out (``coro`` is cancelled).
    """
    if clock is None:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise OperationTimeout(f"{what}: no answer within {timeout:g} s") from None
    task = asyncio.ensure_future(coro)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    call = clock.callLater(timeout, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if expired:
            raise OperationTimeout(f"{what}: no answer within {timeout:g} s") from None
        raise
    finally:
        if call.active():
            call.cancel()


async def sleep(clock: Any, delay: float) -> None:
    """Wait ``delay`` seconds of ``clock`` (the asyncio loop when None)."""
    if delay <= 0:
        return
    if clock is None:
        await asyncio.sleep(delay)
        return
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    call = clock.callLater(delay, wake)
    try:
        await waiter
    finally:
        if call.active():
            call.cancel()


@dataclass(eq=False)
class Socks5Stream:
    """An established bytestream: asyncio streams, and the address it goes through (the
    candidate we connected to, or the local address the peer connected to)."""

    reader: Reader
    writer: Writer
    address: tuple[str, int]

    def close(self) -> None:
        """Close the connection (at once; pending writes are flushed by the loop)."""
        if not self.writer.is_closing():
            self.writer.close()

    async def aclose(self) -> None:
        """Close the connection and wait until it is closed."""
        self.close()
        try:
            await self.writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass


@dataclass(frozen=True)
class StreamHost:
    """A SOCKS5 proxy (XEP-0065 ``<streamhost/>``)."""

    jid: JID
    host: str
    port: int


def normalised_host(host: str) -> str:
    """An IP address in its canonical text form (other names unchanged)."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return host


# --- client -----------------------------------------------------------------------------------


async def _read(reader: Reader, size: int, what: str) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise Socks5Error(f"SOCKS5 {what}: connection closed") from None


async def _client_handshake(reader: Reader, writer: Writer, address: str) -> None:
    """The SOCKS5 greeting (no authentication) and CONNECT to ``address`` (ATYP domain)."""
    writer.write(bytes((SOCKS_VERSION, 1, METHOD_NO_AUTH)))
    await writer.drain()
    version, method = await _read(reader, 2, "method selection")
    if version != SOCKS_VERSION:
        raise Socks5Error(f"SOCKS5 method selection: bad version {version}")
    if method != METHOD_NO_AUTH:
        raise Socks5Error("SOCKS5 server refused unauthenticated access")
    encoded = address.encode("ascii")
    writer.write(
        bytes((SOCKS_VERSION, CMD_CONNECT, 0x00, ATYP_DOMAIN, len(encoded)))
        + encoded
        + struct.pack("!H", 0)
    )
    await writer.drain()
    version, reply, reserved, atyp = await _read(reader, 4, "reply")
    if version != SOCKS_VERSION or reserved != 0:
        raise Socks5Error("SOCKS5 reply: malformed")
    if reply != REP_SUCCEEDED:
        raise Socks5Error(f"SOCKS5 server refused the connection (reply {reply})")
    if atyp == ATYP_DOMAIN:
        (length,) = await _read(reader, 1, "reply")
        bound = await _read(reader, length, "reply")
        if bound != encoded:
            raise Socks5Error("SOCKS5 reply: bound address differs from the requested one")
    elif atyp == ATYP_IPV4:
        await _read(reader, 4, "reply")
    elif atyp == ATYP_IPV6:
        await _read(reader, 16, "reply")
    else:
        raise Socks5Error(f"SOCKS5 reply: unknown address type {atyp}")
    await _read(reader, 2, "reply")


async def socks5_connect(
    host: str,
    port: int,
    address: str,
    timeout: float = CONNECT_TIMEOUT,
    clock: Any = None,
) -> Socks5Stream:
    """Connect to a SOCKS5 server and CONNECT to ``address`` (a bytestream's dstaddr).

    Args:
        host, port: the SOCKS5 server (a candidate, a proxy).
        address: the DST.ADDR (see :func:`dstaddr`).
        timeout: seconds for the TCP connection and the whole handshake.
        clock: ``IReactorTime`` of the timeout (None: the asyncio loop's time).

    Raises:
        Socks5Error: connection refused, malformed answer or refusal.
        OperationTimeout: not done within ``timeout``.
    """
    writer: ByteStream | None = None

    async def run() -> Socks5Stream:
        nonlocal writer
        try:
            stream = await bytestream.open_connection(host, port)
        except OSError as e:
            raise Socks5Error(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
        writer = stream
        await _client_handshake(stream, stream, address)
        return Socks5Stream(stream, stream, (host, port))

    try:
        return await with_timeout(run(), timeout, clock, f"SOCKS5 connection to {host}:{port}")
    except BaseException:
        if writer is not None:
            writer.close()
        raise


# --- server -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Registration:
    """A pending bytestream waiting for connections on the server (one per local address)."""

    dstaddr: str
    max_connections: int = MAX_CONNECTIONS
    #: local (host, port) -> the stream that arrived there
    _arrivals: dict[tuple[str, int], asyncio.Future[Socks5Stream]] = field(default_factory=dict)
    _any: asyncio.Future[Socks5Stream] = field(
        default_factory=lambda: asyncio.get_event_loop().create_future()
    )
    closed: bool = False

    def _future(self, address: tuple[str, int]) -> asyncio.Future[Socks5Stream]:
        key = (normalised_host(address[0]), address[1])
        future = self._arrivals.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._arrivals[key] = future
        return future

    def accepts(self, address: tuple[str, int]) -> bool:
        if self.closed:
            return False
        key = (normalised_host(address[0]), address[1])
        future = self._arrivals.get(key)
        if future is not None and future.done():
            return False  # one connection per candidate
        return sum(f.done() for f in self._arrivals.values()) < self.max_connections

    def arrived(self, stream: Socks5Stream) -> None:
        self._future(stream.address).set_result(stream)
        if not self._any.done():
            self._any.set_result(stream)

    async def wait(self, address: tuple[str, int] | None = None) -> Socks5Stream:
        """The stream that arrived on ``address`` (a candidate of ours), or the first one."""
        future = self._any if address is None else self._future(address)
        return await asyncio.shield(future)

    def get(self, address: tuple[str, int]) -> Socks5Stream | None:
        """The stream that arrived on ``address``, if any (no waiting)."""
        key = (normalised_host(address[0]), address[1])
        future = self._arrivals.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def close(self, keep: Socks5Stream | None = None) -> None:
        """Close every stream that arrived except ``keep``; no more are accepted."""
        self.closed = True
        for future in [*self._arrivals.values(), self._any]:
            if not future.done():
                future.set_exception(Socks5Error("the bytestream is no longer expected"))
                future.exception()  # retrieved: nobody may be waiting
            elif future.exception() is None and future.result() is not keep:
                future.result().close()


class Socks5Server:
    """A SOCKS5 server for direct candidates: only registered bytestreams get through.

    Args:
        handshake_timeout: seconds a client has to complete its handshake.
        clock: ``IReactorTime`` of that timeout (None: the asyncio loop's time).
    """

    def __init__(self, handshake_timeout: float = HANDSHAKE_TIMEOUT, clock: Any = None) -> None:
        self.handshake_timeout = handshake_timeout
        self.clock = clock
        self._servers: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int]] = []
        self._registrations: dict[str, Registration] = {}
        self._handshakes: set[asyncio.Task[Any]] = set()

    @property
    def listening(self) -> bool:
        return bool(self._servers)

    async def listen(self, hosts: Iterable[str], port: int = 0) -> list[tuple[str, int]]:
        """Listen on each address of ``hosts`` (``port`` 0: a random free port each);
        an address that cannot be bound is logged and skipped.

        Returns:
            the (host, port) pairs listened on, in the order of ``hosts``.
        """
        for host in hosts:
            host = normalised_host(host)
            address_holder: list[tuple[str, int]] = []

            def handler(stream: ByteStream, holder: list[tuple[str, int]] = address_holder) -> None:
                self._accepted(stream, stream, holder[0])

            try:
                server = await bytestream.start_server(handler, host, port, reuse_address=True)
            except OSError as e:
                log.warning("SOCKS5 server: cannot listen on %s:%d: %s", host, port, e)
                continue
            bound_port = server.sockets[0].getsockname()[1]
            address_holder.append((host, bound_port))
            self._servers.append(server)
            self.addresses.append((host, bound_port))
            log.info("SOCKS5 server listening on %s port %d", host, bound_port)
        return list(self.addresses)

    def register(self, address: str, max_connections: int = MAX_CONNECTIONS) -> Registration:
        """Expect connections for the bytestream of dstaddr ``address``.

        Raises:
            ValueError: already registered.
        """
        if address in self._registrations:
            raise ValueError(f"dstaddr {address} is already registered")
        registration = Registration(address, max_connections)
        self._registrations[address] = registration
        return registration

    def unregister(self, address: str, keep: Socks5Stream | None = None) -> None:
        """Forget a bytestream; the streams that arrived for it are closed (except ``keep``)."""
        registration = self._registrations.pop(address, None)
        if registration is not None:
            registration.close(keep)

    @property
    def registrations(self) -> int:
        return len(self._registrations)

    def _accepted(
        self,
        reader: Reader,
        writer: Writer,
        local: tuple[str, int],
    ) -> None:
        if len(self._handshakes) >= MAX_HANDSHAKES:
            log.warning("SOCKS5 server: too many handshakes in progress, connection closed")
            writer.close()
            return
        task = asyncio.ensure_future(self._handshake(reader, writer, local))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(
        self,
        reader: Reader,
        writer: Writer,
        local: tuple[str, int],
    ) -> None:
        peer = writer.get_extra_info("peername")
        try:
            await with_timeout(
                self._serve(reader, writer, local), self.handshake_timeout, self.clock, "SOCKS5"
            )
        except (Socks5Error, OperationTimeout) as e:
            log.info("SOCKS5 server: connection from %s refused: %s", peer, e)
            writer.close()
            return
        except asyncio.CancelledError:
            writer.close()
            raise
        except Exception:
            log.exception("SOCKS5 server: handshake with %s failed", peer)
            writer.close()
            return
        log.debug("SOCKS5 server: bytestream from %s on %s:%d", peer, *local)

    async def _serve(
        self,
        reader: Reader,
        writer: Writer,
        local: tuple[str, int],
    ) -> Socks5Stream:
        version, count = await _read(reader, 2, "greeting")
        if version != SOCKS_VERSION or count == 0:
            raise Socks5Error("malformed greeting")
        methods = await _read(reader, count, "greeting")
        if METHOD_NO_AUTH not in methods:
            writer.write(bytes((SOCKS_VERSION, METHOD_NONE_ACCEPTABLE)))
            raise Socks5Error("the client does not offer unauthenticated access")
        writer.write(bytes((SOCKS_VERSION, METHOD_NO_AUTH)))
        await writer.drain()
        version, command, reserved, atyp = await _read(reader, 4, "request")
        if version != SOCKS_VERSION or reserved != 0:
            raise Socks5Error("malformed request")
        if command != CMD_CONNECT:
            self._refuse(writer, REP_COMMAND_NOT_SUPPORTED)
            raise Socks5Error(f"unsupported command {command}")
        if atyp != ATYP_DOMAIN:
            self._refuse(writer, REP_ADDRESS_NOT_SUPPORTED)
            raise Socks5Error(f"unsupported address type {atyp}")
        (length,) = await _read(reader, 1, "request")
        raw_address = await _read(reader, length, "request")
        (port,) = struct.unpack("!H", await _read(reader, 2, "request"))
        address = raw_address.decode("ascii", "replace")
        registration = self._registrations.get(address)
        if registration is None or port != 0 or not registration.accepts(local):
            self._refuse(writer, REP_NOT_ALLOWED)
            raise Socks5Error(f"no bytestream expected for {address[:64]!r}")
        writer.write(
            bytes((SOCKS_VERSION, REP_SUCCEEDED, 0x00, ATYP_DOMAIN, length))
            + raw_address
            + struct.pack("!H", 0)
        )
        await writer.drain()
        stream = Socks5Stream(reader, writer, local)
        if registration.closed or not registration.accepts(local):
            raise Socks5Error("bytestream no longer expected")
        registration.arrived(stream)
        return stream

    @staticmethod
    def _refuse(writer: Writer, reply: int) -> None:
        writer.write(bytes((SOCKS_VERSION, reply, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0)))

    async def close(self) -> None:
        """Stop listening; pending handshakes and registrations are closed."""
        servers, self._servers = self._servers, []
        self.addresses = []
        for address in list(self._registrations):
            self.unregister(address)
        for task in list(self._handshakes):
            task.cancel()
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()


# --- local addresses --------------------------------------------------------------------------


def local_addresses(allow_loopback: bool = False) -> list[str]:
    """This machine's IP addresses usable by a peer: IPv4 and global IPv6 (no link-local),
    loopback only when allowed (found without sending anything)."""
    found: list[str] = []

    def add(value: str) -> None:
        try:
            ip = ipaddress.ip_address(value.split("%", 1)[0])
        except ValueError:
            return
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            return
        if ip.is_loopback and not allow_loopback:
            return
        text = str(ip)
        if text not in found:
            found.append(text)

    # the source address of the default routes (a UDP "connection" sends nothing)
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                add(sock.getsockname()[0])
        except OSError:
            pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP):
            add(str(info[4][0]))
    except OSError:
        pass
    if allow_loopback:
        add("127.0.0.1")
    return found


def _split(value: str) -> list[str]:
    return [v for v in value.replace(",", " ").split() if v]


# --- the plugin -------------------------------------------------------------------------------


class XEP_0065:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.disco = host.plugins["XEP-0030"]
        config = host.config
        self.allow_loopback = config.get_bool("socks5_allow_loopback", False)
        interfaces = config.get("socks5_interfaces")
        #: None: found at the first use (local_addresses)
        self.interfaces: list[str] | None = None
        if interfaces is not None:
            self.interfaces = [] if interfaces.lower() == "none" else _split(interfaces)
        self.port = config.get_int("socks5_port", 0)
        proxy = config.get("socks5_proxy")
        self.proxy_jid: JID | None = None
        self.proxy_disabled = proxy is not None and proxy.lower() == "none"
        if proxy is not None and not self.proxy_disabled:
            self.proxy_jid = JID(proxy)
        self.connect_timeout = config.get_float(
            "socks5_connect_timeout", CONNECT_TIMEOUT, minimum=0.1
        )
        self.server: Socks5Server | None = None
        self._server_lock = asyncio.Lock()
        host.trigger.add("backend_stopping", self._stopping)

    def _stopping(self) -> bool:
        if self.server is not None:
            server, self.server = self.server, None
            background(server.close(), "SOCKS5 server close")
        return True

    def profile_disconnected(self, client: Any) -> None:
        client.extra.pop(PROXY_CACHE_KEY, None)

    # --- direct candidates ----------------------------------------------------------------

    def listen_hosts(self) -> list[str]:
        """The local addresses direct candidates may use (configuration or found)."""
        if self.interfaces is not None:
            return list(self.interfaces)
        return local_addresses(self.allow_loopback)

    async def get_server(self, clock: Any = None) -> Socks5Server | None:
        """The SOCKS5 server, started on the allowed addresses at the first use (None when
        no address is allowed or none could be bound)."""
        async with self._server_lock:
            if self.server is not None and self.server.listening:
                return self.server
            hosts = self.listen_hosts()
            if not hosts:
                return None
            server = Socks5Server(HANDSHAKE_TIMEOUT, clock)
            await server.listen(hosts, self.port)
            if not server.listening:
                return None
            self.server = server
            return server

    async def release(
        self, server: Socks5Server, address: str, keep: Socks5Stream | None = None
    ) -> None:
        """Forget a bytestream registered on ``server`` (from :meth:`get_server`); the
        server stops listening when none is left."""
        server.unregister(address, keep)
        if self.server is server and not server.registrations:
            self.server = None
            await server.close()  # established bytestreams stay open

    async def connect(self, client: Any, host: str, port: int, address: str) -> Socks5Stream:
        """:func:`socks5_connect` with the configured timeout, on the profile's clock."""
        return await socks5_connect(host, port, address, self.connect_timeout, client.reactor)

    # --- proxy ----------------------------------------------------------------------------

    async def get_proxy(self, client: Any) -> StreamHost | None:
        """The SOCKS5 proxy to offer (None: there is none), found once per profile session.

        The configured ``socks5_proxy`` when given, else the first item of our server's
        disco#items with the identity proxy/bytestreams that answers the streamhost query.
        """
        if self.proxy_disabled:
            return None
        cached: asyncio.Future[StreamHost | None] | None = client.extra.get(PROXY_CACHE_KEY)
        if cached is None:
            cached = asyncio.ensure_future(self._find_proxy(client))
            client.extra[PROXY_CACHE_KEY] = cached
        try:
            return await asyncio.shield(cached)
        except Exception:
            log.exception("SOCKS5 proxy discovery failed")
            return None

    async def _find_proxy(self, client: Any) -> StreamHost | None:
        if self.proxy_jid is not None:
            candidates = [self.proxy_jid]
        else:
            try:
                items = await self.disco.get_items(client)
            except LiberviaError as e:
                log.info("SOCKS5 proxy discovery: no disco#items from our server: %s", e)
                return None
            candidates = [item.entity for item in items if item.entity is not None]
        for entity in candidates:
            if self.proxy_jid is None:
                try:
                    info = await self.disco.get_infos(client, entity)
                except LiberviaError as e:
                    log.debug("SOCKS5 proxy discovery: %s: %s", entity.full(), e)
                    continue
                if ("proxy", "bytestreams") not in info.identities:
                    continue
            try:
                streamhost = await self.query_streamhost(client, entity)
            except LiberviaError as e:
                log.info("SOCKS5 proxy %s unusable: %s", entity.full(), e)
                continue
            log.info(
                "SOCKS5 proxy: %s at %s:%d", streamhost.jid.full(), streamhost.host, streamhost.port
            )
            return streamhost
        log.info("SOCKS5 proxy discovery: our server offers none")
        return None

    async def query_streamhost(self, client: Any, proxy: JID) -> StreamHost:
        """Ask a proxy its network address (bytestreams query).

        Raises:
            XMPPError: an error answer, or no valid ``<streamhost/>``.
            OperationTimeout, NotConnected: see LiberviaClient.send_iq.
        """
        iq = make_iq("get", proxy)
        iq.addElement((NS_BYTESTREAMS, "query"))
        result = await client.send_iq(iq, PROXY_IQ_TIMEOUT)
        query = next(result.elements(NS_BYTESTREAMS, "query"), None)
        for element in query.elements(NS_BYTESTREAMS, "streamhost") if query else ():
            streamhost = parse_streamhost(element)
            if streamhost is not None:
                return streamhost
        raise XMPPError(f"{proxy.full()} gave no valid streamhost", "bad-request")

    async def activate(self, client: Any, proxy: JID, sid: str, target: JID) -> None:
        """Ask a proxy to relay a bytestream both parties connected to (``<activate/>``).

        Raises:
            XMPPError: the proxy refused (e.g. ``not-allowed``: one party is not connected).
            OperationTimeout, NotConnected: see LiberviaClient.send_iq.
        """
        iq = make_iq("set", proxy)
        query = iq.addElement((NS_BYTESTREAMS, "query"))
        query["sid"] = sid
        query.addElement("activate", content=target.full())
        await client.send_iq(iq, PROXY_IQ_TIMEOUT)


def parse_streamhost(element: domish.Element) -> StreamHost | None:
    """A ``<streamhost jid host port/>`` (port 1080 by default), or None when invalid."""
    jid_attr, host = element.getAttribute("jid"), element.getAttribute("host")
    if not jid_attr or not host:
        return None
    try:
        jid = JID(jid_attr)
        port = int(element.getAttribute("port") or 1080)
    except (InvalidFormat, ValueError):
        return None
    if not 0 < port < 65536:
        return None
    return StreamHost(jid, host, port)
