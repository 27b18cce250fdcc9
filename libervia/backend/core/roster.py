"""Roster and presence (RFC 6121) of one profile.

The roster is fetched right after login, then the initial presence is sent: subscription
approvals are only delivered by the server after the roster was fetched (DESIGN.md §6).

Frontends see:

- ``contact_new(jid, attributes, groups)`` for every roster item at login and on each roster
  push; ``contact_deleted(jid)`` when one is removed;
- ``presence_update(entity, show, priority, statuses)`` for every presence received
  (``show`` is ``"unavailable"`` when the entity went offline);
- ``action_new`` with ``{"type": "subscription", "subtype": "subscribe", "from_jid": ...}``
  when someone asks to see our presence (an action of ``host.actions``); the user answers
  with ``subscription("subscribed" | "unsubscribed", jid)``, or with ``action_launch`` and
  ``{"accept": true | false}``. A request from a contact we asked ourselves is accepted at
  once. Pending requests are cancelled (``action_update``) when the profile disconnects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from wokkel import xmppim

from libervia.backend.core.aio import as_future
from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.log import get_logger
from libervia.backend.core.triggers import TriggerManager
from libervia.backend.tools.ids import time_ordered_uuid
from libervia.backend.tools.jid import parse_jid

if TYPE_CHECKING:
    from libervia.backend.core.actions import Action, ActionManager
    from libervia.backend.core.xmpp import LiberviaClient

log = get_logger(__name__)

SHOW_VALUES = ("", "away", "chat", "dnd", "xa")
#: what a malformed stanza makes wokkel's parsers raise (bad JIDs: stringprep, lengths...)
PARSE_ERRORS = (InvalidFormat, UnicodeError, ValueError, KeyError, IndexError, RuntimeError)
SUBSCRIPTION_ANSWERS = ("subscribed", "unsubscribed", "subscribe", "unsubscribe")


@dataclass
class Contact:
    jid: JID
    name: str = ""
    groups: tuple[str, ...] = ()
    subscription_to: bool = False
    subscription_from: bool = False
    ask: bool = False

    @classmethod
    def from_item(cls, item: xmppim.RosterItem) -> Contact:
        return cls(
            jid=item.entity,
            name=item.name or "",
            groups=tuple(sorted(item.groups or ())),
            subscription_to=bool(item.subscriptionTo),
            subscription_from=bool(item.subscriptionFrom),
            ask=bool(item.pendingOut),
        )

    def attributes(self) -> dict[str, str]:
        """The ``attributes`` dict of ``contact_new`` / ``contacts_get``."""
        return {
            "name": self.name,
            "to": "true" if self.subscription_to else "false",
            "from": "true" if self.subscription_from else "false",
            "ask": "subscribe" if self.ask else "",
        }


class RosterHandler(xmppim.RosterClientProtocol):
    """The roster of a profile, kept in memory and in sync through roster pushes."""

    def __init__(self, client: LiberviaClient, emit: Any) -> None:
        super().__init__()
        self.client = client
        self.emit = emit
        self.contacts: dict[str, Contact] = {}
        self.got_roster = False

    async def fetch(self) -> None:
        roster = await as_future(self.getRoster())
        self.contacts = {}
        for item in (roster or {}).values():
            self._set(Contact.from_item(item))
        self.got_roster = True

    def _set(self, contact: Contact) -> None:
        self.contacts[contact.jid.userhost()] = contact
        self.emit(
            "contact_new",
            contact.jid.userhost(),
            contact.attributes(),
            list(contact.groups),
            self.client.profile,
        )

    def _onRosterSet(self, iq: domish.Element) -> Any:  # noqa: N802 - wokkel's name
        """A roster push: exactly one valid item (RFC 6121 §2.1.6), else ``bad-request``.

        Pushes from anyone but our own account are refused by wokkel
        (``service-unavailable``).
        """
        query = next(iq.elements(xmppim.NS_ROSTER, "query"), None)
        items = list(query.elements(xmppim.NS_ROSTER, "item")) if query is not None else []
        if len(items) != 1:
            log.warning("%s: roster push with %d items refused", self.client.profile, len(items))
            raise StanzaError("bad-request", text="a roster push carries exactly one item")
        try:
            return super()._onRosterSet(iq)
        except PARSE_ERRORS as e:
            log.warning("%s: malformed roster push refused: %r", self.client.profile, e)
            raise StanzaError("bad-request", text="malformed roster item") from None

    def setReceived(self, request: Any) -> None:  # noqa: N802 - wokkel's name
        self._set(Contact.from_item(request.item))

    def removeReceived(self, request: Any) -> None:  # noqa: N802 - wokkel's name
        bare = request.item.entity.userhost()
        if self.contacts.pop(bare, None) is not None:
            self.emit("contact_deleted", bare, self.client.profile)

    def get(self, jid: JID) -> Contact | None:
        return self.contacts.get(jid.userhost())

    async def update(self, jid: JID, name: str = "", groups: Iterable[str] = ()) -> None:
        """Add or modify a roster item (the server pushes the change back)."""
        item = xmppim.RosterItem(jid.userhostJID(), name=name or None, groups=set(groups))
        await as_future(self.setItem(item))

    async def remove(self, jid: JID) -> None:
        await as_future(self.removeItem(jid.userhostJID()))


class PresenceHandler(xmppim.PresenceProtocol):
    """Presence in and out, and subscription requests.

    Trigger points: ``presence_received(client, element)`` for every presence stanza before it
    is handled (False: consumed), ``presence_send(client, element)`` for every availability
    presence we send (plugins add elements: entity capabilities...).
    """

    def __init__(
        self,
        client: LiberviaClient,
        emit: Any,
        trigger: TriggerManager,
        actions: ActionManager | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.emit = emit
        self.trigger = trigger
        self.actions = actions
        #: bare JID -> the action asking the user about its subscription request
        self.requests: dict[str, Action] = {}
        #: bare JID -> resource -> (show, priority, statuses)
        self.statuses: dict[str, dict[str, tuple[str, int, dict[str, str]]]] = {}

    def availableReceived(self, presence: Any) -> None:  # noqa: N802 - wokkel's name
        self._update(presence, presence.show or "")

    def unavailableReceived(self, presence: Any) -> None:  # noqa: N802 - wokkel's name
        self._update(presence, "unavailable")

    def _update(self, presence: Any, show: str) -> None:
        sender: JID = presence.sender
        statuses = {lang or "": text for lang, text in (presence.statuses or {}).items()}
        # RFC 6121 §4.7.2.3: -128 to 127
        priority = max(-128, min(127, int(presence.priority or 0)))
        resources = self.statuses.setdefault(sender.userhost(), {})
        if show == "unavailable":
            resources.pop(sender.resource or "", None)
            if not resources:
                del self.statuses[sender.userhost()]
        else:
            resources[sender.resource or ""] = (show, priority, statuses)
        self.emit("presence_update", sender.full(), show, priority, statuses, self.client.profile)

    def subscribeReceived(self, presence: Any) -> None:  # noqa: N802 - wokkel's name
        sender: JID = presence.sender.userhostJID()
        roster = self.client.roster
        contact = roster.get(sender) if roster is not None else None
        if contact is not None and (contact.subscription_to or contact.ask):
            # we asked them: a request back is the other half of a mutual subscription
            log.info("%s: accepting subscription from %s", self.client.profile, sender)
            self.subscribed(sender)
            return
        data = {"type": "subscription", "subtype": "subscribe", "from_jid": sender.full()}
        if self.actions is None:
            self.emit("action_new", json.dumps(data), time_ordered_uuid(), 0, self.client.profile)
            return
        previous = self.requests.get(sender.full())
        if previous is not None and previous.pending:
            return  # the user is already being asked
        action = self.actions.new(self.client, data)
        self.requests[sender.full()] = action
        action.answer.add_done_callback(lambda f: self._request_answered(sender, action, f))

    def _request_answered(
        self, sender: JID, action: Action, future: asyncio.Future[dict[str, Any]]
    ) -> None:
        if self.requests.get(sender.full()) is not action:
            return  # already answered with subscription()
        del self.requests[sender.full()]
        if future.cancelled() or future.exception() is not None:
            return
        accept = future.result().get("accept")
        if not isinstance(accept, bool):
            log.warning(
                "%s: answer to the subscription request of %s has no boolean 'accept': ignored",
                self.client.profile,
                sender,
            )
            return
        self.answer("subscribed" if accept else "unsubscribed", sender)

    def send_presence(
        self, to: JID | None = None, show: str = "", statuses: dict[str, str] | None = None
    ) -> None:
        """Send an availability presence (``show`` among ``SHOW_VALUES``).

        Raises:
            InvalidInput: unknown ``show``.
        """
        if show not in SHOW_VALUES:
            raise InvalidInput(f"presence show must be one of {SHOW_VALUES}, not {show!r}")
        stanza = xmppim.AvailabilityPresence(
            recipient=to,
            show=show or None,
            statuses={(lang or None): text for lang, text in (statuses or {}).items()},
        )
        element = stanza.toElement()
        self.trigger.point("presence_send", self.client, element)
        self.send(element)

    def _onPresence(self, element: Any) -> None:  # noqa: N802 - wokkel's name
        """Parse a presence (wokkel's parsers) and hand it to the ``*Received`` method of its
        type. A malformed presence (no or invalid ``from``, invalid ``to``) is a logged
        rejection: no traceback, nothing emitted."""
        sender = element.getAttribute("from")
        if not sender:
            log.warning("%s: ignoring a presence without sender", self.client.profile)
            return
        try:
            parse_jid(sender)
            if element.hasAttribute("to"):
                parse_jid(element["to"])
        except PARSE_ERRORS as e:
            log.warning("%s: ignoring a presence with an invalid JID (from %r): %r",
                        self.client.profile, sender[:100], e)  # fmt: skip
            return
        if not self.trigger.point("presence_received", self.client, element):
            return
        presence_type = element.getAttribute("type") or "available"
        parser = self.presenceTypeParserMap.get(presence_type)
        if parser is None:
            log.info("%s: ignoring a presence of unknown type %r from %r", self.client.profile,
                     presence_type[:40], sender[:100])  # fmt: skip
            return
        try:
            presence = parser.fromElement(element)
        except PARSE_ERRORS as e:
            log.warning("%s: ignoring a malformed presence from %r: %r", self.client.profile,
                        sender[:100], e)  # fmt: skip
            return
        handler = getattr(self, f"{presence_type}Received", None)
        if handler is not None:
            handler(presence)

    def answer(self, sub_type: str, entity: JID) -> None:
        """Send a subscription presence (see ``SUBSCRIPTION_ANSWERS``)."""
        if sub_type not in SUBSCRIPTION_ANSWERS:
            raise InvalidInput(
                f"subscription type must be one of {SUBSCRIPTION_ANSWERS}, not {sub_type!r}"
            )
        entity = entity.userhostJID()
        request = self.requests.pop(entity.full(), None)
        if request is not None and request.pending and self.actions is not None:
            # answered without action_launch: the pending action is answered too
            accept = sub_type == "subscribed"
            self.actions.launch(self.client.profile, request.id, {"accept": accept})
        getattr(self, sub_type)(entity)
        if sub_type == "subscribed":
            contact = self.client.roster.get(entity) if self.client.roster else None
            if contact is None or not (contact.subscription_to or contact.ask):
                # accepting someone also asks for their presence (mutual subscription)
                self.subscribe(entity)


async def start_roster_and_presence(client: LiberviaClient) -> None:
    """After login: fetch the roster, then send the initial presence."""
    await client.roster.fetch()
    client.presence.send_presence()


def setup(
    client: LiberviaClient,
    emit: Any,
    trigger: TriggerManager | None = None,
    actions: ActionManager | None = None,
) -> None:
    """Attach the roster and presence handlers to a client.

    Subscription requests are asked through ``actions`` (``host.actions``); without it, only
    the ``action_new`` signal is emitted (answered with ``subscription``).
    """
    client.roster = RosterHandler(client, emit)
    client.roster.setHandlerParent(client)
    client.presence = PresenceHandler(client, emit, trigger or TriggerManager(), actions)
    client.presence.setHandlerParent(client)
