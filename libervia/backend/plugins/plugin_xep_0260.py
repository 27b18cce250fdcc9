"""XEP-0260: Jingle SOCKS5 Bytestreams transport (``urn:xmpp:jingle:transports:s5b:1``).

Negotiation, for one content (fact sheet §6):

1. each side offers its candidates, the initiator in session-initiate (or transport-replace),
   the responder in session-accept: direct candidates (our SOCKS5 server on the addresses the
   configuration allows, see :mod:`.plugin_xep_0065`) and our server's proxy (proxy65);
   priority = 65536 × type preference (direct 126, proxy 10) + local preference;
2. once the session is accepted (:meth:`XEP_0260.start`), each side tries the peer's
   candidates, best priority first, staggered (:attr:`XEP_0260.stagger` seconds apart, proxies
   later), and sends a transport-info with ``<candidate-used cid/>`` for the best one that
   worked, or ``<candidate-error/>``. A candidate the peer's choice already beats is not
   waited for;
3. nomination (both sides compute it): both errors → the transport failed; one used → that
   one; both used → the higher priority, the initiator's choice on a tie;
4. a nominated proxy is activated by the side that offered it (XEP-0065 ``<activate/>``),
   which then sends ``<activated cid/>``; a proxy failure is sent as ``<proxy-error/>``;
5. the bytes move, raw, over the nominated connection (see :mod:`.plugin_xep_0166.stream`).

When no candidate works, :meth:`XEP_0260.start` raises ``TransportFailed``: the initiator's
core then falls back to the next transport (IBB) with transport-replace.

The SOCKS5 DST.ADDR of a candidate is SHA-1(stream sid + offerer full JID + other party's
full JID); the stream sid is the ``sid`` of ``<transport/>``, not the Jingle session's.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import LiberviaError, OperationTimeout
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0065 import (
    Registration,
    Socks5Server,
    Socks5Stream,
    dstaddr,
    sleep,
    with_timeout,
)
from libervia.backend.plugins.plugin_xep_0166 import (
    Action,
    BaseTransportHandler,
    Content,
    Role,
    Session,
    SessionEnded,
    TransportFailed,
)
from libervia.backend.plugins.plugin_xep_0166.elements import ContentElement
from libervia.backend.plugins.plugin_xep_0166.errors import bad_request
from libervia.backend.tools.bytestream import ByteStream

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle SOCKS5 Bytestreams",
    "import_name": "XEP-0260",
    "type": "XEP",
    "protocols": ["XEP-0260"],
    "dependencies": ["XEP-0030", "XEP-0166", "XEP-0065"],
    "main": "XEP_0260",
    "handler": False,
    "description": "Jingle transport over SOCKS5 bytestreams (direct or through a proxy)",
}

NS_S5B = "urn:xmpp:jingle:transports:s5b:1"

#: the transport's rank for the initiator (IBB, the fallback, is lower)
PRIORITY = 100
#: seconds between two connection attempts (XEP-0260 §5: 200 ms)
STAGGER = 0.2
#: extra delay before trying a proxy (a direct connection is better)
PROXY_DELAY = 0.5
#: seconds we wait for the peer's candidate-used/candidate-error, then for activation
NEGOTIATION_TIMEOUT = 60.0
#: seconds a peer's announced connection to our direct candidate may take to be seen here
ARRIVAL_TIMEOUT = 10.0
#: most candidates read from a peer
MAX_CANDIDATES = 32
#: bytes read at once when moving data
CHUNK_SIZE = 1024 * 1024
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


class CandidateType(StrEnum):
    """Candidate types and their type preference (XEP-0260 §2.2)."""

    DIRECT = "direct"
    ASSISTED = "assisted"
    TUNNEL = "tunnel"
    PROXY = "proxy"

    @property
    def preference(self) -> int:
        return TYPE_PREFERENCES[self]


TYPE_PREFERENCES = {
    CandidateType.DIRECT: 126,
    CandidateType.ASSISTED: 120,
    CandidateType.TUNNEL: 110,
    CandidateType.PROXY: 10,
}


def candidate_priority(type_: CandidateType, local_preference: int = 65535) -> int:
    """priority = 65536 × type preference + local preference (0..65535)."""
    if not 0 <= local_preference <= 65535:
        raise ValueError("the local preference is in 0..65535")
    return 65536 * type_.preference + local_preference


def new_id() -> str:
    """A fresh candidate id or stream sid (tests replace it to get fixed values)."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Candidate:
    """A ``<candidate/>``: where a SOCKS5 bytestream may be established."""

    cid: str
    host: str
    port: int
    jid: JID
    priority: int
    type: CandidateType = CandidateType.DIRECT

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def to_element(self) -> domish.Element:
        element = domish.Element((NS_S5B, "candidate"))
        element["cid"] = self.cid
        element["host"] = self.host
        element["jid"] = self.jid.full()
        element["port"] = str(self.port)
        element["priority"] = str(self.priority)
        element["type"] = self.type.value
        return element

    @classmethod
    def from_element(cls, element: domish.Element, default_jid: JID | None = None) -> Candidate:
        """Parse a peer's candidate (port 1080 and type direct by default; a missing jid is
        ``default_jid`` when given: we never use the jid of the peer's candidates).

        Raises:
            ValueError: a missing or invalid attribute.
        """
        cid, host = element.getAttribute("cid"), element.getAttribute("host")
        jid_attr, priority = element.getAttribute("jid"), element.getAttribute("priority")
        if not cid or not host or not priority or not (jid_attr or default_jid):
            raise ValueError("a candidate needs cid, host, jid and priority")
        if len(cid) > 256 or len(host) > 256:
            raise ValueError("candidate attribute too long")
        if jid_attr:
            try:
                jid = JID(jid_attr)
            except InvalidFormat:
                raise ValueError(f"invalid candidate jid {jid_attr[:64]!r}") from None
        else:
            assert default_jid is not None
            jid = default_jid
        port, prio = int(element.getAttribute("port") or 1080), int(priority)
        if not 0 < port < 65536 or not 0 < prio < 2**31:
            raise ValueError("candidate port or priority out of range")
        return cls(
            cid, host, port, jid, prio, CandidateType(element.getAttribute("type", "direct"))
        )


