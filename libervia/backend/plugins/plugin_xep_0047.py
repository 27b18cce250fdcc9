"""XEP-0047: In-Band Bytestreams (IBB), over IQ stanzas.

Bytestreams are negotiated by another protocol (Jingle, XEP-0261): an incoming ``<open/>`` is
accepted only when that protocol told us to expect it (:meth:`XEP_0047.expect`); any other
open is refused (``not-acceptable``), data or close for an unknown bytestream gets
``item-not-found``. A bytestream is keyed by (peer full JID, sid) and is bidirectional: each
direction has its own sequence number (0, 1... 65535, 0...).

Receiving (checked when the IQ arrives, in order):

- the next ``seq`` is expected; a seq already used gets ``unexpected-request`` (the
  bytestream goes on); any other (out of order: data lost) gets ``unexpected-request`` and
  the bytestream is closed;
- the payload must be strict base64 (padding only at the end, no stray characters) and at
  most ``block-size`` bytes once decoded, else ``bad-request`` and the bytestream is closed;
- each data IQ is acknowledged once its bytes were written to the sink (back pressure).

Sending: chunks of ``block-size`` bytes, one data IQ outstanding at a time (waiting for each
ack, as the XEP recommends against server rate limits).
"""

from __future__ import annotations

import asyncio
import binascii
from base64 import b64encode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput, LiberviaError, NotConnected
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "In-Band Bytestreams",
    "import_name": "XEP-0047",
    "type": "XEP",
    "protocols": ["XEP-0047"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0047",
    "handler": True,
    "description": "Bytestreams carried in IQ stanzas (the fallback transport)",
}

NS_IBB = "http://jabber.org/protocol/ibb"
#: the largest block size the protocol allows
MAX_BLOCK_SIZE = 65535
DEFAULT_BLOCK_SIZE = 4096
SEQ_MODULO = 65536
SESSIONS_KEY = "XEP-0047_sessions"
EXPECTED_KEY = "XEP-0047_expected"
#: how long we wait for the ack of one of our IBB IQs
IQ_TIMEOUT = 60.0
#: a bytestream we receive with no data for this long is given up (option ibb_idle_timeout):
#: a sender that crashed, or lost its network, never closes it
IDLE_TIMEOUT = 120.0


class IBBError(LiberviaError):
    """A bytestream broke (refused, closed by an error, the peer answered an error...)."""


class IBBClosed(IBBError):
    """The bytestream is closed (by the peer or by us)."""


@dataclass(eq=False)
class IBBSession:
    """One bytestream with a peer (a full JID)."""

    peer: JID
    sid: str
    block_size: int
    #: where the received bytes go (None: receiving is refused)
    sink: Any = None
    #: the next sequence number we send / we expect
    send_seq: int = 0
    recv_seq: int = 0
    #: data packets received so far (to tell a reused seq from an out-of-order one)
    received: int = 0
    closed: bool = False
    #: the endpoint was told the end (``sink.close`` is called once)
    sink_closed: bool = False
    #: the handling of the peer's IQs, in arrival order (a step returns True when the
    #: bytestream is over; None: we closed it)
    queue: asyncio.Queue[Callable[[], Awaitable[bool]] | None] = field(
        default_factory=asyncio.Queue
    )
    worker: asyncio.Task[None] | None = None
    #: fires when a bytestream we receive stays silent too long
    idle_timer: Any = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.peer.full(), self.sid)


@dataclass(frozen=True)
class Expected:
    """An incoming ``<open/>`` another protocol negotiated."""

    block_size: int
    sink: Any
    on_open: Callable[[IBBSession], None] | None


def decode_strict(text: str) -> bytes:
    """Decode base64 strictly: alphabet only, padding only at the end, no whitespace inside.

    Raises:
        ValueError: not strict base64.
    """
    if not text.isascii():
        raise ValueError("non-ASCII characters")
    data = text.strip().encode("ascii")
    if not data:
        return b""
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error as e:
        raise ValueError(str(e)) from None


def _error(iq: domish.Element, condition: str, text: str | None = None) -> domish.Element:
    response = toResponse(iq, "error")
    response.addChild(StanzaError(condition, text=text).getElement())
    return response


