"""JID helpers (Twisted's ``JID`` is the JID type everywhere in the backend)."""

from __future__ import annotations

import functools

from twisted.words.protocols.jabber.jid import JID, InvalidFormat

__all__ = ["JID", "InvalidFormat", "parse_jid"]

#: parsed JIDs kept (stringprep costs ~0.1-0.2 ms per JID; measured: it was a third of the
#: daemon's CPU per message). Bounded, so that hostile input cannot grow it without limit.
CACHE_SIZE = 4096


@functools.lru_cache(maxsize=CACHE_SIZE)
def _parse(value: str) -> JID:
    try:
        return JID(value)
    except InvalidFormat:
        raise
    except (IndexError, UnicodeError, ValueError) as e:
        # Twisted's stringprep raises IndexError on an empty domain label ("a@.b")
        raise InvalidFormat(f"invalid JID: {e!r}") from None


def parse_jid(value: str | JID) -> JID:
    """Return a :class:`JID` from a string (or the JID itself).

    The JID may be shared with other callers (cached): never modify it.

    Raises:
        InvalidFormat: the string is not a valid JID.
    """
    if isinstance(value, JID):
        return value
    return _parse(value)
