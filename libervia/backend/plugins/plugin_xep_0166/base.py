"""Base classes for Jingle applications and transports.

An application or a transport is registered once with the core
(``XEP_0166.register_application`` / ``register_transport``), which sets its :attr:`jingle`
attribute and announces its namespace in disco. Methods get the profile's ``client``, the
:class:`~.session.Session` and the :class:`~.session.Content` concerned.

Synchronous ``parse_*`` methods run before the peer's IQ is acknowledged: raising
:class:`~.errors.JingleError` answers the IQ with that error (``bad-request`` for malformed
input). Asynchronous ``on_*`` methods run after the acknowledgement (decisions are never made
while the peer waits for the ack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from twisted.words.xish import domish
from zope.interface import implementer

from libervia.backend.plugins.plugin_xep_0166.interfaces import (
    IJingleApplication,
    IJingleTransport,
)

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0166 import XEP_0166
    from libervia.backend.plugins.plugin_xep_0166.elements import ReasonElement
    from libervia.backend.plugins.plugin_xep_0166.session import Content, Session


@implementer(IJingleApplication)
class BaseApplicationHandler:
    """A Jingle application. Override what the application needs."""

    namespace: ClassVar[str] = ""
    jingle: XEP_0166

    def parse_description(
        self, client: Any, session: Session, content: Content, description: domish.Element
    ) -> None:
        """Validate the peer's description of a content it proposes (session-initiate,
        content-add); keep what is needed in ``content.app_data``."""

    async def on_session_initiate(
        self, client: Any, session: Session, contents: list[Content]
    ) -> None:
        """The peer proposed a session with these contents of ours: call
        ``self.jingle.accept`` or ``self.jingle.terminate`` (e.g. ``decline``).

        The default declines.
        """
        from libervia.backend.plugins.plugin_xep_0166.constants import Reason

        await self.jingle.terminate(client, session, Reason.DECLINE)

    def build_accept(self, client: Any, session: Session, content: Content) -> domish.Element:
        """Our description in the answer to the peer's content (a copy of its own by default)."""
        assert content.description is not None
        from libervia.backend.plugins.plugin_xep_0166.elements import clone

        return clone(content.description)

    def parse_accept(
        self, client: Any, session: Session, content: Content, description: domish.Element | None
    ) -> None:
        """Validate the peer's answer to a content we proposed."""

    async def on_accepted(self, client: Any, session: Session, content: Content) -> None:
        """The peer accepted our content; ``content.source``/``sink`` must be set on return."""

    async def on_content_add(self, client: Any, session: Session, content: Content) -> bool:
        """The peer added a content: True accepts it; False (the default) rejects it."""
        return False

    def session_info_supported(self, payload: domish.Element) -> bool:
        """True when this application understands a session-info payload."""
        return False

    async def on_session_info(self, client: Any, session: Session, payload: domish.Element) -> None:
        """A session-info payload this application supports."""

    async def on_description_info(
        self, client: Any, session: Session, content: Content, description: domish.Element
    ) -> None:
        """A description-info about one of the contents."""

    def on_content_removed(
        self, client: Any, session: Session, content: Content, reason: ReasonElement | None
    ) -> None:
        """A content was removed (content-remove) or rejected (content-reject)."""

    def on_session_ended(self, client: Any, session: Session, reason: ReasonElement) -> None:
        """The session ended; release everything (called once per application)."""


@implementer(IJingleTransport)
class BaseTransportHandler:
    """A Jingle transport: negotiates a byte stream and moves the bytes of one content
    between its endpoints (see :mod:`.stream`) and the network.

    ``priority``: the initiator tries usable transports from the highest priority down,
    falling back with transport-replace; IBB, the mandatory fallback, has the lowest.
    """

    namespace: ClassVar[str] = ""
    priority: ClassVar[int] = 0
    #: the transport to fall back to when this one fails (None: the next usable one by
    #: priority), e.g. IBB for WebRTC data channels as Conversations does
    fallback: ClassVar[str | None] = None
    jingle: XEP_0166

    def is_usable(self, client: Any, content: Content) -> bool:
        """Whether this transport can be used for ``content`` in this context (initiator)."""
        return True

    async def offer(self, client: Any, session: Session, content: Content) -> domish.Element:
        """Our ``<transport/>`` for session-initiate, content-add or transport-replace."""
        raise NotImplementedError

    def parse_offer(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        """Validate the initiator's offer; keep what is needed in ``content.transport_data``."""

    async def accept(self, client: Any, session: Session, content: Content) -> domish.Element:
        """Our answer to the offer; once it returns we must be ready for the peer."""
        raise NotImplementedError

    def parse_accept(
        self, client: Any, session: Session, content: Content, element: domish.Element | None
    ) -> None:
        """Validate the responder's answer to our offer."""

    async def after_sent(self, client: Any, session: Session, content: Content) -> None:
        """Our session-initiate or session-accept carrying this transport was acknowledged
        (e.g. now send the candidates in transport-info)."""

    def action_data(self, client: Any, session: Session, content: Content) -> dict[str, Any]:
        """What the user's frontend needs to answer an offer using this transport (merged
        by applications into their ``action_new`` data); nothing by default."""
        return {}

    def use_answer(
        self, client: Any, session: Session, content: Content, answer: dict[str, Any]
    ) -> None:
        """The user's answer to an offer (``action_launch`` data), before we accept it
        (e.g. the frontend's SDP). Raising InvalidInput refuses the session."""

    async def start(self, client: Any, session: Session, content: Content) -> None:
        """Connect; data then moves in the background through ``content.source``/``sink``.

        Raises:
            TransportFailed: no connection could be made (the core falls back).
        """

    async def on_transport_info(
        self, client: Any, session: Session, content: Content, element: domish.Element
    ) -> None:
        """A transport-info about this content."""

    def stop(self, client: Any, session: Session, content: Content) -> None:
        """Release the connection and state kept for this content."""