def is_decimal(value: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts other scripts' digits)."""
    return 0 < len(value) <= 20 and value.isascii() and value.isdigit()


def parse_block_size(value: str | None) -> int:
    """A ``block-size`` attribute (1..65535).

    Raises:
        ValueError: missing, not a number, or out of range.
    """
    if value is None or not is_decimal(value):
        raise ValueError(f"invalid block-size {value!r}")
    size = int(value)
    if not 0 < size <= MAX_BLOCK_SIZE:
        raise ValueError(f"block-size {size} out of range")
    return size


class XEP_0047:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.idle_timeout = host.config.get_float("ibb_idle_timeout", IDLE_TIMEOUT, minimum=1)
        host.plugins["XEP-0030"].add_feature(NS_IBB)

    def get_handler(self, client: Any) -> IBBHandler:
        return IBBHandler(self)

    def profile_disconnected(self, client: Any) -> None:
        for session in list(self.sessions(client).values()):
            self.abort(client, session, NotConnected("the connection was lost"))
        self._expected(client).clear()

    def sessions(self, client: Any) -> dict[tuple[str, str], IBBSession]:
        sessions: dict[tuple[str, str], IBBSession] = client.extra.setdefault(SESSIONS_KEY, {})
        return sessions

    def _expected(self, client: Any) -> dict[tuple[str, str], Expected]:
        expected: dict[tuple[str, str], Expected] = client.extra.setdefault(EXPECTED_KEY, {})
        return expected

    def get_session(self, client: Any, peer: JID, sid: str) -> IBBSession | None:
        return self.sessions(client).get((peer.full(), sid))

    # --- opening ----------------------------------------------------------------------------

    def expect(
        self,
        client: Any,
        peer: JID,
        sid: str,
        block_size: int,
        sink: Any = None,
        on_open: Callable[[IBBSession], None] | None = None,
    ) -> None:
        """Accept the ``<open/>`` of ``peer`` for ``sid`` (negotiated elsewhere) with a
        block size of at most ``block_size``; received bytes go to ``sink`` (a ByteSink);
        ``on_open`` is called with the session once it is open."""
        self._expected(client)[(peer.full(), sid)] = Expected(block_size, sink, on_open)

    def unexpect(self, client: Any, peer: JID, sid: str) -> None:
        """Forget an expected open (the negotiation was abandoned)."""
        self._expected(client).pop((peer.full(), sid), None)

    async def open(
        self, client: Any, peer: JID, sid: str, block_size: int, sink: Any = None
    ) -> IBBSession:
        """Open a bytestream with ``peer``.

        Raises:
            InvalidInput: bad block size, or the sid is in use.
            XMPPError, OperationTimeout, NotConnected: the peer refused or did not answer.
        """
        if not 0 < block_size <= MAX_BLOCK_SIZE:
            raise InvalidInput(f"block size {block_size} out of range")
        session = IBBSession(peer, sid, block_size, sink)
        sessions = self.sessions(client)
        if session.key in sessions:
            raise InvalidInput(f"IBB session {sid} with {peer.full()} already exists")
        # registered before the open is sent: data may follow the ack at once
        sessions[session.key] = session
        self._start_worker(client, session)
        iq = make_iq("set", peer)
        element = iq.addElement((NS_IBB, "open"))
        element["block-size"] = str(block_size)
        element["sid"] = sid
        element["stanza"] = "iq"
        try:
            await client.send_iq(iq, IQ_TIMEOUT)
        except LiberviaError:
            self._forget(client, session)
            raise
        return session

    def _start_worker(self, client: Any, session: IBBSession) -> None:
        session.worker = background(self._write_loop(client, session), f"ibb {session.sid}")

    # --- sending ----------------------------------------------------------------------------

    async def send(self, client: Any, session: IBBSession, data: bytes) -> None:
        """Send bytes in chunks of the block size, one data IQ at a time.

        Raises:
            IBBClosed: the bytestream is closed.
            IBBError: the peer answered an error or did not answer (the bytestream is then
                forgotten).
        """
        view = memoryview(data)
        for start in range(0, len(view), session.block_size):
            await self._send_block(client, session, bytes(view[start : start + session.block_size]))

    async def send_from(self, client: Any, session: IBBSession, source: Any) -> int:
        """Send everything a ByteSource gives until its end; the number of bytes sent.

        Raises:
            IBBClosed, IBBError: see :meth:`send`.
        """
        total = 0
        while True:
            chunk = await source.read(session.block_size)
            if not chunk:
                return total
            await self.send(client, session, chunk)
            total += len(chunk)

    async def _send_block(self, client: Any, session: IBBSession, block: bytes) -> None:
        if session.closed:
            raise IBBClosed(f"IBB session {session.sid} is closed")
        iq = make_iq("set", session.peer)
        element = iq.addElement((NS_IBB, "data"), content=b64encode(block).decode("ascii"))
        element["seq"] = str(session.send_seq)
        element["sid"] = session.sid
        session.send_seq = (session.send_seq + 1) % SEQ_MODULO
        try:
            await client.send_iq(iq, IQ_TIMEOUT)
        except LiberviaError as e:
            error = IBBError(f"IBB session {session.sid}: data refused: {e}")
            self.abort(client, session, error)
            raise error from None

    # --- closing ----------------------------------------------------------------------------

    async def close(self, client: Any, session: IBBSession) -> None:
        """Close the bytestream (``<close/>``); errors of the peer are only logged."""
        if session.closed:
            return
        await self._send_close(client, session)

    async def _send_close(self, client: Any, session: IBBSession) -> None:
        self._forget(client, session)
        iq = make_iq("set", session.peer)
        iq.addElement((NS_IBB, "close"))["sid"] = session.sid
        try:
            await client.send_iq(iq, IQ_TIMEOUT)
        except LiberviaError as e:
            log.info("IBB close of %s not acknowledged: %s", session.sid, e)
        self._close_sink(session, None)

    def abort(self, client: Any, session: IBBSession, error: BaseException) -> None:
        """Forget a bytestream without telling the peer; the sink learns the error."""
        self._forget(client, session)
        self._close_sink(session, error)

    def _arm_idle(self, client: Any, session: IBBSession) -> None:
        """(Re)start the silence timer of a bytestream we receive."""
        if session.sink is None:
            return
        if session.idle_timer is not None and session.idle_timer.active():
            session.idle_timer.reset(self.idle_timeout)
            return
        session.idle_timer = client.reactor.callLater(
            self.idle_timeout, self._idle, client, session
        )

    def _idle(self, client: Any, session: IBBSession) -> None:
        session.idle_timer = None
        if session.closed:
            return
        log.info("IBB session %s with %s: silent for %.0f s, given up", session.sid,
                 session.peer.full(), self.idle_timeout)  # fmt: skip
        self.abort(
            client, session, IBBError(f"no data for {self.idle_timeout:.0f} s: the peer is gone")
        )

    def _forget(self, client: Any, session: IBBSession) -> None:
        if session.idle_timer is not None and session.idle_timer.active():
            session.idle_timer.cancel()
        session.idle_timer = None
        session.closed = True
        sessions = self.sessions(client)
        if sessions.get(session.key) is session:
            del sessions[session.key]
        if session.worker is not None and session.worker is not asyncio.current_task():
            session.queue.put_nowait(None)  # the writer stops after pending data

    @staticmethod
    def _close_sink(session: IBBSession, error: BaseException | None) -> None:
        if session.sink is None or session.sink_closed:
            return
        session.sink_closed = True
        try:
            session.sink.close(error)
        except Exception:
            log.exception("IBB session %s: sink.close failed", session.sid)

    # --- incoming ---------------------------------------------------------------------------

    def on_open(self, client: Any, iq: domish.Element) -> None:
        element = next(iq.elements(NS_IBB, "open"))
        peer = JID(iq["from"])
        sid = element.getAttribute("sid")
        if not sid:
            client.send(_error(iq, "bad-request", "missing sid"))
            return
        try:
            block_size = parse_block_size(element.getAttribute("block-size"))
        except ValueError as e:
            client.send(_error(iq, "bad-request", str(e)))
            return
        if (element.getAttribute("stanza") or "iq") != "iq":
            client.send(_error(iq, "feature-not-implemented", "only IQ stanzas are supported"))
            return
        key = (peer.full(), sid)
        expected = self._expected(client).get(key)
        if expected is None or key in self.sessions(client):
            client.send(_error(iq, "not-acceptable", "unexpected bytestream"))
            return
        if block_size > expected.block_size:
            client.send(_error(iq, "resource-constraint", "block size too large"))
            return
        del self._expected(client)[key]
        session = IBBSession(peer, sid, block_size, expected.sink)
        self.sessions(client)[key] = session
        self._start_worker(client, session)
        self._arm_idle(client, session)
        client.send(toResponse(iq, "result"))
        if expected.on_open is not None:
            expected.on_open(session)

    def on_data(self, client: Any, iq: domish.Element) -> None:
        element = next(iq.elements(NS_IBB, "data"))
        session = self.get_session(client, JID(iq["from"]), element.getAttribute("sid") or "")
        if session is None or session.closed:
            client.send(_error(iq, "item-not-found"))
            return
        seq_value = element.getAttribute("seq") or ""
        if not is_decimal(seq_value) or int(seq_value) >= SEQ_MODULO:
            self._refuse_and_close(client, session, iq, "bad-request", "invalid seq")
            return
        seq = int(seq_value)
        if seq != session.recv_seq:
            behind = (session.recv_seq - seq) % SEQ_MODULO
            if 0 < behind <= min(session.received, SEQ_MODULO - 1):
                self._answer(client, session, _error(iq, "unexpected-request", "seq reused"))
                return
            self._refuse_and_close(client, session, iq, "unexpected-request", "out of order")
            return
        try:
            data = decode_strict(str(element))
        except ValueError as e:
            self._refuse_and_close(client, session, iq, "bad-request", f"invalid base64: {e}")
            return
        if len(data) > session.block_size:
            self._refuse_and_close(client, session, iq, "bad-request", "block larger than agreed")
            return
        if session.sink is None:
            self._refuse_and_close(client, session, iq, "not-acceptable", "no data expected")
            return
        session.recv_seq = (seq + 1) % SEQ_MODULO
        session.received += 1
        self._arm_idle(client, session)

        async def write() -> bool:
            if session.sink_closed:
                client.send(_error(iq, "not-acceptable", "bytestream closed"))
                return False
            try:
                await session.sink.write(data)
            except Exception as e:
                client.send(_error(iq, "not-acceptable", str(e) or None))
                self._close_sink(session, e)
                await self.close(client, session)
                return True
            client.send(toResponse(iq, "result"))
            return False

        session.queue.put_nowait(write)

    def on_close(self, client: Any, iq: domish.Element) -> None:
        element = next(iq.elements(NS_IBB, "close"))
        session = self.get_session(client, JID(iq["from"]), element.getAttribute("sid") or "")
        if session is None or session.closed:
            client.send(_error(iq, "item-not-found"))
            return
        session.closed = True  # nothing more is accepted; pending data is still written

        async def closed() -> bool:
            self._forget(client, session)
            client.send(toResponse(iq, "result"))
            self._close_sink(session, None)
            return True

        session.queue.put_nowait(closed)

    def _answer(self, client: Any, session: IBBSession, answer: domish.Element) -> None:
        """Send an answer after those of the data received before (arrival order)."""

        async def send() -> bool:
            client.send(answer)
            return False

        session.queue.put_nowait(send)

    def _refuse_and_close(
        self, client: Any, session: IBBSession, iq: domish.Element, condition: str, text: str
    ) -> None:
        """Answer an error and close the bytestream (its data can no longer be trusted)."""
        log.warning("IBB session %s with %s: %s", session.sid, session.peer.full(), text)
        session.closed = True  # later data: item-not-found

        async def refuse() -> bool:
            client.send(_error(iq, condition, text))
            self._close_sink(session, IBBError(f"IBB session {session.sid}: {text}"))
            await self._send_close(client, session)
            return True

        session.queue.put_nowait(refuse)

    async def _write_loop(self, client: Any, session: IBBSession) -> None:
        """Handle the peer's data and close in arrival order (each data IQ acknowledged once
        written: back pressure), until the bytestream ends."""
        while True:
            step = await session.queue.get()
            if step is None or await step():
                return


class IBBHandler(XMPPHandler):
    """Observes the IBB IQ-sets of one profile's stream."""

    def __init__(self, plugin: XEP_0047) -> None:
        super().__init__()
        self.plugin = plugin

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        for name, method in (
            ("open", self.plugin.on_open),
            ("data", self.plugin.on_data),
            ("close", self.plugin.on_close),
        ):
            self.xmlstream.addObserver(
                f'/iq[@type="set"]/{name}[@xmlns="{NS_IBB}"]', self._handle(method)
            )

    def _handle(self, method: Callable[[Any, domish.Element], None]) -> Callable[..., None]:
        def observer(iq: domish.Element) -> None:
            iq.handled = True
            if not iq.getAttribute("from"):
                self.parent.send(_error(iq, "bad-request", "no sender"))
                return
            try:
                method(self.parent, iq)
            except Exception:
                log.exception("IBB request from %s failed", iq["from"])
                self.parent.send(_error(iq, "internal-server-error"))

        return observer
