"""XEP-0313: Message Archive Management, with XEP-0059 result set paging.

Catch-up: at each connection (in the background: the ``connected`` signal does not wait for
it), when our server archives our messages, the messages archived since the last one we have
are fetched and stored: those received and sent (by any of our devices) while we were
offline. The query starts after the most recent stored message having a stanza id from our
archive (RSM ``<after>`` with that id: plain ``urn:xmpp:mam:2``, no extended feature needed);
with an empty history, it starts ``mam_catch_up_days`` days ago (``libervia.conf``, default
14; the whole window is fetched, page after page, until the server says it is complete). If
the archive no longer has our last message (``item-not-found``: expired), the catch-up starts
from its time instead. Progress is saved after each stored page (private value ``catch_up`` of
namespace ``XEP-0313``, removed once complete): a catch-up interrupted by a lost connection
goes on from there at the next connection, although messages received live meanwhile (with
newer stanza ids) are already in the history.

Each archived message goes through the ``message_received`` flow, is stored with the archive
id as its stanza id (trusted: it comes from our own server's archive) and the archive time as
timestamp, and ``message_new`` is emitted for every message that was not in the history yet
(frontends see what was missed). Duplicates (messages already received live, our own sent
messages with their origin ids) are skipped by the history's unique constraints. A page is
stored (one group commit) while the next one is requested.

Archive results are only accepted from the archive we asked (our bare JID for our own
archive): anyone else can send a message looking like an archive result; such results are
ignored and logged.

``mam_get`` (bridge) queries an archive directly and returns the messages without storing
them (``li message mam``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput, LiberviaError, NotConnected, XMPPError
from libervia.backend.core.log import get_logger
from libervia.backend.core.messages import signal_args
from libervia.backend.core.xmpp import make_iq, parse_jid_arg

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Message Archive Management",
    "import_name": "XEP-0313",
    "type": "XEP",
    "protocols": ["XEP-0313", "XEP-0059"],
    "dependencies": ["XEP-0030", "XEP-0297"],
    "recommendations": ["XEP-0359", "XEP-0280"],
    "main": "XEP_0313",
    "handler": True,
    "description": "Catch up with the server archive at connection; query archives",
}

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
#: messages asked per page (servers may answer fewer: Prosody's default cap is 50)
PAGE_SIZE = 100
#: with an empty history, the catch-up fetches this many days (option mam_catch_up_days)
CATCH_UP_DAYS = 14
#: before the XEP-0359 (100) and XEP-0203 (90) callbacks: result wrappers are consumed here
TRIGGER_PRIORITY = 900
MAX_ID_LENGTH = 255
QUERIES_KEY = "XEP-0313_queries"
#: private values (per profile) of the plugin: the starting point of an unfinished catch-up
PRIVATE_NS = "XEP-0313"
CHECKPOINT_KEY = "catch_up"
#: client.extra key: the catch-up task of the session
TASK_KEY = "XEP-0313_catch_up"
#: filters of mam_get: data form fields, and RSM
FORM_FILTERS = ("with", "start", "end")
RSM_FILTERS = ("before", "after", "max")


def xmpp_datetime(timestamp: float) -> str:
    """XEP-0082 date-time (UTC)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Query:
    service: JID
    results: list[tuple[str, domish.Element]] = field(default_factory=list)


@dataclass
class Page:
    """One page of archive results: (archive id, ``<forwarded/>``) and the RSM metadata."""

    results: list[tuple[str, domish.Element]]
    first: str | None = None
    last: str | None = None
    count: int | None = None
    complete: bool = False


