"""The XMPP connection of one profile.

:class:`LiberviaClient` is a wokkel ``StreamManager`` (handlers, send queue, IQ tracking) that
connects once with explicit settings and reports failures as clear errors:

- the server address is always explicit (``Force server``/``Force port``, else an SRV lookup,
  else the domain on 5222): wokkel's own connector passes the domain as bytes on Python 3;
- STARTTLS is required; the certificate is verified unless the profile's ``check_certificate``
  parameter is false (for a self-signed server the user decided to trust);
- SASL uses :mod:`libervia.backend.core.sasl` (SCRAM-SHA-256/1 with the server's proof checked,
  PLAIN over TLS only);
- a login that does not complete within ``login_timeout`` is abandoned (a failed TLS handshake
  would otherwise make the stream factory reconnect forever, DESIGN.md §6).

Reconnection with backoff belongs to the session continuity layer (the ``Reconnect`` plugin);
here a lost connection is reported through ``on_disconnected`` and the client stays
disconnected. :attr:`LiberviaClient.close_requested` tells a loss from a disconnection asked
for (``disconnect()``), :attr:`LiberviaClient.lost_reason` says why an established stream
ended.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL
from twisted.internet import defer, error, ssl
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import client as jclient
from twisted.words.protocols.jabber import sasl as jsasl
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.error import StanzaError, StreamError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import StreamManager

from libervia.backend.core.aio import as_future
from libervia.backend.core.exceptions import (
    AuthenticationFailed,
    ConnectionFailed,
    InvalidInput,
    LiberviaError,
    NotConnected,
    OperationTimeout,
    TLSFailed,
    XMPPError,
)
from libervia.backend.core.log import get_logger
from libervia.backend.core.sasl import SASLError, SASLInitiatingInitializer
from libervia.backend.tools.jid import InvalidFormat, parse_jid

log = get_logger(__name__)

#: limits of one stanza from our server once authenticated (Twisted: 10 MiB, 100,000)
MAX_STANZA_SIZE = 48 * 1024 * 1024
MAX_STANZA_ELEMENTS = 600_000

#: received data is parsed (and its stanzas handled) at most this many bytes per turn of the
#: event loop: a burst (200 Jingle offers, a flood of messages) never blocks the bridge for
#: long (tests/reliability/test_hostile_peer.py)
PACE_SLICE = 8 * 1024

DEFAULT_PORT = 5222
LOGIN_TIMEOUT = 30.0
IQ_TIMEOUT = 60.0


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how a profile connects (from its ``Connection`` parameters)."""

    jid: JID
    password: str
    host: str
    port: int = DEFAULT_PORT
    check_certificate: bool = True
    login_timeout: float = LOGIN_TIMEOUT


