"""XEP-0297: Stanza Forwarding.

Reads ``<forwarded xmlns='urn:xmpp:forward:0'>`` wrappers (used by carbons and archive
results): the forwarded ``<message/>`` and the time given by its ``<delay/>``.
"""

from __future__ import annotations

import calendar
from typing import Any

from twisted.words.xish import domish
from wokkel.delay import Delay

from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Stanza Forwarding",
    "import_name": "XEP-0297",
    "type": "XEP",
    "protocols": ["XEP-0297"],
    "dependencies": [],
    "main": "XEP_0297",
    "handler": False,
    "description": "Read forwarded messages (carbons, archives)",
}

NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_CLIENT = "jabber:client"


class XEP_0297:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host

    @staticmethod
    def forwarded(parent: domish.Element) -> domish.Element | None:
        """The ``<forwarded/>`` child of ``parent``, if any."""
        return next(parent.elements(NS_FORWARD, "forwarded"), None)

    def forwarded_message(self, parent: domish.Element) -> domish.Element | None:
        """The ``<message/>`` forwarded in the ``<forwarded/>`` child of ``parent``."""
        forwarded = self.forwarded(parent)
        if forwarded is None:
            return None
        return next(forwarded.elements(NS_CLIENT, "message"), None)

    @staticmethod
    def delay_stamp(forwarded: domish.Element) -> float | None:
        """The time of the ``<delay/>`` of a ``<forwarded/>`` (seconds since the epoch)."""
        child = next(forwarded.elements(NS_DELAY, "delay"), None)
        if child is None:
            return None
        try:
            delay = Delay.fromElement(child)
        except Exception:
            return None
        if delay.stamp is None:
            return None
        stamp = delay.stamp
        # fractions of a second kept (when the server gives them)
        return calendar.timegm(stamp.utctimetuple()) + stamp.microsecond / 1e6
