"""Pubsub event notifications (``<event xmlns='http://jabber.org/protocol/pubsub#event'/>``).

:func:`parse_event` turns the ``<message/>`` carrying a notification into :class:`Event`
values (one per node notification: a stanza may carry several); the plugin hands them, in the
order they arrived, to the ``XEP-0060_event`` trigger point (the pubsub cache follows the nodes
there) and then to frontends as the ``ps_event`` signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.tools import xml as xml_tools

NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"

#: event kinds (the ``event_type`` of the ``ps_event`` signal)
ITEMS, RETRACT, PURGE, DELETE, CONFIGURATION = (
    "items",
    "retract",
    "purge",
    "delete",
    "configuration",
)
#: a node notification with more items than this is refused (hostile or broken service)
MAX_EVENT_ITEMS = 10_000


@dataclass
class Event:
    """One node notification. ``items`` are the published ``<item/>`` elements (an ``items``
    notification may also carry retractions in ``retracted``). ``category`` is ``generic``
    unless a trigger (the pubsub cache, knowing the node's analyser) sets it."""

    kind: str
    service: JID
    node: str
    items: list[domish.Element] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    redirect: str | None = None
    configuration: domish.Element | None = None
    category: str = "generic"

    def signal_data(self) -> dict[str, Any]:
        """The serialisable ``data`` of the ``ps_event`` signal."""
        if self.kind == ITEMS:
            data: dict[str, Any] = {
                "items": [xml_tools.serialise(i) for i in self.items],
                "item_ids": [i.getAttribute("id") or "" for i in self.items],
            }
            if self.retracted:
                data["retracted"] = list(self.retracted)
            return data
        if self.kind == RETRACT:
            return {"item_ids": list(self.retracted)}
        if self.kind == DELETE and self.redirect:
            return {"redirect": self.redirect}
        return {}


def parse_event(message: domish.Element, own_server: str) -> list[Event]:
    """The notifications of a ``<message/>`` with an ``<event/>`` child.

    ``from`` is the pubsub service (a bare JID for PEP); a notification without ``from`` comes
    from our own server.

    Raises:
        InvalidInput: no event, no usable ``from``, a notification without node, or too many
            items.
    """
    event_el = next(message.elements(NS_PUBSUB_EVENT, "event"), None)
    if event_el is None:
        raise InvalidInput("no pubsub event in this message")
    sender = message.getAttribute("from") or own_server
    try:
        service = JID(sender)
    except Exception:
        raise InvalidInput(f"pubsub event from an invalid JID {sender[:100]!r}") from None
    events: list[Event] = []
    for child in event_el.elements(NS_PUBSUB_EVENT):
        node = child.getAttribute("node")
        if not node:
            raise InvalidInput(f"pubsub <{child.name}/> notification without node")
        if child.name == "items":
            items, retracted = [], []
            for sub in child.elements(NS_PUBSUB_EVENT):
                if sub.name == "item":
                    items.append(sub)
                elif sub.name == "retract" and sub.getAttribute("id"):
                    retracted.append(sub["id"])
            if len(items) + len(retracted) > MAX_EVENT_ITEMS:
                raise InvalidInput(f"pubsub event with more than {MAX_EVENT_ITEMS} items")
            if items:
                events.append(Event(ITEMS, service, node, items=items, retracted=retracted))
            elif retracted:
                events.append(Event(RETRACT, service, node, retracted=retracted))
        elif child.name == "purge":
            events.append(Event(PURGE, service, node))
        elif child.name == "delete":
            redirect = next(child.elements(NS_PUBSUB_EVENT, "redirect"), None)
            uri = redirect.getAttribute("uri") if redirect is not None else None
            events.append(Event(DELETE, service, node, redirect=uri))
        elif child.name == "configuration":
            form = next(child.elements("jabber:x:data", "x"), None)
            events.append(Event(CONFIGURATION, service, node, configuration=form))
    return events
