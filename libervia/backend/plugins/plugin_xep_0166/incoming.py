"""Jingle requests from peers: validated, acknowledged at once, then handled asynchronously.

Each action has a synchronous step (:class:`Incoming` methods named after the action) that
finds the session, checks the request against the state machine, changes the state, and
returns the asynchronous rest (or None). A :class:`~.errors.JingleError` raised by that step
is the IQ's error answer and nothing changes. The asynchronous parts of one session run in
arrival order (the session's lock), except user decisions (accepting a session or a
content), which must not hold back the peer's next requests (e.g. a cancel).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import LiberviaError
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166.constants import (
    NS_JINGLE,
    Action,
    Reason,
    Role,
    State,
)
from libervia.backend.plugins.plugin_xep_0166.elements import (
    ContentElement,
    JingleRequest,
    ReasonElement,
    parse_jingle,
)
from libervia.backend.plugins.plugin_xep_0166.errors import (
    JingleError,
    bad_request,
    out_of_order,
    tie_break,
    unknown_session,
    unsupported_info,
)
from libervia.backend.plugins.plugin_xep_0166.session import Content, Session
from libervia.backend.tools.jid import parse_jid

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0166 import XEP_0166

log = get_logger(__name__)

JINGLE_SET = f'/iq[@type="set"]/jingle[@xmlns="{NS_JINGLE}"]'

Later = Callable[[], Awaitable[None]] | None


class JingleHandler(XMPPHandler):
    """Observes the Jingle IQ-sets of one profile's stream."""

    def __init__(self, plugin: XEP_0166) -> None:
        super().__init__()
        self.plugin = plugin

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        self.xmlstream.addObserver(JINGLE_SET, self._on_jingle)

    def _on_jingle(self, iq: domish.Element) -> None:
        iq.handled = True
        self.plugin.incoming.receive(self.parent, iq)


def new_content(element: Any, application: Any, transport: Any) -> Content:
    """The Content the peer offers in ``element`` (a parsed ``<content/>``)."""
    return Content(
        creator=element.creator,
        name=element.name,
        application=application,
        transport=transport,
        senders=element.senders,
        disposition=element.disposition,
        description=element.description,
    )


