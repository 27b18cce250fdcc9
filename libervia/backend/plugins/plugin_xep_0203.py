"""XEP-0203: Delayed Delivery.

A message delivered late (offline storage, archive) carries the time it was sent: it becomes
the message's timestamp, and the time we received it is kept as ``received_timestamp``.
"""

from __future__ import annotations

import calendar
from typing import Any

from wokkel.delay import Delay

from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Delayed Delivery",
    "import_name": "XEP-0203",
    "type": "XEP",
    "protocols": ["XEP-0203"],
    "dependencies": [],
    "main": "XEP_0203",
    "handler": False,
    "description": "Keep the original time of messages delivered late",
}

NS_DELAY = "urn:xmpp:delay"


class XEP_0203:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        host.trigger.add("message_received", self._on_received, priority=90)

    def _on_received(self, client: Any, element: Any, message: Any) -> bool:
        child = next(element.elements(NS_DELAY, "delay"), None)
        if child is None:
            return True
        try:
            delay = Delay.fromElement(child)
        except Exception:
            log.warning("%s: ignoring an invalid delay element", client.profile)
            return True
        if delay.stamp is None:
            return True
        message.received_timestamp = message.timestamp
        message.timestamp = float(calendar.timegm(delay.stamp.utctimetuple()))
        if delay.sender is not None:
            message.extra["delay_sender"] = delay.sender.full()
        return True