class XEP_0313:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self._ids = 0
        host.trigger.add("message_received", self._on_received, priority=TRIGGER_PRIORITY)
        host.bridge.add_method(
            "mam_get",
            self._mam_get,
            args=[
                ("service", "s", "the archive (empty: ours)"),
                (
                    "filters",
                    "a{ss}",
                    "with (JID), start, end (seconds since the epoch), max (page size), "
                    "before, after (archive ids; before empty: the last page)",
                ),
                ("profile_key", "s"),
            ],
            returns="(a(sdssa{ss}a{ss}ss)a{ss})",
            doc="Query a message archive (XEP-0313); the messages are not stored. Returns the "
            "messages as history_get gives them (the archive id is the extra's stanza_id) and "
            "the page: first, last (archive ids), count, complete.",
        )

    def get_handler(self, client: Any) -> Any:
        return ResultCollector(client)

    def profile_connected(self, client: Any) -> None:
        client.extra[TASK_KEY] = background(self._catch_up(client), f"MAM {client.profile}")

    async def _catch_up(self, client: Any) -> int:
        try:
            own = JID(client.jid.userhost())
            if not await self.host.plugins["XEP-0030"].has_feature(client, NS_MAM, own):
                log.info("%s: no message archive on the server", client.profile)
                return 0
            count = await self.catch_up(client)
        except NotConnected as e:
            log.info("%s: archive catch-up interrupted: %s", client.profile, e)
            return 0
        except LiberviaError as e:
            log.warning("%s: archive catch-up failed: %s", client.profile, e)
            return 0
        log.info("%s: %d messages caught up from the archive", client.profile, count)
        return count

    # --- catch-up -----------------------------------------------------------------------------

    async def catch_up(self, client: Any) -> int:
        """Store the messages archived since the last one we have; how many were new.

        Raises:
            XMPPError, OperationTimeout, NotConnected: see LiberviaClient.send_iq.
        """
        storage = self.host.storage
        profile = client.profile
        saved = (await storage.get_privates(PRIVATE_NS, [CHECKPOINT_KEY], profile=profile)).get(
            CHECKPOINT_KEY
        )
        last = await storage.history_get(profile, last_stanza_id=True)
        filters: dict[str, str] = {}
        after: str | None = None
        if isinstance(saved, dict):
            # an unfinished catch-up: go on from where it stopped (messages received live
            # meanwhile are newer than the gap: starting after them would skip it)
            after = saved.get("after") or None
            if saved.get("start"):
                filters["start"] = saved["start"]
            last = []
        elif last:
            after = last[0].stanza_id
        else:
            days = self.host.config.get_int("mam_catch_up_days", CATCH_UP_DAYS)
            filters["start"] = xmpp_datetime(client.reactor.seconds() - days * 86400)

        async def checkpoint(page_after: str | None) -> None:
            value = {"after": page_after, "start": filters.get("start")}
            await storage.set_private_value(PRIVATE_NS, CHECKPOINT_KEY, value, profile=profile)

        await checkpoint(after)
        stored = 0
        pending: tuple[asyncio.Future[list[bool]], str | None] | None = None
        try:
            while True:
                # once paging from an id, the time filter is redundant
                query_filters = filters if after is None else {}
                try:
                    page = await self.query(client, None, query_filters, PAGE_SIZE, after=after)
                except XMPPError as e:
                    if e.condition != "item-not-found" or not last or after != last[0].stanza_id:
                        raise
                    log.info("%s: the archive lost our last message, by time", profile)
                    filters["start"] = xmpp_datetime(last[0].timestamp)
                    after = None
                    await checkpoint(after)
                    continue
                log.debug(
                    "%s: archive page of %d after %s (complete: %s, last %s)",
                    profile,
                    len(page.results),
                    after,
                    page.complete,
                    page.last,
                )
                messages = [
                    m
                    for m in [await self.to_message(client, None, *r) for r in page.results]
                    if m is not None and (m.message or m.subject) and str(m.type) != "error"
                ]
                if pending is not None:
                    stored += sum(await pending[0])
                    await checkpoint(pending[1])
                stores = asyncio.gather(
                    *(self.host.messages.store_and_signal(client, m) for m in messages)
                )
                pending = (stores, page.last or after)
                if page.complete or not page.results or not page.last or page.last == after:
                    break
                after = page.last
            stored += sum(await pending[0])
            pending = None
            await storage.del_private_value(PRIVATE_NS, CHECKPOINT_KEY, profile=profile)
        finally:
            if pending is not None:
                # interrupted: what was received is still stored, and the checkpoint follows
                done = await asyncio.gather(pending[0], return_exceptions=True)
                if not any(isinstance(r, BaseException) for r in done):
                    try:
                        await checkpoint(pending[1])
                    except Exception:
                        log.exception("%s: archive checkpoint not saved", profile)
        return stored

    # --- queries ------------------------------------------------------------------------------

    async def query(
        self,
        client: Any,
        service: JID | None,
        filters: Mapping[str, str] | None = None,
        max_items: int | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> Page:
        """One page of an archive (ours when ``service`` is None).

        ``filters``: data form fields (``with``, ``start``, ``end``: XEP-0082 date-times);
        ``before=""`` asks for the last page.

        Raises:
            XMPPError, OperationTimeout, NotConnected: see LiberviaClient.send_iq.
        """
        self._ids += 1
        query_id = f"q{self._ids}"
        iq = make_iq("set", service)
        query = iq.addElement((NS_MAM, "query"))
        query["queryid"] = query_id
        if filters:
            form = query.addElement((NS_DATA, "x"))
            form["type"] = "submit"
            hidden = form.addElement("field")
            hidden["var"], hidden["type"] = "FORM_TYPE", "hidden"
            hidden.addElement("value", content=NS_MAM)
            for var, value in filters.items():
                form_field = form.addElement("field")
                form_field["var"] = var
                form_field.addElement("value", content=value)
        if max_items is not None or after is not None or before is not None:
            rsm = query.addElement((NS_RSM, "set"))
            if max_items is not None:
                rsm.addElement("max", content=str(max_items))
            if after is not None:
                rsm.addElement("after", content=after)
            if before is not None:
                rsm.addElement("before", content=before)
        expected = service if service is not None else JID(client.jid.userhost())
        pending = _Query(expected)
        queries: dict[str, _Query] = client.extra.setdefault(QUERIES_KEY, {})
        queries[query_id] = pending
        try:
            answer = await client.send_iq(iq)
        finally:
            del queries[query_id]
        page = Page(pending.results)
        fin = next(answer.elements(NS_MAM, "fin"), None)
        if fin is not None:
            page.complete = fin.getAttribute("complete") in ("true", "1")
            rsm_set = next(fin.elements(NS_RSM, "set"), None)
            if rsm_set is not None:
                texts = {
                    child.name: str(child) for child in rsm_set.elements() if child.uri == NS_RSM
                }
                page.first = texts.get("first") or None
                page.last = texts.get("last") or None
                count = texts.get("count", "")
                if count.isascii() and count.isdigit():
                    page.count = int(count)
        return page

    async def to_message(
        self, client: Any, service: JID | None, archive_id: str, forwarded: domish.Element
    ) -> Any:
        """The HistoryMessage of an archive result (None when invalid or consumed)."""
        inner = next(forwarded.elements("jabber:client", "message"), None)
        if inner is None:
            return None
        own = client.jid.userhost()
        if service is None:
            sides = {inner.getAttribute("from"), inner.getAttribute("to")}
            if not any(_bare(s) == own for s in sides if s):
                log.warning("%s: an archived message neither from nor to us", client.profile)
                return None
        msg = await self.host.messages.process(client, inner)
        if msg is None:
            return None
        stamp = self.host.plugins["XEP-0297"].delay_stamp(forwarded)
        if stamp is not None:
            if msg.received_timestamp is None:
                msg.received_timestamp = msg.timestamp
            msg.timestamp = stamp
        if archive_id and len(archive_id) <= MAX_ID_LENGTH:
            # our archive's ids are the stanza ids of our messages; a room's, of its messages
            if service is None or str(msg.type) == "groupchat":
                msg.stanza_id = archive_id
        return msg

    def _on_received(self, client: Any, element: domish.Element, message: Any) -> bool:
        # results are collected by ResultCollector: the wrapper is never a message of its own
        return next(element.elements(NS_MAM, "result"), None) is None

    # --- bridge -------------------------------------------------------------------------------

    async def _mam_get(
        self, service: str, filters: Mapping[str, str], profile_key: str
    ) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
        client = await self.host.client_of(profile_key)
        target = parse_jid_arg(service, "service") if service else None
        unknown = set(filters) - set(FORM_FILTERS) - set(RSM_FILTERS)
        if unknown:
            raise InvalidInput(f"unknown filters {sorted(unknown)}")
        form: dict[str, str] = {}
        if filters.get("with"):
            form["with"] = parse_jid_arg(filters["with"], "with").full()
        for name in ("start", "end"):
            if filters.get(name):
                try:
                    form[name] = xmpp_datetime(float(filters[name]))
                except (ValueError, OverflowError, OSError):
                    raise InvalidInput(f"{name}: seconds since the epoch expected") from None
        max_items = None
        if filters.get("max"):
            try:
                max_items = int(filters["max"])
                if max_items < 0:
                    raise ValueError
            except ValueError:
                raise InvalidInput("max: a number of messages expected") from None
        page = await self.query(
            client,
            target,
            form,
            max_items,
            after=filters.get("after") or None,
            before=filters.get("before"),
        )
        rows = []
        for archive_id, forwarded in page.results:
            msg = await self.to_message(client, target, archive_id, forwarded)
            if msg is not None:
                msg.stanza_id = archive_id
                rows.append(signal_args(msg))
        meta = {"complete": "true" if page.complete else "false"}
        for name in ("first", "last", "count"):
            value = getattr(page, name)
            if value is not None:
                meta[name] = str(value)
        return rows, meta


def _bare(value: str) -> str | None:
    try:
        return JID(value).userhost()
    except Exception:
        return None


class ResultCollector(XMPPHandler):
    """Collects the results of our pending archive queries, in the order they arrive (before
    the answer to the query, on the same stream)."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        self.xmlstream.addObserver(f"/message/result[@xmlns='{NS_MAM}']", self._on_result)

    def _on_result(self, element: domish.Element) -> None:
        result = next(element.elements(NS_MAM, "result"))
        queries: dict[str, _Query] = self.client.extra.get(QUERIES_KEY, {})
        query = queries.get(result.getAttribute("queryid") or "")
        if query is None:
            log.info("%s: ignoring an archive result of no query of ours", self.client.profile)
            return
        sender = element.getAttribute("from")
        try:
            from_ = JID(sender) if sender else JID(self.client.jid.userhost())
        except Exception:
            from_ = None
        if from_ != query.service:
            log.warning(
                "%s: ignoring a spoofed archive result from %s", self.client.profile, sender
            )
            return
        forwarded = next(result.elements("urn:xmpp:forward:0", "forwarded"), None)
        if forwarded is None:
            return
        query.results.append((result.getAttribute("id") or "", forwarded))
