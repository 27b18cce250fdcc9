"""XEP-0166: Jingle — the session core.

Sessions are :class:`~.session.Session` objects with an explicit state machine (pending,
active, ended), keyed by (peer full JID, sid): only that peer may act on a session, anybody
else gets ``item-not-found`` + ``unknown-session`` and changes nothing.

Applications (file transfer...) and transports (IBB, SOCKS5...) subclass
:class:`~.base.BaseApplicationHandler` / :class:`~.base.BaseTransportHandler` and register
with :meth:`XEP_0166.register_application` / :meth:`XEP_0166.register_transport`; their
namespaces are announced in disco next to ``urn:xmpp:jingle:1``. Bytes move between a
transport and an application through the byte-stream interface of :mod:`.stream`.

Every Jingle IQ-set from a peer is validated and acknowledged at once (or answered with an
error, fact sheet §1.4); decisions and the answers to the peer's actions are taken
asynchronously (:mod:`.incoming`). Timers use the client's injected clock: a session that
stays pending ``jingle_pending_timeout`` seconds (configuration, default 300) ends with
``timeout``; a peer that goes unavailable and says nothing more within 10 s is ``gone``.
A peer (bare JID) may have at most ``jingle_max_pending_per_peer`` (default 10) sessions
proposed to us and still pending: one more session-initiate is refused with
``resource-constraint`` (a flood never piles up questions for the user).

Typical initiator flow (an application's public method)::

    session = jingle.create_session(client, peer)
    jingle.add_content(session, app, description_element, senders=Senders.INITIATOR)
    await jingle.initiate(client, session)   # session-initiate, acked
    # later: app.on_accepted(...) is called, then the transport starts

and responder flow: ``app.on_session_initiate(client, session, contents)`` is called; it sets
each content's ``sink``/``source`` and calls :meth:`XEP_0166.accept`, or
:meth:`XEP_0166.terminate` with ``decline``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import (
    ConflictError,
    InvalidInput,
    LiberviaError,
    NotConnected,
    NotFound,
    OperationTimeout,
    XMPPError,
)
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq
from libervia.backend.plugins.plugin_xep_0166.base import (
    BaseApplicationHandler,
    BaseTransportHandler,
)
from libervia.backend.plugins.plugin_xep_0166.constants import (
    GONE_DELAY,
    IQ_TIMEOUT,
    MAX_PENDING_PER_PEER,
    NS_JINGLE,
    PENDING_TIMEOUT,
    Action,
    Reason,
    Role,
    Senders,
    State,
)
from libervia.backend.plugins.plugin_xep_0166.elements import (
    ContentElement,
    ReasonElement,
    build_jingle,
    build_reason,
)
from libervia.backend.plugins.plugin_xep_0166.errors import SessionEnded, TransportFailed
from libervia.backend.plugins.plugin_xep_0166.incoming import Incoming, JingleHandler
from libervia.backend.plugins.plugin_xep_0166.session import Content, Session

__all__ = [
    "XEP_0166",
    "BaseApplicationHandler",
    "BaseTransportHandler",
    "Content",
    "Session",
    "Action",
    "Reason",
    "Role",
    "Senders",
    "State",
    "NS_JINGLE",
    "SessionEnded",
    "TransportFailed",
]

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle",
    "import_name": "XEP-0166",
    "type": "XEP",
    "protocols": ["XEP-0166"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0166",
    "handler": True,
    "description": "Jingle sessions: the core that applications and transports plug into",
}

SESSIONS_KEY = "XEP-0166_sessions"
#: IQ error conditions meaning "the peer cannot be reached" (else: application failure)
CONNECTIVITY_CONDITIONS = frozenset(
    {
        "service-unavailable",
        "recipient-unavailable",
        "remote-server-not-found",
        "remote-server-timeout",
    }
)


class XEP_0166:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.disco = host.plugins["XEP-0030"]
        self.disco.add_feature(NS_JINGLE)
        self.applications: dict[str, BaseApplicationHandler] = {}
        self.transports: dict[str, BaseTransportHandler] = {}
        self.pending_timeout = host.config.get_float(
            "jingle_pending_timeout", PENDING_TIMEOUT, minimum=1
        )
        self.max_pending_per_peer = max(
            1, host.config.get_int("jingle_max_pending_per_peer", MAX_PENDING_PER_PEER)
        )
        self.incoming = Incoming(self)
        host.trigger.add("presence_received", self._on_presence)
        host.trigger.add("disconnect_requested", self._on_disconnect_requested)

    def get_handler(self, client: Any) -> JingleHandler:
        return JingleHandler(self)

    def profile_disconnected(self, client: Any) -> None:
        """Every session of the profile ends (locally: the stream is gone)."""
        for session in list(self.sessions(client).values()):
            self.end_locally(
                client, session, ReasonElement(Reason.CONNECTIVITY_ERROR, "disconnected")
            )

    def _on_disconnect_requested(self, profile: str) -> bool:
        """The user disconnects the profile: every session ends with ``gone``, the peers told
        before the stream closes (a peer receiving in-band would otherwise wait forever when
        it does not get our unavailable presence)."""
        client = self.host.clients.get(profile)
        if client is None or not client.is_connected():
            return True
        for session in list(self.sessions(client).values()):
            reason = ReasonElement(Reason.GONE, "disconnected")
            if not self.end_locally(client, session, reason):
                continue
            iq = make_iq("set", session.peer)
            iq.addChild(
                build_jingle(
                    Action.SESSION_TERMINATE,
                    session.sid,
                    reason=build_reason(Reason.GONE, "disconnected", None),
                )
            )
            try:
                client.send(iq)
            except LiberviaError as e:
                log.info("session-terminate of %s not sent: %s", session.sid, e)
        return True

    def _on_presence(self, client: Any, element: domish.Element) -> bool:
        """A peer going unavailable: its sessions end if nothing more is heard (fact sheet
        §1.2), ``GONE_DELAY`` seconds later."""
        if element.getAttribute("type") != "unavailable" or not element.getAttribute("from"):
            return True
        sender = element["from"]
        for session in self.sessions(client).values():
            if session.peer.full() == sender:
                client.reactor.callLater(
                    GONE_DELAY, self._gone, client, session, float(client.reactor.seconds())
                )
        return True

    def _gone(self, client: Any, session: Session, since: float) -> None:
        if session.is_ended or session.last_heard > since:
            return
        background(
            self.terminate(client, session, Reason.GONE, "the peer went offline"),
            f"jingle gone {session.sid}",
        )

    # --- registry ---------------------------------------------------------------------------

    def register_application(self, application: BaseApplicationHandler) -> None:
        """Register an application and announce its namespace.

        Raises:
            ConflictError: the namespace is already registered.
        """
        self._register(application, self.applications)

    def register_transport(self, transport: BaseTransportHandler) -> None:
        """Register a transport and announce its namespace.

        Raises:
            ConflictError: the namespace is already registered.
        """
        self._register(transport, self.transports)

    def _register(self, handler: Any, registry: dict[str, Any]) -> None:
        namespace = handler.namespace
        if not namespace:
            raise InvalidInput(f"{handler!r} has no namespace")
        if namespace in registry:
            raise ConflictError(f"{namespace} is already registered")
        handler.jingle = self
        registry[namespace] = handler
        self.disco.add_feature(namespace)

    def select_transport(
        self, client: Any, content: Content, exclude: Iterable[str] = ()
    ) -> BaseTransportHandler | None:
        """The usable transport of highest priority for ``content``, not in ``exclude``."""
        excluded = set(exclude)
        candidates = sorted(
            (t for ns, t in self.transports.items() if ns not in excluded),
            key=lambda t: t.priority,
            reverse=True,
        )
        for transport in candidates:
            try:
                if transport.is_usable(client, content):
                    return transport
            except Exception:
                log.exception("transport %s: is_usable failed", transport.namespace)
        return None

    # --- sessions ---------------------------------------------------------------------------

    def resolve_peer(self, client: Any, peer: JID) -> JID:
        """A full JID for Jingle: a bare JID becomes its available resource of highest
        priority.

        Raises:
            NotFound: a bare JID without any available resource known.
        """
        if peer.resource:
            return peer
        statuses = getattr(client.presence, "statuses", {}) or {}
        resources = statuses.get(peer.userhost(), {})
        best = None
        for resource, status in resources.items():
            priority = status[1] if isinstance(status, tuple) and len(status) > 1 else 0
            if resource and (best is None or (priority or 0) > best[0]):
                best = ((priority or 0), resource)
        if best is None:
            raise NotFound(f"{peer.full()} has no available device: give a full JID")
        return JID(tuple=(peer.user, peer.host, best[1]))

    def sessions(self, client: Any) -> dict[tuple[str, str], Session]:
        """The live sessions of a profile, by (peer full JID, sid)."""
        sessions: dict[tuple[str, str], Session] = client.extra.setdefault(SESSIONS_KEY, {})
        return sessions

    def get_session(self, client: Any, peer: JID, sid: str) -> Session | None:
        """The live session with ``peer`` (a full JID) and ``sid``, if any."""
        return self.sessions(client).get((peer.full(), sid))

    def create_session(self, client: Any, peer: JID, sid: str | None = None) -> Session:
        """A new session that we initiate (not sent yet: add contents, then :meth:`initiate`).

        Raises:
            InvalidInput: ``peer`` is not a full JID.
        """
        if not peer.resource:
            raise InvalidInput(f"Jingle needs a full JID (with a resource), not {peer.full()}")
        return Session(sid or uuid.uuid4().hex, peer, client.jid, Role.INITIATOR)

    def add_content(
        self,
        session: Session,
        application: BaseApplicationHandler,
        description: domish.Element,
        senders: Senders = Senders.BOTH,
        name: str | None = None,
        app_data: Any = None,
        transport: str | None = None,
    ) -> Content:
        """Add one of our contents to a session (named after its index when ``name`` is None).

        ``transport``: the namespace of the transport to use; None picks the best usable one
        when the content is offered.

        Raises:
            InvalidInput: duplicate name, unknown or unregistered transport/application.
        """
        if application.namespace not in self.applications:
            raise InvalidInput(f"application {application.namespace} is not registered")
        transport_handler = None
        if transport is not None:
            transport_handler = self.transports.get(transport)
            if transport_handler is None:
                raise InvalidInput(f"unknown Jingle transport {transport}")
        name = name if name is not None else session.next_name()
        if session.content(session.role, name) is not None:
            raise InvalidInput(f"content {name!r} already exists")
        return session.add(
            Content(
                creator=session.role,
                name=name,
                application=application,
                transport=transport_handler,
                senders=senders,
                description=description,
                app_data=app_data,
            )
        )

    def store(self, client: Any, session: Session) -> None:
        """Make a session live (reachable by the peer) and start its pending timer."""
        self.sessions(client)[session.key] = session
        session.timer = client.reactor.callLater(
            self.pending_timeout, self._pending_expired, client, session
        )

    def _pending_expired(self, client: Any, session: Session) -> None:
        session.timer = None
        if session.state is State.PENDING:
            log.info("Jingle session %s with %s: nobody accepted it", session.sid, session.peer)
            background(
                self.terminate(client, session, Reason.TIMEOUT), f"jingle timeout {session.sid}"
            )

    def _cancel_timer(self, session: Session) -> None:
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        session.timer = None

    def activate(self, session: Session) -> None:
        """pending -> active (the session was accepted)."""
        session.transition(State.ACTIVE)
        self._cancel_timer(session)

    def end_locally(self, client: Any, session: Session, reason: ReasonElement) -> bool:
        """End a session without telling the peer (idempotent: False if already ended).

        Transports are stopped and each application is told once.
        """
        if session.is_ended:
            return False
        session.transition(State.ENDED)
        session.reason = reason
        sessions = self.sessions(client)
        if sessions.get(session.key) is session:
            del sessions[session.key]
        self._cancel_timer(session)
        applications: list[BaseApplicationHandler] = []
        for content in session.contents.values():
            self.stop_transport(client, session, content)
            if content.application not in applications:
                applications.append(content.application)
        for application in applications:
            try:
                application.on_session_ended(client, session, reason)
            except Exception:
                log.exception("application %s: on_session_ended failed", application.namespace)
        if not session.ended.done():
            session.ended.set_result(reason)
        log.info(
            "Jingle session %s with %s ended: %s%s",
            session.sid,
            session.peer.full(),
            reason.condition.value,
            f" ({reason.text})" if reason.text else "",
        )
        return True

    def stop_transport(self, client: Any, session: Session, content: Content) -> None:
        for transport in (content.transport, content.replacing):
            if transport is None:
                continue
            try:
                transport.stop(client, session, content)
            except Exception:
                log.exception("transport %s: stop failed", transport.namespace)

    # --- actions we send --------------------------------------------------------------------

    async def send(self, client: Any, session: Session, jingle: domish.Element) -> None:
        """Send a Jingle IQ to the peer and wait for its ack.

        An error answer (or no answer) ends the session locally, like Conversations does.

        Raises:
            XMPPError, OperationTimeout, NotConnected: the IQ failed.
        """
        iq = make_iq("set", session.peer)
        iq.addChild(jingle)
        try:
            await client.send_iq(iq, IQ_TIMEOUT)
        except (XMPPError, OperationTimeout, NotConnected) as e:
            condition = getattr(e, "condition", "remote-server-timeout")
            if isinstance(e, NotConnected) or condition in CONNECTIVITY_CONDITIONS:
                reason = Reason.CONNECTIVITY_ERROR
            else:
                reason = Reason.FAILED_APPLICATION
            if jingle.getAttribute("action") != Action.SESSION_TERMINATE:
                self.end_locally(client, session, ReasonElement(reason, str(e)))
            raise

    async def send_action(
        self,
        client: Any,
        session: Session,
        action: Action,
        contents: Iterable[ContentElement] = (),
        reason: ReasonElement | None = None,
        payloads: Iterable[domish.Element] = (),
    ) -> None:
        """Send any action about a live session (applications and transports use it).

        Raises:
            SessionEnded: the session is over.
            XMPPError, OperationTimeout, NotConnected: see :meth:`send`.
        """
        if session.is_ended:
            assert session.reason is not None
            raise SessionEnded(session.reason.condition, session.reason.text)
        reason_el = build_reason(reason.condition, reason.text, reason.extra) if reason else None
        await self.send(
            client,
            session,
            build_jingle(
                action, session.sid, contents=contents, reason=reason_el, payloads=payloads
            ),
        )

    async def initiate(self, client: Any, session: Session) -> None:
        """Send session-initiate (the best usable transport of each content is offered).

        Raises:
            InvalidInput: not a new session of ours, or no content.
            NotFound: no usable transport for a content.
            XMPPError, OperationTimeout, NotConnected: the peer refused or cannot be reached
                (the session is then ended).
        """
        if session.role is not Role.INITIATOR or session.state is not State.PENDING:
            raise InvalidInput("only a new session of ours can be initiated")
        if session.key in self.sessions(client):
            raise InvalidInput(f"session {session.sid} was already initiated")
        if not session.contents:
            raise InvalidInput("a session needs at least one content")
        elements = []
        for content in session.contents.values():
            if content.transport is None:
                content.transport = self.select_transport(client, content)
                if content.transport is None:
                    raise NotFound(f"no usable Jingle transport for content {content.name!r}")
            content.tried_transports.append(content.transport.namespace)
            transport_el = await content.transport.offer(client, session, content)
            elements.append(self._content_element(content, content.description, transport_el))
        self.store(client, session)
        jingle = build_jingle(
            Action.SESSION_INITIATE,
            session.sid,
            initiator=client.jid.full(),
            contents=elements,
            payloads=session.local_payloads,
        )
        await self.send(client, session, jingle)
        self._after_sent(client, session)

    async def accept(self, client: Any, session: Session) -> None:
        """Accept a session the peer proposed (session-accept), then start its transports.

        Raises:
            ConflictError: not a pending session proposed by the peer.
            SessionEnded: the session ended meanwhile.
            XMPPError, OperationTimeout, NotConnected: see :meth:`send`.
        """
        if session.is_ended:
            assert session.reason is not None
            raise SessionEnded(session.reason.condition, session.reason.text)
        if session.role is not Role.RESPONDER or session.state is not State.PENDING:
            raise ConflictError(f"session {session.sid} cannot be accepted now")
        elements = []
        for content in session.contents.values():
            assert content.transport is not None
            description = content.application.build_accept(client, session, content)
            transport_el = await content.transport.accept(client, session, content)
            elements.append(self._content_element(content, description, transport_el))
        if session.is_ended:  # ended while the transports prepared
            assert session.reason is not None
            raise SessionEnded(session.reason.condition, session.reason.text)
        self.activate(session)
        for content in session.contents.values():
            content.accepted = True
        jingle = build_jingle(
            Action.SESSION_ACCEPT,
            session.sid,
            responder=client.jid.full(),
            contents=elements,
            payloads=session.local_payloads,
        )
        await self.send(client, session, jingle)
        self._after_sent(client, session)
        for content in session.contents.values():
            self.start_transport(client, session, content)

    def _after_sent(self, client: Any, session: Session) -> None:
        """Tell each content's transport that the session-initiate/accept was acknowledged
        (in the background, in order: e.g. candidates are trickled after it)."""
        for content in session.contents.values():
            if content.transport is not None:
                background(
                    content.transport.after_sent(client, session, content),
                    f"jingle {content.transport.namespace} after {session.sid}",
                )

    async def terminate(
        self,
        client: Any,
        session: Session,
        reason: Reason,
        text: str | None = None,
        extra: domish.Element | None = None,
    ) -> None:
        """End a session and tell the peer (session-terminate). Idempotent: nothing happens
        when the session already ended (e.g. both sides terminated at once)."""
        if not self.end_locally(client, session, ReasonElement(reason, text, extra)):
            return
        jingle = build_jingle(
            Action.SESSION_TERMINATE, session.sid, reason=build_reason(reason, text, extra)
        )
        try:
            await self.send(client, session, jingle)
        except LiberviaError as e:
            log.info("session-terminate of %s not acknowledged: %s", session.sid, e)

    async def session_info(self, client: Any, session: Session, *payloads: domish.Element) -> None:
        """Send a session-info (no payload: a ping).

        Raises:
            SessionEnded, XMPPError, OperationTimeout, NotConnected.
        """
        await self.send_action(client, session, Action.SESSION_INFO, payloads=payloads)

    async def content_add(self, client: Any, session: Session, content: Content) -> None:
        """Propose one more content of ours (made with :meth:`add_content`) in a live session.

        Raises:
            NotFound: no usable transport. SessionEnded, XMPPError...: see :meth:`send`.
        """
        if content.transport is None:
            content.transport = self.select_transport(client, content)
            if content.transport is None:
                raise NotFound(f"no usable Jingle transport for content {content.name!r}")
        content.tried_transports.append(content.transport.namespace)
        transport_el = await content.transport.offer(client, session, content)
        await self.send_action(
            client,
            session,
            Action.CONTENT_ADD,
            [self._content_element(content, content.description, transport_el)],
        )

    async def content_remove(
        self, client: Any, session: Session, content: Content, reason: Reason = Reason.CANCEL
    ) -> None:
        """Remove a content (content-remove); a session left empty is terminated."""
        if session.contents.get(content.key) is not content:
            raise NotFound(f"content {content.name!r} is not in session {session.sid}")
        del session.contents[content.key]
        self.stop_transport(client, session, content)
        content.application.on_content_removed(client, session, content, ReasonElement(reason))
        await self.send_action(
            client,
            session,
            Action.CONTENT_REMOVE,
            [ContentElement(content.creator, content.name)],
            ReasonElement(reason),
        )
        if not session.contents:
            await self.terminate(client, session, reason)

    def transport_failed(
        self, client: Any, session: Session, content: Content, error: BaseException
    ) -> None:
        """A transport could not connect (before any data moved): as initiator, fall back
        to the next usable transport with transport-replace, else end the session with
        ``failed-transport``. Transports call this; it returns at once."""
        background(
            self._fall_back(client, session, content, error), f"jingle fallback {session.sid}"
        )

    async def _fall_back(
        self, client: Any, session: Session, content: Content, error: BaseException
    ) -> None:
        if session.is_ended:
            return
        failed = content.transport
        log.info(
            "Jingle session %s, content %r: transport %s failed: %s",
            session.sid,
            content.name,
            failed.namespace if failed else None,
            error,
        )
        if session.role is not Role.INITIATOR:
            return  # the initiator replaces the transport (or ends the session)
        if failed is not None:
            failed.stop(client, session, content)
        following = None
        if (
            failed is not None
            and failed.fallback
            and failed.fallback not in content.tried_transports
        ):
            following = self.transports.get(failed.fallback)
        if following is None:
            following = self.select_transport(client, content, exclude=content.tried_transports)
        if following is None:
            await self.terminate(client, session, Reason.FAILED_TRANSPORT, str(error) or None)
            return
        await self.replace_transport(client, session, content, following)

    async def replace_transport(
        self, client: Any, session: Session, content: Content, transport: BaseTransportHandler
    ) -> None:
        """Offer another transport for a content (transport-replace)."""
        content.replacing = transport
        content.tried_transports.append(transport.namespace)
        element = await transport.offer(client, session, content)
        await self.send_action(
            client,
            session,
            Action.TRANSPORT_REPLACE,
            [ContentElement(content.creator, content.name, transport=element)],
        )

    async def replace_before_accept(
        self, client: Any, session: Session, content: Content, transport: BaseTransportHandler
    ) -> bool:
        """Responder: offer another transport for a content of a pending session we are
        about to accept (e.g. the frontend cannot use the one offered; XEP-0166 allows
        transport-replace in the pending state); True once the initiator accepted it (then
        call :meth:`accept`), False when it rejected it or the session ended.

        Raises:
            SessionEnded, XMPPError, OperationTimeout, NotConnected: see :meth:`send`.
        """
        if session.role is not Role.RESPONDER or session.state is not State.PENDING:
            raise ConflictError("only a pending session proposed by the peer")
        self.stop_transport(client, session, content)
        content.replace_answer = asyncio.get_event_loop().create_future()
        try:
            await self.replace_transport(client, session, content, transport)
            await asyncio.wait(
                [content.replace_answer, session.ended], return_when=asyncio.FIRST_COMPLETED
            )
            return content.replace_answer.done() and content.replace_answer.result()
        finally:
            content.replace_answer = None

    def start_transport(self, client: Any, session: Session, content: Content) -> None:
        """Start moving the bytes of an accepted content (in the background)."""
        background(self._run_transport(client, session, content), f"jingle transport {session.sid}")

    async def _run_transport(self, client: Any, session: Session, content: Content) -> None:
        if session.is_ended or content.transport is None:
            return
        if (content.we_send(session) and content.source is None) or (
            content.peer_sends(session) and content.sink is None
        ):
            log.error("content %r of %s has no byte endpoint", content.name, session.sid)
            await self.terminate(client, session, Reason.FAILED_APPLICATION)
            return
        try:
            await content.transport.start(client, session, content)
        except TransportFailed as e:
            await self._fall_back(client, session, content, e)
        except SessionEnded:
            pass
        except Exception as e:
            log.exception("transport %s failed to start", content.transport.namespace)
            await self.terminate(client, session, Reason.FAILED_TRANSPORT, str(e) or None)

    @staticmethod
    def _content_element(
        content: Content,
        description: domish.Element | None,
        transport: domish.Element | None,
    ) -> ContentElement:
        return ContentElement(
            creator=content.creator,
            name=content.name,
            senders=content.senders,
            disposition=content.disposition,
            description=description,
            transport=transport,
        )
