"""Errors answered to Jingle IQs, and errors raised to local callers."""

from __future__ import annotations

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish

from libervia.backend.core.exceptions import LiberviaError
from libervia.backend.plugins.plugin_xep_0166.constants import (
    NS_JINGLE_ERRORS,
    JingleCondition,
    Reason,
)


class JingleError(Exception):
    """A Jingle IQ is refused: answered with an XMPP error (fact sheet §1.4).

    Args:
        condition: the XMPP stanza error condition (``bad-request``, ``item-not-found``...).
        jingle_condition: the ``urn:xmpp:jingle:errors:1`` condition, if any.
        text: a human readable explanation (sent in ``<text/>``).
        app_condition: an application-specific condition element (other namespace).
    """

    def __init__(
        self,
        condition: str,
        jingle_condition: JingleCondition | None = None,
        text: str | None = None,
        app_condition: domish.Element | None = None,
    ) -> None:
        super().__init__(text or condition)
        self.condition = condition
        self.jingle_condition = jingle_condition
        self.text = text
        self.app_condition = app_condition

    def response(self, iq: domish.Element) -> domish.Element:
        """The error answer to ``iq`` (the request's payload is not echoed)."""
        app = self.app_condition
        if app is None and self.jingle_condition is not None:
            app = domish.Element((NS_JINGLE_ERRORS, self.jingle_condition.value))
        error = StanzaError(self.condition, text=self.text, appCondition=app)
        response = toResponse(iq, "error")
        response.addChild(error.getElement())
        return response


def bad_request(text: str) -> JingleError:
    """A malformed request."""
    return JingleError("bad-request", text=text)


def unknown_session() -> JingleError:
    return JingleError("item-not-found", JingleCondition.UNKNOWN_SESSION)


def out_of_order(text: str | None = None) -> JingleError:
    return JingleError("unexpected-request", JingleCondition.OUT_OF_ORDER, text)


def tie_break() -> JingleError:
    return JingleError("conflict", JingleCondition.TIE_BREAK)


def unsupported_info() -> JingleError:
    return JingleError("feature-not-implemented", JingleCondition.UNSUPPORTED_INFO)


class SessionEnded(LiberviaError):
    """A Jingle session ended before the operation completed (the reason is kept)."""

    def __init__(self, reason: Reason, text: str | None = None) -> None:
        super().__init__(f"Jingle session ended: {reason.value}{f' ({text})' if text else ''}")
        self.reason = reason
        self.text = text


class TransportFailed(LiberviaError):
    """A transport could not move the bytes (connection impossible, peer closed it...)."""