class _Authenticator(jclient.XMPPAuthenticator):
    """Twisted's client authenticator with our SASL initializer.

    ``initializer_hooks`` are called with each new stream and its list of initializers
    (version check, TLS, SASL, bind, session), which they may edit in place: that is how stream
    management (XEP-0198) puts its resumption before resource binding.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initializer_hooks: list[Callable[[xmlstream.XmlStream, list[Any]], None]] = []

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:  # noqa: N802
        super().associateWithStream(xs)
        xs.initializers = [
            SASLInitiatingInitializer(xs, required=True)
            if isinstance(init, jsasl.SASLInitiatingInitializer)
            else init
            for init in xs.initializers
        ]
        for hook in self.initializer_hooks:
            hook(xs, xs.initializers)


class _Factory(xmlstream.XmlStreamFactory):
    """A stream factory that never reconnects by itself and reports connection failures."""

    def __init__(self, authenticator: _Authenticator, on_failed: Callable[[Failure], None]):
        super().__init__(authenticator)
        self.continueTrying = False
        self._on_failed = on_failed

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        self._on_failed(reason)

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        pass


def _tls_options(settings: ConnectionSettings) -> Any:
    domain = settings.jid.host
    if settings.check_certificate:
        return ssl.optionsForClientTLS(domain)
    # the user chose to trust this server's certificate whatever it is (self-signed)
    return ssl.CertificateOptions(verify=False)


def login_error(reason: Failure | BaseException, settings: ConnectionSettings) -> LiberviaError:
    """Turn a login failure into a clear error for the user."""
    exc = reason.value if isinstance(reason, Failure) else reason
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, LiberviaError) and not isinstance(exc, SASLError):
        return exc
    if isinstance(exc, jsasl.SASLNoAcceptableMechanism | SASLError):
        return AuthenticationFailed(f"cannot authenticate {settings.jid.userhost()}: {exc}")
    if isinstance(exc, jsasl.SASLAuthError):
        condition = getattr(exc, "condition", None) or "not-authorized"
        return AuthenticationFailed(
            f"the server refused the credentials of {settings.jid.userhost()} ({condition}): "
            "check the XMPP password (parameter Connection/Password)"
        )
    if isinstance(exc, SSL.Error | xmlstream.TLSFailed | xmlstream.TLSNotSupported):
        hint = (
            " (for a server with a self-signed certificate you trust, set the profile's "
            "Connection/check_certificate parameter to false)"
            if settings.check_certificate
            else ""
        )
        return TLSFailed(f"TLS with {where} failed: {_ssl_reason(exc)}{hint}")
    if isinstance(exc, StreamError):
        return ConnectionFailed(f"the server at {where} closed the stream: {exc.condition}")
    if isinstance(exc, error.DNSLookupError):
        return ConnectionFailed(f"cannot resolve {settings.host}: {exc}")
    if isinstance(exc, error.ConnectError | error.ConnectionLost | error.ConnectionDone):
        return ConnectionFailed(f"cannot reach the XMPP server at {where}: {_short(exc)}")
    return ConnectionFailed(f"login to {where} failed: {_short(exc)}")


def _short(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        details = [str(part[-1]) for part in exc.args[0] if part]
        if details:
            return ", ".join(details)
    return _short(exc)


def _pace(xs: xmlstream.XmlStream) -> None:
    """Parse what the stream receives :data:`PACE_SLICE` bytes per turn of the event loop.

    A read holds up to 64 KiB (100+ stanzas): handled in one go, they would keep every other
    task waiting (bridge calls, other profiles). The rest waits in order for the next turns;
    reading from the socket is paused meanwhile (the server buffers: back-pressure).
    """
    feed = xs.dataReceived
    queue: deque[bytes] = deque()

    def transport_call(name: str) -> None:
        method = getattr(xs.transport, name, None)
        if method is not None:
            try:
                method()
            except Exception as e:  # a closed transport
                log.debug("stream %s: %s", name, e)

    def drain() -> None:
        if xs.stream is None or xs.transport is None or getattr(xs.transport, "disconnecting", 0):
            queue.clear()  # the stream ended: the rest is not for anybody
            return
        feed(queue.popleft())
        if queue:
            asyncio.get_running_loop().call_soon(drain)
        else:
            transport_call("resumeProducing")

    def data_received(data: bytes) -> None:
        if not queue and len(data) <= PACE_SLICE:
            feed(data)
            return
        was_idle = not queue
        queue.extend(data[i : i + PACE_SLICE] for i in range(0, len(data), PACE_SLICE))
        if was_idle:
            transport_call("pauseProducing")
            drain()

    xs.dataReceived = data_received  # type: ignore[method-assign]


class LiberviaClient(StreamManager):
    """The XMPP client of one profile.

    Args:
        profile: the profile name.
        settings: where and how to connect.
        reactor: provides ``connectTCP`` and the clock (tests pass fakes).
        on_disconnected: called with the reason when an established stream ends.
    """

    def __init__(
        self,
        profile: str,
        settings: ConnectionSettings,
        reactor: Any,
        on_disconnected: Callable[[LiberviaClient, Failure], None] | None = None,
    ) -> None:
        self.profile = profile
        self.settings = settings
        self.jid: JID = settings.jid
        self.authenticator = _Authenticator(settings.jid, settings.password, _tls_options(settings))
        self._login: defer.Deferred[Any] | None = None
        self._connector: Any = None
        self._on_disconnected = on_disconnected
        self._closing = False
        self.lost_reason: Failure | None = None
        factory = _Factory(self.authenticator, self._connection_failed)
        super().__init__(factory, reactor)
        self.timeout = IQ_TIMEOUT
        # populated by the core once connected
        self.roster: Any = None
        self.presence: Any = None
        self.extra: dict[str, Any] = {}

    # --- connection -------------------------------------------------------------------------

    @property
    def reactor(self) -> Any:
        return self._reactor

    def is_connected(self) -> bool:
        return self._initialized and self.xmlstream is not None

    @property
    def close_requested(self) -> bool:
        """True once :meth:`disconnect` was called: the end of the stream is not a loss."""
        return self._closing

    def drop_connection(self) -> None:
        """Abort the TCP connection at once, without closing the stream (a dead server).

        The loss is reported like any other (``on_disconnected``), so the session
        continuity layer reconnects.
        """
        xs = self.xmlstream
        if xs is not None and xs.transport is not None:
            xs.transport.abortConnection()

    async def connect(self) -> None:
        """Connect, secure, authenticate and bind.

        Raises:
            AuthenticationFailed, TLSFailed, ConnectionFailed, OperationTimeout: with a message
                saying what to do; nothing is left connecting afterwards.
        """
        assert IReactorTCP.providedBy(self._reactor) and IReactorTime.providedBy(self._reactor)
        self._closing = False
        login: defer.Deferred[Any] = defer.Deferred()
        self._login = login
        self._connector = self._reactor.connectTCP(
            self.settings.host, self.settings.port, self.factory
        )
        timer = self._reactor.callLater(self.settings.login_timeout, self._login_timed_out)
        try:
            await as_future(login)
        except LiberviaError:
            self._abort()
            raise
        except Exception as e:
            self._abort()
            raise login_error(e, self.settings) from None
        finally:
            if timer.active():
                timer.cancel()
            self._login = None
        log.info("%s: connected as %s", self.profile, self.jid.full())

    def _finish_login(self, result: Any) -> None:
        login, self._login = self._login, None
        if login is not None and not login.called:
            if isinstance(result, Failure):
                login.errback(result)
            else:
                login.callback(result)

    def _login_timed_out(self) -> None:
        self._finish_login(
            Failure(
                OperationTimeout(
                    f"no complete login to {self.settings.host}:{self.settings.port} within "
                    f"{self.settings.login_timeout:g} s"
                )
            )
        )

    def _connection_failed(self, reason: Failure) -> None:
        self._finish_login(reason)

    def _abort(self) -> None:
        if self._connector is not None:
            self._connector.disconnect()

    def _connected(self, xs: xmlstream.XmlStream) -> None:
        # stanzas are small and answered: Nagle's algorithm would hold each one until the
        # previous segment is acknowledged (~40 ms per IQ round trip measured on loopback,
        # doc/benchmarks.rst "Pubsub cache")
        set_no_delay = getattr(xs.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError as e:
                log.debug("%s: TCP_NODELAY not set: %s", self.profile, e)
        _pace(xs)
        super()._connected(xs)

    def _authd(self, xs: xmlstream.XmlStream) -> None:
        self.jid = self.authenticator.jid
        # the stream with our own server, authenticated: stanzas may be bigger than Twisted's
        # defaults (10 MiB, 100,000 elements; a 10,000-post pubsub node is ~7.5 MB and
        # ~120,000 elements) while staying bounded
        parser = getattr(xs, "stream", None)
        if parser is not None:
            parser.maxStanzaSize = MAX_STANZA_SIZE
            parser.maxElementCount = MAX_STANZA_ELEMENTS
        # after every handler: a request nobody handled gets an error (RFC 6120 §8.2.3)
        xs.addObserver('/iq[@type="get"]', self._unhandled_iq, priority=-100)
        xs.addObserver('/iq[@type="set"]', self._unhandled_iq, priority=-100)
        super()._authd(xs)
        self._finish_login(xs)

    def _unhandled_iq(self, iq: domish.Element) -> None:
        if iq.handled:
            return
        iq.handled = True
        self.xmlstream.send(StanzaError("service-unavailable").toResponse(iq))

    def initializationFailed(self, reason: Failure) -> None:  # noqa: N802
        self._finish_login(reason)
        # the stream stays open after a failed initialisation: close it
        if self.xmlstream is not None:
            self.xmlstream.sendFooter()

    def _disconnected(self, reason: Any) -> None:
        was_up = self._initialized
        if not isinstance(reason, Failure):
            lost = reason if isinstance(reason, BaseException) else error.ConnectionDone()
            reason = Failure(lost)
        super()._disconnected(reason)
        if self._login is not None:
            # the stream ended during login: the reason says why (e.g. TLS handshake)
            self._finish_login(reason)
            return
        if was_up:
            self.lost_reason = reason
            if self._on_disconnected is not None:
                self._on_disconnected(self, reason)

    async def disconnect(self) -> None:
        """Close the stream cleanly (waits until the connection is closed)."""
        self._closing = True
        xs = self.xmlstream
        if xs is None or xs.transport is None:
            self._abort()
            return
        closed: defer.Deferred[None] = defer.Deferred()
        xs.addObserver(xmlstream.STREAM_END_EVENT, lambda _: closed.callback(None))
        xs.sendFooter()
        timer = self._reactor.callLater(5, xs.transport.abortConnection)
        xs.transport.loseConnection()
        try:
            await as_future(closed)
        finally:
            if timer.active():
                timer.cancel()

    # --- requests ----------------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        """Send a stanza (raises NotConnected instead of queueing while disconnected)."""
        if not self._initialized:
            raise NotConnected(f"profile {self.profile!r} is not connected")
        self.xmlstream.send(obj)

    async def send_iq(self, iq: domish.Element, timeout: float | None = None) -> domish.Element:
        """Send an IQ get/set and return the result stanza.

        Raises:
            XMPPError: the entity answered with an error (condition in the message).
            OperationTimeout: no answer in time.
            NotConnected: the stream is not up, or was lost before the answer.
        """
        if not self._initialized:
            raise NotConnected(f"profile {self.profile!r} is not connected")
        if not iq.getAttribute("id"):
            iq.addUniqueId()
        d: defer.Deferred[domish.Element] = defer.Deferred()
        iq_id = iq["id"]
        self._iqDeferreds[iq_id] = d
        delay = self.timeout if timeout is None else timeout
        timer = self._reactor.callLater(delay, self._iq_timed_out, iq_id, delay)
        self.xmlstream.send(iq)
        try:
            return await as_future(d)
        except StanzaError as e:
            text = f": {e.text}" if e.text else ""
            raise XMPPError(
                f"{iq.getAttribute('to') or 'the server'} answered {e.condition}{text}",
                e.condition,
            ) from None
        except (error.ConnectionLost, error.ConnectionDone):
            raise NotConnected(f"profile {self.profile!r} lost its connection") from None
        finally:
            if timer.active():
                timer.cancel()

    def _iq_timed_out(self, iq_id: str, delay: float) -> None:
        d = self._iqDeferreds.pop(iq_id, None)
        if d is not None:
            d.errback(OperationTimeout(f"no answer to IQ {iq_id} within {delay:g} s"))


def make_iq(iq_type: str, to: JID | str | None = None) -> domish.Element:
    """An IQ stanza element (with a unique id)."""
    iq = domish.Element((None, "iq"))
    iq["type"] = iq_type
    if to is not None:
        iq["to"] = to.full() if isinstance(to, JID) else to
    iq.addUniqueId()
    return iq


def parse_jid_arg(value: str, what: str = "JID") -> JID:
    """Raises InvalidInput for an invalid JID (RFC 7622 parts of at most 1023 bytes)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"invalid {what}: empty")
    try:
        jid = parse_jid(value)
    except (InvalidFormat, UnicodeError, ValueError, RuntimeError) as e:
        raise InvalidInput(f"invalid {what} {value[:100]!r}: {e or 'bad format'}") from None
    parts = (jid.user, jid.host, jid.resource)
    if (
        not jid.host
        or ("@" in value.split("/", 1)[0] and not jid.user)
        or any(p is not None and len(p.encode("utf-8")) > 1023 for p in parts)
    ):
        raise InvalidInput(f"invalid {what} {value[:100]!r}")
    return jid
