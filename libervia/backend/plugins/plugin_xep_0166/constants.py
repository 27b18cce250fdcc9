"""Jingle (XEP-0166) namespaces and wire values."""

from __future__ import annotations

from enum import StrEnum

NS_JINGLE = "urn:xmpp:jingle:1"
NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

#: a session nobody accepted within this delay (seconds) ends with ``timeout``
PENDING_TIMEOUT = 300.0
#: a peer that went unavailable and said nothing since for this long (seconds) is gone
GONE_DELAY = 10.0
#: how long we wait for the ack of one of our Jingle IQs
IQ_TIMEOUT = 60.0
#: sessions one peer (bare JID) may have proposed to us and still pending; a session-initiate
#: beyond is refused with ``resource-constraint`` (a flood never piles up questions for the
#: user)
MAX_PENDING_PER_PEER = 10


class Action(StrEnum):
    """The ``action`` attribute of ``<jingle/>`` (XEP-0166 §7.2)."""

    CONTENT_ACCEPT = "content-accept"
    CONTENT_ADD = "content-add"
    CONTENT_MODIFY = "content-modify"
    CONTENT_REJECT = "content-reject"
    CONTENT_REMOVE = "content-remove"
    DESCRIPTION_INFO = "description-info"
    SECURITY_INFO = "security-info"
    SESSION_ACCEPT = "session-accept"
    SESSION_INFO = "session-info"
    SESSION_INITIATE = "session-initiate"
    SESSION_TERMINATE = "session-terminate"
    TRANSPORT_ACCEPT = "transport-accept"
    TRANSPORT_INFO = "transport-info"
    TRANSPORT_REJECT = "transport-reject"
    TRANSPORT_REPLACE = "transport-replace"


class State(StrEnum):
    """The state of a session (XEP-0166 §5)."""

    PENDING = "pending"
    ACTIVE = "active"
    ENDED = "ended"


class Role(StrEnum):
    """Who we are in a session; also the values of ``creator`` and ``senders``."""

    INITIATOR = "initiator"
    RESPONDER = "responder"

    @property
    def other(self) -> Role:
        return Role.RESPONDER if self is Role.INITIATOR else Role.INITIATOR


class Senders(StrEnum):
    """The ``senders`` attribute of a content."""

    BOTH = "both"
    INITIATOR = "initiator"
    RESPONDER = "responder"
    NONE = "none"

    def includes(self, role: Role) -> bool:
        """True when ``role`` sends data in this content."""
        return self is Senders.BOTH or self.value == role.value


class Reason(StrEnum):
    """Conditions of ``<reason/>`` (XEP-0166 §7.4)."""

    ALTERNATIVE_SESSION = "alternative-session"
    BUSY = "busy"
    CANCEL = "cancel"
    CONNECTIVITY_ERROR = "connectivity-error"
    DECLINE = "decline"
    EXPIRED = "expired"
    FAILED_APPLICATION = "failed-application"
    FAILED_TRANSPORT = "failed-transport"
    GENERAL_ERROR = "general-error"
    GONE = "gone"
    INCOMPATIBLE_PARAMETERS = "incompatible-parameters"
    MEDIA_ERROR = "media-error"
    SECURITY_ERROR = "security-error"
    SUCCESS = "success"
    TIMEOUT = "timeout"
    UNSUPPORTED_APPLICATIONS = "unsupported-applications"
    UNSUPPORTED_TRANSPORTS = "unsupported-transports"


class JingleCondition(StrEnum):
    """Jingle-specific error conditions (``urn:xmpp:jingle:errors:1``)."""

    OUT_OF_ORDER = "out-of-order"
    TIE_BREAK = "tie-break"
    UNKNOWN_SESSION = "unknown-session"
    UNSUPPORTED_INFO = "unsupported-info"
    SECURITY_REQUIRED = "security-required"
