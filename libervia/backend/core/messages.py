"""Messages in and out: parsing, sending, the history and ``message_new``.

Flow of a received message: the stanza is parsed into a
:class:`~libervia.backend.memory.sqla.HistoryMessage`, the ``message_received`` trigger point
lets plugins read their elements (ids, delay, ...) or stop it, then the message is stored and
``message_new`` is emitted once it is in the history. A sent message goes through the
``message_send`` trigger point (plugins add elements: origin id...), is sent, stored and
signalled the same way.

Storage is write-behind with group commit (:class:`HistoryWriter`): a message is written at
once when the database is idle, and the messages arriving while a write is in progress are
written together by the next one. A write failing for a reason that may go away (disk full,
I/O error, lost database connection) never drops the messages: they are held in a bounded
queue and written again with backoff; ``history_error`` tells the frontends, and
``message_new`` follows once they are stored. One message costs one transaction at low rates
(latency), a burst costs one transaction per batch (throughput): a single ``add_to_history``
call takes ~4.5 ms on SQLite, a batch of 1,000 ~0.2 ms per message (doc/benchmarks.rst).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.log import get_logger
from libervia.backend.memory.sqla import HistoryMessage, Storage, is_transient_error
from libervia.backend.memory.sqla_mapping import MessageType
from libervia.backend.tools.jid import InvalidFormat, parse_jid

if TYPE_CHECKING:
    from libervia.backend.core.xmpp import LiberviaClient

log = get_logger(__name__)

NS_CLIENT = "jabber:client"
NS_XML = "http://www.w3.org/XML/1998/namespace"
SENDABLE_TYPES = ("chat", "normal", "groupchat", "headline")


#: messages kept in memory for another try while the history cannot be written (disk full,
#: I/O error, database unreachable); beyond it, new messages are dropped (and reported)
RETRY_QUEUE_MAX = 10_000
#: first delay before another try, in seconds; doubled after each failed try up to the maximum
RETRY_DELAY = 0.5
RETRY_DELAY_MAX = 30.0

#: the signal reporting the state of history writing (see MessageManager.setup_bridge)
HISTORY_ERROR_SIGNAL = "history_error"
HISTORY_ERROR_DOC = (
    "Writing the history failed or recovered (e.g. disk full). data is a serialised dict: "
    '"status" is "retrying" (the messages of "uids" are kept in memory and written again '
    'later; "message_new" follows once they are stored), "dropped" (the retry queue is full '
    'or the error is permanent: the messages of "uids" are not in the history; the server '
    'archive may still have them) or "recovered" (every waiting message is written); '
    '"error" is the reason, "pending" how many messages of the profile wait.'
)


@dataclass(eq=False)
class _Item:
    profile: str
    message: HistoryMessage
    future: asyncio.Future[bool | None]
    #: called once the message is stored, when it was held for another try
    on_stored: Callable[[], None] | None = None
    #: in the retry queue: the future was already resolved (None)
    held: bool = False


class HistoryWriter:
    """Write-behind history with group commit (see the module docstring), and a bounded retry
    queue for transient failures.

    When a write fails for a reason that may go away (:func:`is_transient_error`: disk full,
    I/O error, lost database connection), its messages are not dropped: they are held in
    memory (at most ``max_retry``) and written again after ``RETRY_DELAY`` seconds, doubled
    after each failed try up to ``RETRY_DELAY_MAX``. While messages are held, new messages
    join the queue without a write attempt (order is kept, and nothing newer than a held
    message is stored: the archive catch-up of a restarted daemon starts before them). Each
    change is told to ``report(profile, data)`` (the ``history_error`` signal) and logged.

    Args:
        storage: provides ``add_to_history``.
        clock: ``IReactorTime`` (``callLater``) of the retries; tests give a ``task.Clock``.
        report: ``report(profile, data)``; ``data`` as documented in :data:`HISTORY_ERROR_DOC`.
        max_retry: bound of the retry queue.
    """

    def __init__(
        self,
        storage: Storage,
        clock: Any = None,
        report: Callable[[str, dict[str, Any]], None] | None = None,
        max_retry: int = RETRY_QUEUE_MAX,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.report = report
        self.max_retry = max_retry
        self._pending: list[_Item] = []
        self._flusher: asyncio.Task[None] | None = None
        #: held messages, in arrival order
        self._retry: list[_Item] = []
        self._retry_call: Any = None
        self._retry_due = False
        self._delay = RETRY_DELAY
        #: profiles told "retrying"/"dropped" and not yet "recovered"
        self._failing: set[str] = set()
        self.error: str | None = None

    @property
    def held(self) -> int:
        """How many messages wait for another try."""
        return len(self._retry)

    async def store(
        self,
        profile: str,
        message: HistoryMessage,
        on_stored: Callable[[], None] | None = None,
    ) -> bool | None:
        """Store a message.

        Returns:
            True when stored, False when it was already in the history, None when the
            history cannot be written now and the message is held for another try:
            ``on_stored()`` is then called once it is stored.

        Raises:
            Exception: a permanent storage error (invalid message...), or the retry queue is
                full (then the error is also reported).
        """
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(profile, message, future, on_stored))
        self._start()
        return await future

    def _start(self) -> None:
        if self._flusher is None:
            self._flusher = background(self._flush(), "history write")

    async def drain(self) -> None:
        """Wait until every pending message is written (or held for another try)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def close(self) -> None:
        """Shutdown: try the held messages once more, then stop retrying; what is still held
        is logged as not written."""
        self._cancel_retry()
        if self._retry:
            self._retry_due = True
            self._start()
            await self.drain()
            self._cancel_retry()
        if self._retry:
            log.error(
                "%d received message(s) could not be written to the history (%s); the archive "
                "catch-up of the next start will fetch them again if the server archives them",
                len(self._retry),
                self.error,
            )

    def _cancel_retry(self) -> None:
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None

    async def _flush(self) -> None:
        try:
            while self._pending or self._retry_due:
                if self._retry_due:
                    self._retry_due = False
                    held, self._retry = self._retry, []
                    await self._write_groups(held)
                    if not self._retry:
                        self._recovered()
                    continue
                batch, self._pending = self._pending, []
                if self._retry:
                    # the history is failing: wait for the retry, keep the order
                    self._hold(batch, None)
                    continue
                await self._write_groups(batch)
        finally:
            self._flusher = None

    async def _write_groups(self, items: list[_Item]) -> None:
        by_profile: dict[str, list[_Item]] = {}
        for item in items:
            by_profile.setdefault(item.profile, []).append(item)
        for profile, group in by_profile.items():
            await self._write(profile, group)

    async def _write(self, profile: str, items: list[_Item]) -> None:
        try:
            stored = set(await self.storage.add_to_history([i.message for i in items], profile))
        except Exception as e:
            if is_transient_error(e):
                self._hold(items, e)
                return
            if len(items) > 1:
                # isolate the culprit: the other messages of the batch must not be lost
                for item in items:
                    await self._write(profile, [item])
                return
            self._fail(items[0], e)
            return
        for item in items:
            if item.held:
                if item.message.uid in stored and item.on_stored is not None:
                    try:
                        item.on_stored()
                    except Exception:
                        log.exception("%s: after storing a held message", profile)
            elif not item.future.done():
                item.future.set_result(item.message.uid in stored)

    def _fail(self, item: _Item, error: BaseException) -> None:
        if not item.held:
            if not item.future.done():
                item.future.set_exception(error)
            return
        log.error(
            "%s: a held message (%s) cannot be stored: %s", item.profile, item.message.uid, error
        )
        self._report(item.profile, "dropped", str(error), [item.message.uid])

    def _hold(self, items: list[_Item], error: BaseException | None) -> None:
        """Put messages in the retry queue (``error``: the failure, None when they join it
        without a write attempt)."""
        if error is not None:
            text = str(getattr(error, "orig", None) or error).strip()
            if self.error is None:
                log.error("the history cannot be written (%s): messages are held and retried", text)
            else:
                log.warning("the history still cannot be written (%s)", text)
            self.error = text
        room = max(self.max_retry - len(self._retry), 0)
        kept, dropped = items[:room], items[room:]
        by_profile: dict[str, tuple[list[str], list[str]]] = {}
        for item in kept:
            uids = by_profile.setdefault(item.profile, ([], []))[0]
            if not item.held:
                uids.append(item.message.uid)
                item.held = True
                if not item.future.done():
                    item.future.set_result(None)
        for item in dropped:
            by_profile.setdefault(item.profile, ([], []))[1].append(item.message.uid)
            full = HistoryQueueFull(
                f"the history cannot be written ({self.error}) and {self.max_retry} messages "
                "already wait: message dropped"
            )
            if item.held:
                log.error("%s: held message %s dropped", item.profile, item.message.uid)
            elif not item.future.done():
                item.future.set_exception(full)
        self._retry.extend(kept)
        for profile, (held, lost) in by_profile.items():
            if held:
                self._report(profile, "retrying", self.error or "", held)
            if lost:
                log.error("%s: retry queue full, %d message(s) not stored", profile, len(lost))
                self._report(profile, "dropped", f"retry queue full ({self.error})", lost)
        if error is not None:
            self._schedule(backoff=True)
        elif self._retry and self._retry_call is None:
            self._schedule(backoff=False)

    def _schedule(self, backoff: bool) -> None:
        if self._retry_call is not None and self._retry_call.active():
            return
        delay = self._delay
        if backoff:
            self._delay = min(self._delay * 2, RETRY_DELAY_MAX)
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor
        self._retry_call = self.clock.callLater(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry_call = None
        self._retry_due = True
        self._start()

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("the history is written again (it failed with: %s)", self.error)
        self.error = None
        self._delay = RETRY_DELAY
        for profile in sorted(self._failing):
            self._report(profile, "recovered", "", [])
        self._failing.clear()

    def _report(self, profile: str, status: str, error: str, uids: list[str]) -> None:
        if status == "recovered":
            pending = 0
        else:
            self._failing.add(profile)
            pending = sum(1 for i in self._retry if i.profile == profile)
        data = {"status": status, "error": error, "uids": uids, "pending": pending}
        if self.report is not None:
            try:
                self.report(profile, data)
            except Exception:
                log.exception("reporting a history error failed")


class HistoryQueueFull(Exception):
    """The history cannot be written and the retry queue is full: the message is dropped."""


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
        self.writer = HistoryWriter(host.storage, host.reactor, self._report_history)

    def setup_bridge(self) -> None:
        """Declare the ``history_error`` signal (see :data:`HISTORY_ERROR_DOC`)."""
        self.host.bridge.add_signal(
            HISTORY_ERROR_SIGNAL,
            (("data", "s", "serialised dict: status, error, uids, pending"), ("profile", "s")),
            HISTORY_ERROR_DOC,
        )

    def _report_history(self, profile: str, data: dict[str, Any]) -> None:
        self.host.bridge.emit(HISTORY_ERROR_SIGNAL, json.dumps(data), profile)

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
            await self.store_and_signal(client, msg)
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

        When the history cannot be written now (disk full...), the message is held for another
        try (:class:`HistoryWriter`; reported by ``history_error``) and False is returned:
        ``message_new`` is emitted once it is stored.

        Raises:
            Exception: the storage failed for good (e.g. an invalid message), or the retry
                queue is full.
        """
        profile = client.profile
        stored = await self.writer.store(
            profile,
            message,
            lambda: self.host.bridge.emit("message_new", *signal_args(message), profile),
        )
        if stored:
            self._emit(client, message)
            return True
        return False

    def _emit(self, client: LiberviaClient, msg: HistoryMessage) -> None:
        self.host.bridge.emit("message_new", *signal_args(msg), client.profile)