class Incoming:
    """Dispatch of the peers' Jingle requests."""

    def __init__(self, plugin: XEP_0166) -> None:
        self.plugin = plugin
        self._steps: dict[Action, Callable[[Any, JID, JingleRequest], Later]] = {
            Action.SESSION_INITIATE: self.session_initiate,
            Action.SESSION_ACCEPT: self.session_accept,
            Action.SESSION_TERMINATE: self.session_terminate,
            Action.SESSION_INFO: self.session_info,
            Action.CONTENT_ADD: self.content_add,
            Action.CONTENT_ACCEPT: self.content_accept,
            Action.CONTENT_REJECT: self.content_reject,
            Action.CONTENT_REMOVE: self.content_remove,
            Action.TRANSPORT_INFO: self.transport_info,
            Action.TRANSPORT_REPLACE: self.transport_replace,
            Action.TRANSPORT_ACCEPT: self.transport_accept,
            Action.TRANSPORT_REJECT: self.transport_reject,
            Action.DESCRIPTION_INFO: self.description_info,
        }

    def receive(self, client: Any, iq: domish.Element) -> None:
        """Handle one Jingle IQ-set: error answer, or ack then the asynchronous rest."""
        try:
            sender = iq.getAttribute("from")
            if not sender:
                raise bad_request("no sender")
            try:
                peer = parse_jid(sender)
            except InvalidFormat:
                raise bad_request("invalid sender") from None
            jingle = next(iq.elements(NS_JINGLE, "jingle"))
            request = parse_jingle(jingle)
            step = self._steps.get(request.action)
            if step is None:  # content-modify, security-info: not supported
                raise JingleError("feature-not-implemented", text=f"{request.action} unsupported")
            later = step(client, peer, request)
        except JingleError as e:
            log.info("Jingle request from %s refused: %s", iq.getAttribute("from"), e)
            client.send(e.response(iq))
            return
        except Exception:
            log.exception("Jingle request from %s failed", iq.getAttribute("from"))
            client.send(JingleError("internal-server-error").response(iq))
            return
        client.send(toResponse(iq, "result"))
        session = self.plugin.get_session(client, peer, request.sid)
        if session is not None:
            session.last_heard = float(client.reactor.seconds())
        if later is not None:
            background(self._serialised(session, later), f"jingle {request.action}")

    @staticmethod
    async def _serialised(session: Session | None, later: Callable[[], Awaitable[None]]) -> None:
        try:
            if session is None:
                await later()
                return
            async with session.lock:
                await later()
        except LiberviaError as e:  # the peer vanished, the session ended meanwhile...
            log.info("Jingle session %s: %s", session.sid if session else "?", e)

    def _session(self, client: Any, peer: JID, request: JingleRequest) -> Session:
        session = self.plugin.get_session(client, peer, request.sid)
        if session is None or session.is_ended:
            raise unknown_session()
        return session

    @staticmethod
    def _content(session: Session, element: ContentElement) -> Content:
        content = session.content(element.creator, element.name)
        if content is None:
            raise bad_request(f"unknown content {element.name!r}")
        return content

    def _application_task(self, coro: Awaitable[None], what: str) -> None:
        async def run() -> None:
            try:
                await coro
            except LiberviaError as e:
                log.warning("%s: %s", what, e)

        background(run(), what)

    # --- session-* --------------------------------------------------------------------------

    def session_initiate(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        plugin = self.plugin
        if plugin.get_session(client, peer, request.sid) is not None:
            raise out_of_order("this session already exists")
        if not request.contents:
            raise bad_request("session-initiate without content")
        if not any(c.disposition == "session" for c in request.contents):
            raise bad_request("session-initiate without a session content")
        for element in request.contents:
            if element.description is None or element.transport is None:
                raise bad_request(f"content {element.name!r} needs a description and a transport")
        self._check_tie_break(client, peer, request)
        bare = peer.userhost()
        pending = sum(
            1
            for other in plugin.sessions(client).values()
            if other.role is Role.RESPONDER
            and other.state is State.PENDING
            and other.peer.userhost() == bare
        )
        if pending >= plugin.max_pending_per_peer:
            raise JingleError(
                "resource-constraint",
                text=f"too many pending sessions from {bare} ({pending})",
            )
        session = Session(request.sid, peer, client.jid, Role.RESPONDER)
        session.remote_payloads = request.payloads
        missing: Reason | None = None
        for element in request.contents:
            assert element.description is not None and element.transport is not None
            if session.content(element.creator, element.name) is not None:
                continue  # an alternative definition of a content we could use: keep the first
            application = plugin.applications.get(element.description.uri or "")
            transport = plugin.transports.get(element.transport.uri or "")
            if application is None:
                missing = missing or Reason.UNSUPPORTED_APPLICATIONS
                continue
            if transport is None:
                missing = missing or Reason.UNSUPPORTED_TRANSPORTS
                continue
            content = new_content(element, application, transport)
            application.parse_description(client, session, content, element.description)
            transport.parse_offer(client, session, content, element.transport)
            content.tried_transports.append(transport.namespace)
            session.add(content)
        plugin.store(client, session)
        if missing is not None or not session.contents:
            reason = missing or Reason.UNSUPPORTED_APPLICATIONS
            return lambda: plugin.terminate(client, session, reason)

        async def decide() -> None:
            by_app: dict[Any, list[Content]] = {}
            for content in session.contents.values():
                by_app.setdefault(content.application, []).append(content)
            for application, contents in by_app.items():
                self._application_task(
                    application.on_session_initiate(client, session, contents),
                    f"jingle session {session.sid} proposed by {peer.full()}",
                )

        return decide

    def _check_tie_break(self, client: Any, peer: JID, request: JingleRequest) -> None:
        """Both sides proposed an equivalent session: the lower sid (then JID) wins (§1.6)."""
        namespaces = {c.description.uri for c in request.contents if c.description is not None}
        for ours in self.plugin.sessions(client).values():
            if (
                ours.peer != peer
                or ours.role is not Role.INITIATOR
                or ours.state is not State.PENDING
                or {c.application.namespace for c in ours.contents.values()} != namespaces
            ):
                continue
            our_key = (ours.sid.encode(), client.jid.full().encode())
            their_key = (request.sid.encode(), peer.full().encode())
            if our_key < their_key:
                raise tie_break()

    def session_accept(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        if session.role is not Role.INITIATOR or session.state is not State.PENDING:
            raise out_of_order("session-accept not expected")
        if not request.contents:
            raise bad_request("session-accept without content")
        accepted: list[Content] = []
        session.remote_payloads = request.payloads
        for element in request.contents:
            content = self._content(session, element)
            if element.transport is None or element.description is None:
                raise bad_request(f"content {element.name!r} needs a description and a transport")
            assert content.transport is not None
            if element.transport.uri != content.transport.namespace:
                raise bad_request(f"content {element.name!r}: transport not offered")
            content.application.parse_accept(client, session, content, element.description)
            content.transport.parse_accept(client, session, content, element.transport)
            accepted.append(content)
        self.plugin.activate(session)
        for content in accepted:
            content.accepted = True
        dropped = [c for c in session.contents.values() if not c.accepted]
        for content in dropped:  # not accepted by the responder: removed
            del session.contents[content.key]
            self.plugin.stop_transport(client, session, content)
            content.application.on_content_removed(client, session, content, None)

        async def accepted_contents() -> None:
            for content in accepted:
                await content.application.on_accepted(client, session, content)
                self.plugin.start_transport(client, session, content)

        return accepted_contents

    def session_terminate(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        self.plugin.end_locally(
            client, session, request.reason or ReasonElement(Reason.GENERAL_ERROR)
        )
        return None

    def session_info(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        if not request.payloads:
            return None  # a ping
        applications = {c.application for c in session.contents.values()}
        handled = []
        for payload in request.payloads:
            application = next((a for a in applications if a.session_info_supported(payload)), None)
            if application is None:
                raise unsupported_info()
            handled.append((application, payload))

        async def dispatch() -> None:
            for application, payload in handled:
                await application.on_session_info(client, session, payload)

        return dispatch

    # --- content-* --------------------------------------------------------------------------

    def content_add(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        if not request.contents:
            raise bad_request("content-add without content")
        added: list[Content] = []
        unsupported: list[ContentElement] = []
        for element in request.contents:
            if element.creator is not session.role.other:
                raise bad_request("content-add of a content the sender did not create")
            if session.content(element.creator, element.name) is not None:
                raise bad_request(f"content {element.name!r} already exists")
            if element.description is None or element.transport is None:
                raise bad_request(f"content {element.name!r} needs a description and a transport")
            application = self.plugin.applications.get(element.description.uri or "")
            transport = self.plugin.transports.get(element.transport.uri or "")
            if application is None or transport is None:
                unsupported.append(element)
                continue
            content = new_content(element, application, transport)
            application.parse_description(client, session, content, element.description)
            transport.parse_offer(client, session, content, element.transport)
            added.append(content)
        for content in added:
            session.add(content)

        async def decide() -> None:
            if unsupported:
                await self.plugin.send_action(
                    client,
                    session,
                    Action.CONTENT_REJECT,
                    [ContentElement(e.creator, e.name) for e in unsupported],
                    ReasonElement(Reason.UNSUPPORTED_APPLICATIONS),
                )
            for content in added:
                self._application_task(
                    self._decide_content(client, session, content),
                    f"jingle content {content.name!r} added to {session.sid}",
                )

        return decide

    async def _decide_content(self, client: Any, session: Session, content: Content) -> None:
        try:
            keep = await content.application.on_content_add(client, session, content)
        except Exception:
            log.exception("application %s: on_content_add failed", content.application.namespace)
            keep = False
        if session.is_ended or session.contents.get(content.key) is not content:
            return
        element = ContentElement(content.creator, content.name)
        if not keep:
            del session.contents[content.key]
            self.plugin.stop_transport(client, session, content)
            await self.plugin.send_action(
                client, session, Action.CONTENT_REJECT, [element], ReasonElement(Reason.DECLINE)
            )
            return
        assert content.transport is not None
        description = content.application.build_accept(client, session, content)
        transport_el = await content.transport.accept(client, session, content)
        content.accepted = True
        await self.plugin.send_action(
            client,
            session,
            Action.CONTENT_ACCEPT,
            [
                ContentElement(
                    content.creator,
                    content.name,
                    senders=content.senders,
                    description=description,
                    transport=transport_el,
                )
            ],
        )
        self.plugin.start_transport(client, session, content)

    def _our_pending_contents(self, session: Session, request: JingleRequest) -> list[Content]:
        """The contents of a content-accept/reject: ours, added and not answered yet."""
        if not request.contents:
            raise bad_request(f"{request.action} without content")
        contents = []
        for element in request.contents:
            content = self._content(session, element)
            if content.creator is not session.role or content.accepted:
                raise out_of_order(f"content {content.name!r} is not waiting for an answer")
            if session.state is State.PENDING and session.role is Role.INITIATOR:
                raise out_of_order("the session itself is not accepted yet")
            contents.append(content)
        return contents

    def content_accept(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        contents = self._our_pending_contents(session, request)
        for element, content in zip(request.contents, contents, strict=True):
            assert content.transport is not None
            content.application.parse_accept(client, session, content, element.description)
            content.transport.parse_accept(client, session, content, element.transport)
        for content in contents:
            content.accepted = True

        async def accepted() -> None:
            for content in contents:
                await content.application.on_accepted(client, session, content)
                self.plugin.start_transport(client, session, content)

        return accepted

    def content_reject(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        contents = self._our_pending_contents(session, request)
        return self._remove(client, session, contents, request.reason)

    def content_remove(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        if not request.contents:
            raise bad_request("content-remove without content")
        contents = [self._content(session, element) for element in request.contents]
        return self._remove(client, session, contents, request.reason)

    def _remove(
        self,
        client: Any,
        session: Session,
        contents: list[Content],
        reason: ReasonElement | None,
    ) -> Later:
        for content in contents:
            session.contents.pop(content.key, None)
            self.plugin.stop_transport(client, session, content)
            content.application.on_content_removed(client, session, content, reason)
        if session.contents:
            return None
        # a session without content is void
        condition = reason.condition if reason is not None else Reason.CANCEL
        return lambda: self.plugin.terminate(client, session, condition)

    def description_info(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        if not request.contents:
            raise bad_request("description-info without content")
        infos = []
        for element in request.contents:
            content = self._content(session, element)
            if element.description is None:
                raise bad_request("description-info without description")
            infos.append((content, element.description))

        async def dispatch() -> None:
            for content, description in infos:
                await content.application.on_description_info(client, session, content, description)

        return dispatch

    # --- transport-* ------------------------------------------------------------------------

    def transport_info(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        if not request.contents:
            raise bad_request("transport-info without content")
        infos = []
        for element in request.contents:
            content = self._content(session, element)
            if element.transport is None:
                raise bad_request("transport-info without transport")
            transport = next(
                (
                    t
                    for t in (content.transport, content.replacing)
                    if t is not None and t.namespace == element.transport.uri
                ),
                None,
            )
            if transport is None:
                raise bad_request(f"content {content.name!r} does not use this transport")
            infos.append((transport, content, element.transport))

        async def dispatch() -> None:
            for transport, content, element in infos:
                await transport.on_transport_info(client, session, content, element)

        return dispatch

    def transport_replace(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        if len(request.contents) != 1:
            raise bad_request("transport-replace needs exactly one content")
        (element,) = request.contents
        content = self._content(session, element)
        if element.transport is None:
            raise bad_request("transport-replace without transport")
        if content.replacing is not None:
            if session.role is Role.INITIATOR:
                raise tie_break()  # both replaced at once: the initiator's replace wins
            content.replacing.stop(client, session, content)
            content.replacing = None
        transport = self.plugin.transports.get(element.transport.uri or "")
        plugin = self.plugin
        if transport is None:
            rejected = ContentElement(content.creator, content.name, transport=element.transport)
            return lambda: plugin.send_action(client, session, Action.TRANSPORT_REJECT, [rejected])
        plugin.stop_transport(client, session, content)
        content.transport = transport
        content.transport_data = None
        transport.parse_offer(client, session, content, element.transport)
        content.tried_transports.append(transport.namespace)
        # a content not accepted yet (a responder replacing before its session-accept)
        # starts with the session-accept, which may arrive before our ack is answered
        started_here = content.accepted

        async def accept() -> None:
            answer = await transport.accept(client, session, content)
            await plugin.send_action(
                client,
                session,
                Action.TRANSPORT_ACCEPT,
                [ContentElement(content.creator, content.name, transport=answer)],
            )
            if started_here:
                plugin.start_transport(client, session, content)

        return accept

    def _replacing(self, session: Session, request: JingleRequest) -> Content:
        if len(request.contents) != 1:
            raise bad_request(f"{request.action} needs exactly one content")
        content = self._content(session, request.contents[0])
        if content.replacing is None:
            raise out_of_order("no transport-replace is waiting for an answer")
        return content

    def transport_accept(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        content = self._replacing(session, request)
        transport = content.replacing
        assert transport is not None
        element = request.contents[0].transport
        if element is None or element.uri != transport.namespace:
            raise bad_request("transport-accept of another transport")
        transport.parse_accept(client, session, content, element)
        content.transport = transport
        content.replacing = None
        # not accepted yet: our session-accept starts it (see replace_before_accept)
        started_here = content.accepted
        if content.replace_answer is not None and not content.replace_answer.done():
            content.replace_answer.set_result(True)

        async def start() -> None:
            if started_here:
                self.plugin.start_transport(client, session, content)

        return start

    def transport_reject(self, client: Any, peer: JID, request: JingleRequest) -> Later:
        session = self._session(client, peer, request)
        content = self._replacing(session, request)
        transport = content.replacing
        assert transport is not None
        transport.stop(client, session, content)
        content.replacing = None
        if content.replace_answer is not None and not content.replace_answer.done():
            content.replace_answer.set_result(False)
            return None  # the responder replacing before accepting decides what follows
        content.transport = transport  # the failed one, for the fallback to skip it

        async def fall_back() -> None:
            await self.plugin._fall_back(
                client, session, content, RuntimeError(f"the peer rejected {transport.namespace}")
            )

        return fall_back
