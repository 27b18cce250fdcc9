"""Messages in and out: parsing, sending, the history and ``message_new``.

Flow of a received message: the stanza is parsed into a
:class:`~libervia.backend.memory.sqla.HistoryMessage`, the ``message_received`` trigger point
lets plugins read their elements (ids, delay, ...) or stop it, then the message is stored and
``message_new`` is emitted once it is in the history. A sent message goes through the
``message_send`` trigger point (plugins add elements: origin id...), is sent, stored and
signalled the same way.

Storage is write-behind with group commit (:class:`HistoryWriter`): a message is written at
once when the database is idle, and the messages arriving while a write is in progress are
written together by the next one. One message costs one transaction at low rates (latency), a
burst costs one transaction per batch (throughput): a single ``add_to_history`` call takes
~4.5 ms on SQLite, a batch of 1,000 ~0.2 ms per message (doc/benchmarks.rst).

Trigger points (see doc/developer.rst):

``message_send(client, message, element)``
    before sending; ``message`` is the HistoryMessage, ``element`` the stanza (domish). Return
    False to cancel the sending.
``message_received(client, element, message)``
    for every ``<message/>`` stanza received (also those without body: chat states,
    receipts...; then ``message`` has no text). Return False when the plugin consumed it.
    Messages forwarded inside a received stanza (carbons, archive results) go through it too,
    by :meth:`MessageManager.process`; their ``element.parent`` is then not None.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.log import get_logger
from libervia.backend.memory.sqla import HistoryMessage, Storage
from libervia.backend.memory.sqla_mapping import MessageType
from libervia.backend.tools.jid import InvalidFormat, parse_jid

if TYPE_CHECKING:
    from libervia.backend.core.xmpp import LiberviaClient

log = get_logger(__name__)

NS_CLIENT = "jabber:client"
NS_XML = "http://www.w3.org/XML/1998/namespace"
SENDABLE_TYPES = ("chat", "normal", "groupchat", "headline")


class HistoryWriter:
    """Write-behind history with group commit (see the module docstring)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._pending: list[tuple[str, HistoryMessage, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, profile: str, message: HistoryMessage) -> bool:
        """Store a message; True when stored, False when it was already in the history."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((profile, message, future))
        if self._flusher is None:
            self._flusher = background(self._flush(), "history write")
        return await future

    async def drain(self) -> None:
        """Wait until every pending message is written."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                by_profile: dict[str, list[tuple[HistoryMessage, asyncio.Future[bool]]]] = {}
                for profile, message, future in batch:
                    by_profile.setdefault(profile, []).append((message, future))
                for profile, items in by_profile.items():
                    await self._write(profile, items)
        finally:
            self._flusher = None

    async def _write(
        self, profile: str, items: list[tuple[HistoryMessage, asyncio.Future[bool]]]
    ) -> None:
        try:
            stored = set(await self.storage.add_to_history([m for m, _ in items], profile))
        except Exception as e:
            if len(items) > 1:
                # isolate the culprit: the other messages of the batch must not be lost
                for item in items:
                    await self._write(profile, [item])
                return
            if not items[0][1].done():
                items[0][1].set_exception(e)
            return
        for message, future in items:
            if not future.done():
                future.set_result(message.uid in stored)


def _texts(element: domish.Element, name: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for child in element.elements(NS_CLIENT, name):
        lang = child.getAttribute((NS_XML, "lang")) or ""
        texts[lang] = str(child)
    return texts


def parse_message(element: domish.Element, own_jid: JID, now: float) -> HistoryMessage:
    """Build the HistoryMessage of a received ``<message/>`` stanza.

    Raises:
        InvalidInput: invalid ``from``/``to`` or type.
    """
    mess_type = element.getAttribute("type") or "normal"
    try:
        type_ = MessageType(mess_type)
    except ValueError:
        raise InvalidInput(f"unknown message type {mess_type!r}") from None
    if type_ is MessageType.INFO:
        raise InvalidInput("type 'info' is local only")
    try:
        source = parse_jid(element["from"]) if element.hasAttribute("from") else own_jid
        dest = parse_jid(element["to"]) if element.hasAttribute("to") else own_jid
    except (InvalidFormat, UnicodeError, ValueError, RuntimeError) as e:
        raise InvalidInput(f"invalid JID in a message: {e}") from None
    thread = next(element.elements(NS_CLIENT, "thread"), None)
    return HistoryMessage(
        source=source,
        dest=dest,
        timestamp=now,
        received_timestamp=None,
        type=type_,
        message=_texts(element, "body"),
        subject=_texts(element, "subject"),
        stanza_id=None,
        origin_id=None,
        thread=str(thread) if thread is not None and str(thread) else None,
        thread_parent=thread.getAttribute("parent") if thread is not None else None,
    )


def build_message(message: HistoryMessage) -> domish.Element:
    """The ``<message/>`` stanza of a message to send (its id is the message uid)."""
    element = domish.Element((NS_CLIENT, "message"))
    element["to"] = message.dest.full()
    element["type"] = str(message.type)
    element["id"] = message.uid
    for name, texts in (("subject", message.subject), ("body", message.message)):
        for lang, text in texts.items():
            child = element.addElement(name, content=text)
            if lang:
                child[(NS_XML, "lang")] = lang
    if message.thread:
        thread = element.addElement("thread", content=message.thread)
        if message.thread_parent:
            thread["parent"] = message.thread_parent
    return element


def _check_texts(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f"{what} must map a language code to a text")
    return dict(value)


def signal_args(message: HistoryMessage) -> tuple[Any, ...]:
    """The arguments of ``message_new`` (and items of ``history_get``), without the profile."""
    extra = dict(message.extra)
    for key in ("stanza_id", "origin_id", "received_timestamp", "thread", "thread_parent"):
        value = getattr(message, key)
        if value is not None:
            extra[key] = value
    return (
        message.uid,
        message.timestamp,
        message.source.full(),
        message.dest.full(),
        message.message,
        message.subject,
        str(message.type),
        json.dumps(extra),
    )


class MessageHandler(XMPPHandler):
    """Feeds the ``<message/>`` stanzas of a client to the message manager."""

    def __init__(self, manager: MessageManager, client: LiberviaClient) -> None:
        super().__init__()
        self.manager = manager
        self.client = client

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        self.xmlstream.addObserver("/message", self._on_message)

    def _on_message(self, element: domish.Element) -> None:
        background(self.manager.received(self.client, element), "message received")


class MessageManager:
    """Sending and receiving messages for every profile of a host.

    Args:
        host: provides ``storage``, ``trigger``, ``bridge`` (``emit``) and ``reactor``.
    """

    def __init__(self, host: Any) -> None:
        self.host = host
        self.writer = HistoryWriter(host.storage)

    def setup(self, client: LiberviaClient) -> None:
        MessageHandler(self, client).setHandlerParent(client)

    def _now(self) -> float:
        return float(self.host.reactor.seconds())

    async def send(
        self,
        client: LiberviaClient,
        to: JID,
        message: Mapping[str, str],
        subject: Mapping[str, str] | None = None,
        mess_type: str = "auto",
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Send a message, store it and emit ``message_new``; returns its uid.

        Raises:
            InvalidInput: bad type, texts, or nothing to send.
            NotConnected: the profile is not connected.
        """
        if mess_type in ("", "auto"):
            mess_type = "chat"
        if mess_type not in SENDABLE_TYPES:
            raise InvalidInput(f"message type must be one of {SENDABLE_TYPES}, not {mess_type!r}")
        texts = _check_texts(message, "message")
        subjects = _check_texts(subject or {}, "subject")
        if not any(texts.values()) and not any(subjects.values()):
            raise InvalidInput("the message has neither text nor subject")
        if extra is not None and not isinstance(extra, Mapping):
            raise InvalidInput("extra must be a dict")
        msg = HistoryMessage(
            source=client.jid,
            dest=to,
            timestamp=self._now(),
            type=MessageType(mess_type),
            message={k: v for k, v in texts.items() if v},
            subject={k: v for k, v in subjects.items() if v},
            extra=dict(extra or {}),
        )
        element = build_message(msg)
        if not await self.host.trigger.async_point("message_send", client, msg, element):
            return msg.uid
        client.send(element)
        if msg.type is not MessageType.GROUPCHAT:
            # a groupchat message is stored when the room echoes it back
            if await self.writer.store(client.profile, msg):
                self._emit(client, msg)
        return msg.uid

    async def received(self, client: LiberviaClient, element: domish.Element) -> None:
        """Handle a received ``<message/>`` stanza (never raises: bad input is logged)."""
        msg = await self.process(client, element)
        if msg is None:
            return
        if msg.type is MessageType.ERROR:
            log.info("%s: error message from %s", client.profile, msg.source.full())
            self._emit(client, msg)
            return
        if not msg.message and not msg.subject:
            return  # nothing for the history (chat state, receipt...)
        try:
            await self.store_and_signal(client, msg)
        except Exception:
            log.exception("%s: a received message could not be stored", client.profile)

    async def process(
        self, client: LiberviaClient, element: domish.Element
    ) -> HistoryMessage | None:
        """Parse a ``<message/>`` and run the ``message_received`` trigger point on it.

        Also for messages forwarded inside another stanza (carbons, archive results: then
        ``element.parent`` is not None, which plugins handling wrappers check).

        Returns:
            the message, or None when it is malformed (logged) or a plugin consumed it.
        """
        try:
            msg = parse_message(element, client.jid, self._now())
        except (InvalidInput, KeyError) as e:
            log.warning("%s: ignoring a malformed message: %s", client.profile, e)
            return None
        if not await self.host.trigger.async_point("message_received", client, element, msg):
            return None
        return msg

    async def store_and_signal(self, client: LiberviaClient, message: HistoryMessage) -> bool:
        """Store a message (group commit) and emit ``message_new`` if it was not already in the
        history; True when stored.

        Raises:
            Exception: the storage failed (e.g. an invalid message).
        """
        if await self.writer.store(client.profile, message):
            self._emit(client, message)
            return True
        return False

    def _emit(self, client: LiberviaClient, msg: HistoryMessage) -> None:
        self.host.bridge.emit("message_new", *signal_args(msg), client.profile)
