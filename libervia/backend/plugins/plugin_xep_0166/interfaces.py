"""The contracts of Jingle applications and transports (checked with ``verifyObject``).

:class:`~.base.BaseApplicationHandler` and :class:`~.base.BaseTransportHandler` implement
them with sensible defaults; subclass those.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IJingleApplication(Interface):
    """A Jingle application (``<description/>`` namespace), e.g. file transfer."""

    namespace = Attribute("the namespace of its <description/> (announced in disco)")

    def parse_description(client, session, content, description):  # noqa: N805
        """Validate the peer's description of a new content (sync; JingleError refuses)."""

    def on_session_initiate(client, session, contents):  # noqa: N805
        """A peer proposed a session: accept or terminate it (async)."""

    def build_accept(client, session, content):  # noqa: N805
        """Our description in session-accept / content-accept."""

    def parse_accept(client, session, content, description):  # noqa: N805
        """Validate the peer's answer to our content (sync)."""

    def on_accepted(client, session, content):  # noqa: N805
        """The peer accepted our content: set the byte endpoints (async)."""

    def on_content_add(client, session, content):  # noqa: N805
        """The peer added a content: True to accept it (async)."""

    def session_info_supported(payload):  # noqa: N805
        """True when a session-info payload is understood."""

    def on_session_info(client, session, payload):  # noqa: N805
        """A session-info payload (async)."""

    def on_description_info(client, session, content, description):  # noqa: N805
        """A description-info (async)."""

    def on_content_removed(client, session, content, reason):  # noqa: N805
        """A content was removed or rejected."""

    def on_session_ended(client, session, reason):  # noqa: N805
        """The session ended (whoever ended it, whatever the reason)."""


class IJingleTransport(Interface):
    """A Jingle transport (``<transport/>`` namespace), e.g. IBB, SOCKS5."""

    namespace = Attribute("the namespace of its <transport/> (announced in disco)")
    priority = Attribute("higher is tried first; IBB is the lowest")

    def is_usable(client, content):  # noqa: N805
        """Whether the transport can be used for this content (initiator side)."""

    def offer(client, session, content):  # noqa: N805
        """Our <transport/> offer (initiator, async)."""

    def parse_offer(client, session, content, element):  # noqa: N805
        """Validate the peer's offer (responder, sync; JingleError refuses)."""

    def accept(client, session, content):  # noqa: N805
        """Our <transport/> answer, ready for the initiator's connection (async)."""

    def parse_accept(client, session, content, element):  # noqa: N805
        """Validate the responder's answer (initiator, sync)."""

    def after_sent(client, session, content):  # noqa: N805
        """Our session-initiate / session-accept was acknowledged (async)."""

    def action_data(client, session, content):  # noqa: N805
        """Extra data for the user's prompt about an offer (dict)."""

    def use_answer(client, session, content, answer):  # noqa: N805
        """The user's answer to an offer, before we accept it (sync)."""

    def start(client, session, content):  # noqa: N805
        """Connect and move the bytes (async; TransportFailed when it cannot connect)."""

    def on_transport_info(client, session, content, element):  # noqa: N805
        """A transport-info for this content (async)."""

    def stop(client, session, content):  # noqa: N805
        """Release everything held for this content."""
