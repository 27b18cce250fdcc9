"""JID helpers (Twisted's ``JID`` is the JID type everywhere in the backend)."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID, InvalidFormat

__all__ = ["JID", "InvalidFormat", "parse_jid"]


def parse_jid(value: str | JID) -> JID:
    """Return a :class:`JID` from a string (or the JID itself).

    Raises:
        InvalidFormat: the string is not a valid JID.
    """
    if isinstance(value, JID):
        return value
    return JID(value)
