"""XEP-0359: Unique and Stable Stanza IDs.

Every message we send carries an ``<origin-id/>`` equal to its history uid; the ids of received
messages are stored with them (``origin_id``, and the ``stanza_id`` given by the archiving
entity), so the same message arriving again (carbon, archive catch-up) is never stored twice.

A ``<stanza-id/>`` is only trusted from the entity that archives for us: our own server (its
``by`` is our bare JID) for one-to-one messages, the room for groupchat messages. Anyone can
put a fake one in a message.
"""

from __future__ import annotations

from typing import Any

from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Unique and Stable Stanza IDs",
    "import_name": "XEP-0359",
    "type": "XEP",
    "protocols": ["XEP-0359"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0359",
    "handler": False,
    "description": "Stanza and origin ids, so that no message is stored twice",
}

NS_SID = "urn:xmpp:sid:0"
#: longer ids are ignored (the history column holds 255 characters)
MAX_ID_LENGTH = 255


class XEP_0359:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        host.plugins["XEP-0030"].add_feature(NS_SID)
        host.trigger.add("message_send", self._on_send, priority=100)
        host.trigger.add("message_received", self._on_received, priority=100)

    def _on_send(self, client: Any, message: Any, element: Any) -> bool:
        origin = element.addElement((NS_SID, "origin-id"))
        origin["id"] = message.uid
        message.origin_id = message.uid
        return True

    def _on_received(self, client: Any, element: Any, message: Any) -> bool:
        if str(message.type) == "groupchat":
            trusted = message.source.userhost()
        else:
            trusted = client.jid.userhost()
        for child in element.elements(NS_SID, "stanza-id"):
            by = child.getAttribute("by")
            value = child.getAttribute("id")
            if by == trusted and value and len(value) <= MAX_ID_LENGTH:
                message.stanza_id = value
                break
        origin = next(element.elements(NS_SID, "origin-id"), None)
        if origin is not None:
            value = origin.getAttribute("id")
            if value and len(value) <= MAX_ID_LENGTH:
                message.origin_id = value
        return True