def nominate(role: Role, used: Candidate | None, peer_used: Candidate | None) -> Candidate | None:
    """The nominated candidate (XEP-0260 §2.4).

    Args:
        role: ours in the session.
        used: the peer's candidate we sent in candidate-used (None: we sent candidate-error).
        peer_used: our candidate the peer used (None: it sent candidate-error).
    """
    if used is None or peer_used is None:
        return used or peer_used
    if used.priority != peer_used.priority:
        return used if used.priority > peer_used.priority else peer_used
    return used if role is Role.INITIATOR else peer_used  # the initiator's choice


@dataclass(eq=False)
class S5BData:
    """The state of the SOCKS5 transport of one content (``content.transport_data``)."""

    sid: str
    #: DST.ADDR of our candidates: SHA-1(sid + us + peer)
    our_dstaddr: str
    #: DST.ADDR of the peer's candidates (its ``dstaddr`` attribute, or computed)
    peer_dstaddr: str
    ours: list[Candidate] = field(default_factory=list)
    theirs: list[Candidate] = field(default_factory=list)
    #: where the peer's connections to our direct candidates arrive, and its server
    registration: Registration | None = None
    server: Socks5Server | None = None
    #: the peer's candidate-used (our candidate) or candidate-error (None)
    peer_choice: asyncio.Future[Candidate | None] = field(
        default_factory=lambda: asyncio.get_event_loop().create_future()
    )
    #: the cid of the peer's ``<activated/>`` (fails on ``<proxy-error/>``)
    activated: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_event_loop().create_future()
    )
    #: our choice, once sent
    used: Candidate | None = None
    choice_sent: bool = False
    #: our connections to the peer's candidates, by cid
    connections: dict[str, Socks5Stream] = field(default_factory=dict)
    attempts: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    #: the nominated connection
    stream: Socks5Stream | None = None
    #: the task running :meth:`XEP_0260.start` (negotiation, then the bytes): cancelled by
    #: :meth:`XEP_0260.stop`
    task: asyncio.Task[Any] | None = None
    stopped: bool = False

    def candidate(self, cid: str, ours: bool) -> Candidate | None:
        return next((c for c in (self.ours if ours else self.theirs) if c.cid == cid), None)


class XEP_0260(BaseTransportHandler):  # noqa: N801 - plugin classes are named after their XEP
    namespace = NS_S5B
    priority = PRIORITY

    def __init__(self, host: Any) -> None:
        self.host = host
        self.s5 = host.plugins["XEP-0065"]
        self.disco = host.plugins["XEP-0030"]
        #: seconds between attempts, and before proxies (tests set them to 0)
        self.stagger = STAGGER
        self.proxy_delay = PROXY_DELAY
        self.negotiation_timeout = NEGOTIATION_TIMEOUT
        host.plugins["XEP-0166"].register_transport(self)

    def is_usable(self, client: Any, content: Content) -> bool:
        """False when the peer's features are known (disco or capabilities) and lack SOCKS5
        bytestreams: the core then offers the next transport (IBB) at once instead of
        having the offer refused. Unknown features: worth trying (IBB is the fallback)."""
        session = content.session
        if session is None:
            return True
        infos = self.disco.cached_infos(client, session.peer)
        return infos is None or NS_S5B in infos.features

    # --- offers and answers ---------------------------------------------------------------

    async def offer(self, client: Any, session: Session, content: Content) -> domish.Element:
        sid = new_id()
        data = S5BData(
            sid=sid,
            our_dstaddr=dstaddr(sid, session.local, session.peer),
            peer_dstaddr=dstaddr(sid, session.peer, session.local),
        )
        content.transport_data = data
        await self._gather(client, session, data)
        return self._transport_element(data, data.ours)

    def parse_offer(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        sid = element.getAttribute("sid")
        if not sid or len(sid) > 256:
            raise bad_request("SOCKS5 transport without a valid sid")
        if element.getAttribute("mode", "tcp") != "tcp":
            raise bad_request("only the tcp mode of SOCKS5 bytestreams is supported")
        data = S5BData(
            sid=sid,
            our_dstaddr=dstaddr(sid, session.local, session.peer),
            peer_dstaddr=self._peer_dstaddr(element, sid, session),
        )
        data.theirs = self._parse_candidates(element, session.peer)
        content.transport_data = data

    async def accept(self, client: Any, session: Session, content: Content) -> domish.Element:
        data = self._data(content)
        await self._gather(client, session, data)
        return self._transport_element(data, data.ours)

    def parse_accept(
        self, client: Any, session: Session, content: Content, element: domish.Element | None
    ) -> None:
        data = self._data(content)
        if element is None:
            raise bad_request("SOCKS5 answer without transport")
        if element.getAttribute("sid") != data.sid:
            raise bad_request("SOCKS5 answer for another stream sid")
        data.peer_dstaddr = self._peer_dstaddr(element, data.sid, session)
        data.theirs = self._parse_candidates(element, session.peer)

    @staticmethod
    def _data(content: Content) -> S5BData:
        data = content.transport_data
        if not isinstance(data, S5BData):
            raise bad_request("no SOCKS5 negotiation for this content")
        return data

    @staticmethod
    def _peer_dstaddr(element: domish.Element, sid: str, session: Session) -> str:
        given = (element.getAttribute("dstaddr") or "").lower()
        return given if _HEX40.match(given) else dstaddr(sid, session.peer, session.local)

    @staticmethod
    def _parse_candidates(element: domish.Element, peer: JID) -> list[Candidate]:
        candidates: list[Candidate] = []
        cids: set[str] = set()
        for child in element.elements(NS_S5B, "candidate"):
            if len(candidates) >= MAX_CANDIDATES:
                log.info("SOCKS5: more than %d candidates, the others ignored", MAX_CANDIDATES)
                break
            try:
                candidate = Candidate.from_element(child, peer)
            except ValueError as e:
                log.info("SOCKS5: invalid candidate ignored: %s", e)
                continue
            if candidate.cid in cids:
                raise bad_request(f"duplicate SOCKS5 candidate id {candidate.cid[:64]!r}")
            cids.add(candidate.cid)
            candidates.append(candidate)
        return candidates

    def _transport_element(self, data: S5BData, candidates: Iterable[Candidate]) -> domish.Element:
        candidates = list(candidates)
        element = domish.Element((NS_S5B, "transport"))
        element["sid"] = data.sid
        if any(c.type is CandidateType.PROXY for c in candidates):
            element["dstaddr"] = data.our_dstaddr
        for candidate in candidates:
            element.addChild(candidate.to_element())
        return element

    async def _gather(self, client: Any, session: Session, data: S5BData) -> None:
        """Our candidates: the SOCKS5 server's addresses (registered for our dstaddr), then
        our server's proxy."""
        candidates: list[Candidate] = []
        server = await self.s5.get_server(client.reactor)
        if server is not None and not data.stopped:
            data.registration = server.register(
                data.our_dstaddr, max_connections=len(server.addresses)
            )
            data.server = server
            for index, (host, port) in enumerate(server.addresses):
                priority = candidate_priority(CandidateType.DIRECT, max(65535 - index, 0))
                candidates.append(
                    Candidate(new_id(), host, port, session.local, priority, CandidateType.DIRECT)
                )
        proxy = await self.s5.get_proxy(client)
        if proxy is not None:
            priority = candidate_priority(CandidateType.PROXY)
            candidates.append(
                Candidate(
                    new_id(), proxy.host, proxy.port, proxy.jid, priority, CandidateType.PROXY
                )
            )
        data.ours = candidates

    # --- negotiation ----------------------------------------------------------------------

    async def start(self, client: Any, session: Session, content: Content) -> None:
        data = self._data(content)
        if data.stopped:
            return
        data.task = asyncio.current_task()
        try:
            try:
                stream = await self._negotiate(client, session, content, data)
            except (TransportFailed, SessionEnded):
                self._release(data)
                raise
            except LiberviaError as e:
                self._release(data)
                raise TransportFailed(str(e)) from e
            await self._move(session, content, stream)
        finally:
            # cleared before the core may stop us from this task (fallback)
            data.task = None

    async def _negotiate(
        self, client: Any, session: Session, content: Content, data: S5BData
    ) -> Socks5Stream:
        used = await self._try_candidates(client, session, data)
        await self._send_choice(client, session, content, data, used)
        try:
            peer_used = await with_timeout(
                asyncio.shield(data.peer_choice),
                self.negotiation_timeout,
                client.reactor,
                "SOCKS5 peer's candidate choice",
            )
        except OperationTimeout as e:
            raise TransportFailed(str(e)) from None
        nominated = nominate(session.role, used, peer_used)
        log.debug(
            "SOCKS5 %s: we used %s, the peer used %s, nominated %s",
            data.sid,
            used and used.cid,
            peer_used and peer_used.cid,
            nominated and nominated.cid,
        )
        if nominated is None:
            raise TransportFailed("no SOCKS5 candidate works")
        if nominated is used:
            stream = data.connections[nominated.cid]
            if nominated.type is CandidateType.PROXY:
                await self._wait_activation(client, nominated, data)
        elif nominated.type is CandidateType.PROXY:
            stream = await self._activate(client, session, content, data, nominated)
        else:
            stream = await self._arrival(client, data, nominated)
        data.stream = stream
        self._release(data, keep=stream)
        return stream

    def _stop_waiting_for(self, role: Role, candidate: Candidate, data: S5BData) -> bool:
        """True when the peer's choice already beats ``candidate`` (one of its own)."""
        choice = data.peer_choice
        if not choice.done() or choice.cancelled() or choice.exception() is not None:
            return False
        peer_used = data.peer_choice.result()
        if peer_used is None:
            return False
        return nominate(role, candidate, peer_used) is not candidate

    async def _try_candidates(
        self, client: Any, session: Session, data: S5BData
    ) -> Candidate | None:
        """Try the peer's candidates (staggered); the best one connected, or None."""
        ordered = sorted(data.theirs, key=lambda c: c.priority, reverse=True)
        delay, proxy_delayed = 0.0, False
        for candidate in ordered:
            if candidate.type is CandidateType.PROXY and delay > 0 and not proxy_delayed:
                delay += self.proxy_delay  # direct connections first
                proxy_delayed = True
            data.attempts[candidate.cid] = asyncio.ensure_future(
                self._attempt(client, data, candidate, delay)
            )
            delay += self.stagger
        try:
            for candidate in ordered:
                attempt = data.attempts[candidate.cid]
                while not attempt.done():
                    if self._stop_waiting_for(session.role, candidate, data):
                        break
                    waiting: set[asyncio.Future[Any]] = {attempt}
                    if not data.peer_choice.done():
                        waiting.add(data.peer_choice)
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if attempt.done() and not attempt.cancelled() and attempt.result():
                    return candidate
                if self._stop_waiting_for(session.role, candidate, data):
                    return None  # nothing left we try can beat the peer's choice
            return None
        finally:
            for task in data.attempts.values():
                task.cancel()
            data.attempts.clear()

    async def _attempt(
        self, client: Any, data: S5BData, candidate: Candidate, delay: float
    ) -> bool:
        await sleep(client.reactor, delay)
        try:
            stream = await self.connect(client, candidate, data.peer_dstaddr)
        except LiberviaError as e:
            log.info("SOCKS5 candidate %s (%s:%d): %s", candidate.cid, *candidate.address, e)
            return False
        if data.stopped:
            stream.close()
            return False
        data.connections[candidate.cid] = stream
        return True

    async def connect(self, client: Any, candidate: Candidate, address: str) -> Socks5Stream:
        """Connect to a candidate (a SOCKS5 server) for the bytestream ``address``."""
        stream: Socks5Stream = await self.s5.connect(
            client, candidate.host, candidate.port, address
        )
        return stream

    async def _send_choice(
        self,
        client: Any,
        session: Session,
        content: Content,
        data: S5BData,
        used: Candidate | None,
    ) -> None:
        data.used = used
        data.choice_sent = True
        if used is None:
            child = domish.Element((NS_S5B, "candidate-error"))
        else:
            child = domish.Element((NS_S5B, "candidate-used"))
            child["cid"] = used.cid
        await self._transport_info(client, session, content, data, child)

    async def _transport_info(
        self,
        client: Any,
        session: Session,
        content: Content,
        data: S5BData,
        child: domish.Element,
    ) -> None:
        element = domish.Element((NS_S5B, "transport"))
        element["sid"] = data.sid
        element.addChild(child)
        await self.jingle.send_action(
            client,
            session,
            Action.TRANSPORT_INFO,
            [ContentElement(content.creator, content.name, transport=element)],
        )

    async def _wait_activation(self, client: Any, candidate: Candidate, data: S5BData) -> None:
        """The peer's proxy was nominated: wait for its ``<activated/>``."""
        try:
            cid = await with_timeout(
                asyncio.shield(data.activated),
                self.negotiation_timeout,
                client.reactor,
                "SOCKS5 proxy activation",
            )
        except OperationTimeout as e:
            raise TransportFailed(str(e)) from None
        if cid != candidate.cid:
            raise TransportFailed(f"the peer activated {cid!r}, not the nominated proxy")

    async def _activate(
        self,
        client: Any,
        session: Session,
        content: Content,
        data: S5BData,
        candidate: Candidate,
    ) -> Socks5Stream:
        """Our proxy was nominated: connect to it, activate the bytestream, tell the peer."""
        try:
            stream = await self.connect(client, candidate, data.our_dstaddr)
        except LiberviaError as e:
            await self._proxy_error(client, session, content, data)
            raise TransportFailed(f"cannot connect to our proxy: {e}") from None
        try:
            await self.s5.activate(client, candidate.jid, data.sid, session.peer)
        except LiberviaError as e:
            stream.close()
            await self._proxy_error(client, session, content, data)
            raise TransportFailed(f"the proxy refused to activate the bytestream: {e}") from None
        activated = domish.Element((NS_S5B, "activated"))
        activated["cid"] = candidate.cid
        try:
            await self._transport_info(client, session, content, data, activated)
        except BaseException:
            stream.close()
            raise
        return stream

    async def _proxy_error(
        self, client: Any, session: Session, content: Content, data: S5BData
    ) -> None:
        try:
            await self._transport_info(
                client, session, content, data, domish.Element((NS_S5B, "proxy-error"))
            )
        except LiberviaError as e:
            log.info("SOCKS5 %s: proxy-error not delivered: %s", data.sid, e)

    async def _arrival(self, client: Any, data: S5BData, candidate: Candidate) -> Socks5Stream:
        """Our direct candidate was nominated: the peer's connection to it."""
        if data.registration is None:
            raise TransportFailed("the peer used a direct candidate we are not listening on")
        stream = data.registration.get(candidate.address)
        if stream is not None:
            return stream
        try:
            return await with_timeout(
                data.registration.wait(candidate.address),
                ARRIVAL_TIMEOUT,
                client.reactor,
                "SOCKS5 connection of the peer",
            )
        except (OperationTimeout, LiberviaError) as e:
            raise TransportFailed(str(e)) from None

    async def on_transport_info(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        data = content.transport_data
        if not isinstance(data, S5BData) or element.getAttribute("sid") != data.sid:
            log.info("SOCKS5 transport-info for an unknown stream sid ignored")
            return
        for child in element.elements(NS_S5B):
            if child.name == "candidate-used":
                cid = child.getAttribute("cid") or ""
                candidate = data.candidate(cid, ours=True)
                if candidate is None:
                    log.info("SOCKS5 %s: the peer used an unknown candidate", data.sid)
                self._set(data.peer_choice, candidate)
            elif child.name == "candidate-error":
                self._set(data.peer_choice, None)
            elif child.name == "activated":
                self._set(data.activated, child.getAttribute("cid") or "")
            elif child.name == "proxy-error":
                if not data.activated.done():
                    data.activated.set_exception(TransportFailed("the peer's proxy failed"))
                    data.activated.exception()  # retrieved even when nobody waits
            elif child.name == "candidate":
                log.debug("SOCKS5 %s: late candidate ignored", data.sid)

    @staticmethod
    def _set(future: asyncio.Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)

    # --- data -----------------------------------------------------------------------------

    async def _move(self, session: Session, content: Content, stream: Socks5Stream) -> None:
        """Move the bytes of the content over the nominated stream until the end."""
        sending = content.we_send(session) and content.source is not None
        receiving = content.peer_sends(session) and content.sink is not None
        jobs = []
        if sending:
            jobs.append(self._send(content, stream, half_close=receiving))
        if receiving:
            jobs.append(self._receive(content, stream))
        try:
            await asyncio.gather(*jobs)
        finally:
            await stream.aclose()

    @staticmethod
    async def _send(content: Content, stream: Socks5Stream, half_close: bool) -> None:
        source = content.source
        assert source is not None
        writer = stream.writer
        try:
            sendfile = getattr(source, "sendfile", None)
            if sendfile is not None and isinstance(writer, ByteStream):
                # a file on a TCP socket: the kernel copies it (os.sendfile)
                assert writer.transport is not None
                await sendfile(writer.transport)
            while chunk := await source.read(CHUNK_SIZE):
                writer.write(chunk)
                await writer.drain()
            if half_close and writer.can_write_eof():
                writer.write_eof()  # we still receive: the stream closes when both ended
        except BaseException as e:
            stream.close()
            source.close(e if isinstance(e, Exception) else TransportFailed("stopped"))
            if isinstance(e, Exception):
                return
            raise
        source.close()

    @staticmethod
    async def _receive(content: Content, stream: Socks5Stream) -> None:
        sink = content.sink
        assert sink is not None
        # our ByteStream hands whole buffers without copying; asyncio's reader (tests) reads
        read = getattr(stream.reader, "read_chunk", stream.reader.read)
        # a sink lending its own receive buffers (recycled: none allocated per chunk)
        use_buffers = getattr(stream.reader, "use_buffers", None)
        receive_buffer = getattr(sink, "receive_buffer", None)
        if use_buffers is not None and receive_buffer is not None:
            use_buffers(receive_buffer)
        try:
            while chunk := await read(CHUNK_SIZE):
                await sink.write(chunk)
        except BaseException as e:
            stream.close()
            sink.close(e if isinstance(e, Exception) else TransportFailed("stopped"))
            if isinstance(e, Exception):
                return
            raise
        sink.close()

    # --- end ------------------------------------------------------------------------------

    def _release(self, data: S5BData, keep: Socks5Stream | None = None) -> None:
        """Close every connection except ``keep`` and stop expecting the peer's."""
        for task in data.attempts.values():
            task.cancel()
        for stream in data.connections.values():
            if stream is not keep:
                stream.close()
        data.connections = {cid: s for cid, s in data.connections.items() if s is keep}
        if data.registration is not None and data.server is not None:
            registration, data.registration = data.registration, None
            # no more connections accepted for it, from now on
            registration.close(keep)
            background(self.s5.release(data.server, registration.dstaddr, keep), "SOCKS5 release")

    def stop(self, client: Any, session: Session, content: Content) -> None:
        data = content.transport_data
        if not isinstance(data, S5BData) or data.stopped:
            return
        data.stopped = True
        task = data.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._release(data)
        if data.stream is not None:
            data.stream.close()
        for future in (data.peer_choice, data.activated):
            if not future.done():
                future.cancel()
