"""The transparent pubsub cache: nodes and items kept in the database, reads served locally.

How it works (the contract, also in ``doc/developer.rst``):

- When items are requested (trigger point ``XEP-0060_items``), the cache checks whether the
  node is, or must be, cached. A synchronised node is answered from the database (RSM paging
  and ordering included): no request leaves the client. Otherwise the normal flow goes on and
  the service is asked.
- Whether a node must be synchronised is decided by *analysers* (:meth:`register_analyser`):
  the first one matching the node decides. If none matches, if it says ``to_sync: False``, or if
  anything fails while caching, the node is not synchronised and the service is always asked
  (an error is logged once per node and session, never raised to the caller).
- Synchronising a node: subscribe to it, retrieve all its items (paging with RSM), store them
  (raw XML always, plus the analyser's ``parser`` output in the ``parsed`` JSON column), then
  mark it ``completed``. States: ``in_progress``, ``completed``, ``error``, ``no_sync``.
- Notifications (trigger point ``XEP-0060_event``: new items, retractions, purge, deletion)
  keep synchronised nodes up to date; those arriving during a synchronisation are applied
  after it. The node type of the analyser becomes the ``category`` of the ``ps_event`` signal.
- At each connection, the synchronised nodes of the profile are checked in the background:
  when the newest page of items or the item count differs from the cache (something changed
  while we were offline), the node is synchronised again. Nodes left ``in_progress`` (the
  daemon stopped during a synchronisation) are synchronised again too.

Bridge: ``ps_cache_get``, ``ps_cache_sync``, ``ps_cache_purge``, ``ps_cache_reset``,
``ps_cache_search``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput, NotFound, XMPPError
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import parse_jid_arg
from libervia.backend.memory.sqla_mapping import PubsubItem, PubsubNode, SyncState
from libervia.backend.plugins.plugin_xep_0059 import RSMRequest, RSMResponse
from libervia.backend.plugins.plugin_xep_0060 import (
    NS_PUBSUB,
    WHOLE_NODE_MAX,
    ItemsRequest,
    ItemsResult,
)
from libervia.backend.plugins.plugin_xep_0060.bridge import items_result, json_arg
from libervia.backend.plugins.plugin_xep_0060.events import (
    DELETE,
    ITEMS,
    PURGE,
    RETRACT,
    Event,
)
from libervia.backend.tools import xml as xml_tools

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Pubsub Cache",
    "import_name": "PUBSUB_CACHE",
    "type": "EXP",
    "protocols": [],
    "dependencies": ["XEP-0059", "XEP-0060"],
    "main": "PubsubCache",
    "handler": False,
    "description": "Cache pubsub nodes and items locally, answer reads from the database",
}

#: items asked per page while synchronising
SYNC_PAGE_SIZE = 500
#: a node with more items than this is not synchronised (marked in error)
MAX_SYNC_ITEMS = 100_000
#: items a ps_cache_search answers when the query has no limit, and at most
SEARCH_DEFAULT_LIMIT = 100
SEARCH_MAX = 10_000
#: the newest items compared at reconnection to detect a node changed while offline
CHECK_PAGE_SIZE = 20
ANALYSER_KEYS = frozenset(
    {"name", "type", "subtype", "node", "node_match", "namespace", "to_sync", "parser",
     "match_cb", "priority"}
)  # fmt: skip

Analyser = dict[str, Any]
NodeKey = tuple[str, str, str]


@dataclass
class _NodeState:
    """In-memory state of a node being synchronised."""

    task: asyncio.Task[Any] | None = None
    pending: list[Event] = field(default_factory=list)


def payload_namespace(item: domish.Element) -> str | None:
    """The namespace of an item's payload (its first child element)."""
    for child in item.elements():
        return str(child.uri) if child.uri else None
    return None


def normalised_item(item: domish.Element) -> domish.Element:
    """The item as ``<item xmlns='http://jabber.org/protocol/pubsub'/>`` (notifications carry
    it in the ``pubsub#event`` namespace): a cached item reads the same however it came."""
    if item.uri == NS_PUBSUB:
        return item
    copy = domish.Element((NS_PUBSUB, "item"))
    for name, value in item.attributes.items():
        copy[name] = value
    for child in item.children:
        if isinstance(child, domish.Element):
            copy.addChild(child)
    return copy


class CacheError(Exception):
    """Synchronisation failed (the node is marked in error)."""


class PubsubCache:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.ps = host.plugins["XEP-0060"]
        self.analysers: list[Analyser] = []
        #: nodes being synchronised
        self._syncing: dict[NodeKey, _NodeState] = {}
        #: nodes already found uncacheable this session (logged once)
        self._uncached: set[NodeKey] = set()
        host.trigger.add("XEP-0060_items", self._on_items_request, priority=500)
        host.trigger.add("XEP-0060_event", self._on_event, priority=500)
        self._register_bridge(host.bridge)

    # --- analysers ----------------------------------------------------------------------------

    def register_analyser(self, analyser: dict[str, Any]) -> None:
        """Register an analyser: which nodes to cache, how to parse their items.

        Keys:

        ``name`` (str, required, unique)
            name of the analyser (stored with the node).
        ``type``, ``subtype`` (str)
            the kind of data of the node (e.g. ``blog``); the type is the ``category`` of
            ``ps_event`` notifications and a filter of searches and purges.
        ``node`` (str)
            the node name; matched exactly, or as a prefix when ``node_match`` is
            ``"prefix"``.
        ``namespace`` (str)
            namespace of the items' payload, checked on a sample item (the first item of the
            node; a node without items does not match).
        ``to_sync`` (bool, default False)
            whether matching nodes are synchronised (fully cached).
        ``parser`` (callable, optional)
            ``parser(item: domish.Element) -> dict | None``: parsed data of an ``<item/>``,
            stored as JSON next to the raw XML (searchable by key). A parser that raises marks
            the node in error: it is then always read from the service.
        ``match_cb`` (callable, optional)
            ``match_cb(client, analyser, service, node, sample_item) -> bool``: custom match,
            after the checks above (``sample_item`` may be None).
        ``priority`` (int, default 0)
            analysers are checked by decreasing priority, then registration order.

        Raises:
            InvalidInput: unknown key, missing name, name already registered, or a value of
                the wrong type.
        """
        if not isinstance(analyser, dict):
            raise InvalidInput("an analyser is a dict")
        unknown = set(analyser) - ANALYSER_KEYS
        if unknown:
            raise InvalidInput(f"unknown analyser keys {sorted(unknown)}")
        name = analyser.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput("an analyser needs a name")
        if any(a["name"] == name for a in self.analysers):
            raise InvalidInput(f"an analyser named {name!r} is already registered")
        for key in ("type", "subtype", "node", "namespace"):
            if analyser.get(key) is not None and not isinstance(analyser[key], str):
                raise InvalidInput(f"analyser {name}: {key} must be a string")
        if analyser.get("node_match", "exact") not in ("exact", "prefix"):
            raise InvalidInput(f"analyser {name}: node_match is 'exact' or 'prefix'")
        if not isinstance(analyser.get("to_sync", False), bool):
            raise InvalidInput(f"analyser {name}: to_sync must be a boolean")
        for key in ("parser", "match_cb"):
            if analyser.get(key) is not None and not callable(analyser[key]):
                raise InvalidInput(f"analyser {name}: {key} must be callable")
        if not isinstance(analyser.get("priority", 0), int):
            raise InvalidInput(f"analyser {name}: priority must be an integer")
        if not (analyser.get("node") or analyser.get("namespace") or analyser.get("match_cb")):
            raise InvalidInput(f"analyser {name}: needs node, namespace or match_cb")
        self.analysers.append(dict(analyser))
        self.analysers.sort(key=lambda a: -int(a.get("priority", 0)))

    def _name_matches(self, analyser: Analyser, node: str) -> bool:
        wanted = analyser.get("node")
        if not wanted:
            return True
        if analyser.get("node_match", "exact") == "prefix":
            return node.startswith(wanted)
        return bool(node == wanted)

    def analyser_for_name(self, node: str) -> Analyser | None:
        """The first analyser matching a node name (without checking items)."""
        return next(
            (a for a in self.analysers if a.get("node") and self._name_matches(a, node)), None
        )

    async def analyse(self, client: Any, service: JID, node: str) -> Analyser | None:
        """The analyser deciding for a node (None when no analyser matches).

        Raises:
            Exception: the sample item could not be retrieved.
        """
        sample: domish.Element | None = None
        sampled = False
        for analyser in self.analysers:
            if not self._name_matches(analyser, node):
                continue
            if analyser.get("namespace") or analyser.get("match_cb"):
                if not sampled:
                    page = await self.ps.get_items(client, service, node, 1, use_cache=False)
                    sample = page.items[0] if page.items else None
                    sampled = True
                if analyser.get("namespace") and (
                    sample is None or payload_namespace(sample) != analyser["namespace"]
                ):
                    continue
                match_cb = analyser.get("match_cb")
                if match_cb is not None and not match_cb(client, analyser, service, node, sample):
                    continue
            return analyser
        return None

    def _analyser_named(self, name: str | None) -> Analyser | None:
        return next((a for a in self.analysers if a["name"] == name), None)

    # --- reads --------------------------------------------------------------------------------

    def _key(self, client: Any, service: JID, node: str) -> NodeKey:
        return (client.profile, service.userhost() if not service.resource else service.full(),
                node)  # fmt: skip

    async def _on_items_request(self, client: Any, request: ItemsRequest) -> bool:
        """Trigger ``XEP-0060_items``: answer from the database when the node is synchronised;
        start the synchronisation of a node that must be."""
        key = self._key(client, request.service, request.node)
        if key in self._uncached or key in self._syncing:
            return True
        try:
            node = await self.host.storage.get_pubsub_node(
                client.profile, request.service, request.node
            )
        except Exception as e:
            self._give_up(key, f"cannot read the cache: {e!r}")
            return True
        if node is None:
            try:
                await self._first_request(client, request.service, request.node)
            except Exception as e:
                # e.g. the node does not exist (yet): the service answers the request itself
                self._give_up(key, f"analysis failed: {e}")
            return True
        if node.sync_state is not SyncState.COMPLETED:
            return True
        try:
            request.result = await self.read(node, request)
        except (NotFound, InvalidInput):
            # e.g. RSM "after" an item the node does not have: the service gives its own error
            return True
        except Exception as e:
            self._give_up(key, f"cannot read the cache: {e!r}")
            return True
        return False

    async def read(self, node: PubsubNode, request: ItemsRequest) -> ItemsResult:
        """Answer an items request from the cached items of a synchronised node, in the
        service's order (oldest first; ``max_items`` alone: the most recent ones)."""
        rsm = request.rsm
        if rsm is None and request.max_items is not None and not request.item_ids:
            rsm = RSMRequest(max=request.max_items, before="")
        max_items = request.max_items
        if rsm is not None and rsm.max is not None:
            max_items = rsm.max
        items, meta = await self.host.storage.get_items(
            node,
            max_items=max_items,
            item_ids=request.item_ids,
            before=rsm.before if rsm else None,
            after=rsm.after if rsm else None,
            from_index=rsm.index if rsm else None,
            # a node's own order is by last publication: a republished item moves to the end
            order_by=request.order_by or "modification",
            desc=False,
        )
        complete = meta.index is None or meta.index + len(items) >= meta.count
        return ItemsResult(
            [item.data for item in items],
            RSMResponse(first=meta.first, last=meta.last, index=meta.index, count=meta.count),
            complete,
            cached=True,
        )

    async def _first_request(self, client: Any, service: JID, node_name: str) -> None:
        """A node never seen: analyse it, and synchronise it in the background if needed."""
        key = self._key(client, service, node_name)
        analyser = await self.analyse(client, service, node_name)
        if analyser is None:
            self._uncached.add(key)
            return
        node = await self.host.storage.set_pubsub_node(
            client.profile,
            service,
            node_name,
            analyser=analyser["name"],
            type_=analyser.get("type"),
            subtype=analyser.get("subtype"),
        )
        if not analyser.get("to_sync"):
            await self.host.storage.update_pubsub_node_sync_state(node, SyncState.NO_SYNC)
            return
        self.start_sync(client, node)

    def _give_up(self, key: NodeKey, reason: str) -> None:
        if key not in self._uncached:
            log.warning("%s: pubsub node %s on %s not cached: %s", key[0], key[2], key[1], reason)
        self._uncached.add(key)

    # --- synchronisation ----------------------------------------------------------------------

    def start_sync(self, client: Any, node: PubsubNode) -> asyncio.Task[Any]:
        """Synchronise a node in the background (the running synchronisation if any)."""
        key = self._key(client, node.service, node.name)
        state = self._syncing.get(key)
        if state is not None and state.task is not None:
            return state.task
        state = self._syncing.setdefault(key, _NodeState())
        self._uncached.discard(key)
        state.task = background(self._sync(client, node, key), f"pubsub sync {node.name}")
        return state.task

    async def synchronise(self, client: Any, service: JID, node_name: str) -> PubsubNode:
        """Synchronise a node now (analysing it if it is new); its node record when done.

        Raises:
            NotFound: no analyser wants this node synchronised.
            CacheError: the synchronisation failed.
        """
        node = await self.host.storage.get_pubsub_node(client.profile, service, node_name)
        if node is None or node.analyser is None:
            analyser = await self.analyse(client, service, node_name)
            if analyser is None:
                raise NotFound(f"no cache analyser for node {node_name!r}")
            node = await self.host.storage.set_pubsub_node(
                client.profile,
                service,
                node_name,
                analyser=analyser["name"],
                type_=analyser.get("type"),
                subtype=analyser.get("subtype"),
            )
        await self.start_sync(client, node)
        synced = await self.host.storage.get_pubsub_node(client.profile, service, node_name)
        if synced is None or synced.sync_state is not SyncState.COMPLETED:
            raise CacheError(f"node {node_name!r} could not be synchronised")
        return synced

    async def wait_synced(self, client: Any, service: JID, node_name: str) -> None:
        """Wait for a running synchronisation of a node (tests, benchmarks)."""
        state = self._syncing.get(self._key(client, service, node_name))
        if state is not None and state.task is not None:
            await asyncio.wait([state.task])

    async def _sync(self, client: Any, node: PubsubNode, key: NodeKey) -> None:
        analyser = self._analyser_named(node.analyser)
        try:
            if analyser is None:
                raise CacheError(f"analyser {node.analyser!r} is not registered")
            await self.host.storage.update_pubsub_node_sync_state(node, SyncState.IN_PROGRESS)
            if not node.subscribed:
                await self.ps.subscribe(client, node.service, node.name)
                node = await self.host.storage.set_pubsub_node(
                    client.profile,
                    node.service,
                    node.name,
                    analyser=node.analyser,
                    type_=node.type_,
                    subtype=node.subtype,
                    subscribed=True,
                )
            items = await self._fetch_all(client, node)
            parsed = self._parse(analyser, items)
            await self.host.storage.delete_pubsub_items(node)
            # stored in the service's order: the cache's creation order is the node's order
            await self.host.storage.cache_pubsub_items(node, items, parsed)
            await self._apply_pending(client, node, key, analyser)
            await self.host.storage.update_pubsub_node_sync_state(node, SyncState.COMPLETED)
            log.info("%s: pubsub node %s synchronised (%d items)", client.profile, node.name,
                     len(items))  # fmt: skip
        except Exception as e:
            self._give_up(key, f"synchronisation failed: {e!r}")
            try:
                await self.host.storage.update_pubsub_node_sync_state(node, SyncState.ERROR)
            except Exception:
                log.exception("%s: cannot mark node %s in error", client.profile, node.name)
        finally:
            self._syncing.pop(key, None)

    async def _fetch_all(self, client: Any, node: PubsubNode) -> list[domish.Element]:
        """Every item of the node, in its order: RSM pages from a service announcing
        ``pubsub#rsm``; otherwise the whole node in one answer, or, for a node of more than
        ``WHOLE_NODE_MAX`` items (counted with disco#items), the items by id in batches."""
        if not await self.ps.supports_rsm(client, node.service):
            try:
                ids = await self.ps.get_item_ids(client, node.service, node.name)
            except XMPPError:
                ids = None  # not listed: the whole node, in one answer
            if ids is not None:
                if len(ids) > MAX_SYNC_ITEMS:
                    raise CacheError(f"more than {MAX_SYNC_ITEMS} items")
                if len(ids) > WHOLE_NODE_MAX:
                    items = await self.ps.fetch_by_ids(client, node.service, node.name, ids)
                else:
                    whole = await self.ps.fetch_items(client, ItemsRequest(node.service, node.name))
                    items = whole.items
                return [normalised_item(i) for i in items]
        items: list[domish.Element] = []
        seen: set[str] = set()
        after: str | None = None
        while True:
            page = await self.ps.get_items(
                client,
                node.service,
                node.name,
                rsm=RSMRequest(max=SYNC_PAGE_SIZE, after=after),
                use_cache=False,
            )
            if page.unpaged is not None:
                return [normalised_item(i) for i in page.unpaged]
            new = [i for i in page.items if (i.getAttribute("id") or "") not in seen]
            items.extend(normalised_item(i) for i in new)
            seen.update(i.getAttribute("id") or "" for i in new)
            if len(items) > MAX_SYNC_ITEMS:
                raise CacheError(f"more than {MAX_SYNC_ITEMS} items")
            rsm = page.rsm
            if rsm is None or not rsm.last or not new or page.complete:
                return items
            if rsm.count is not None and len(items) >= rsm.count:
                return items
            after = rsm.last

    def _parse(self, analyser: Analyser, items: Sequence[domish.Element]) -> list[Any] | None:
        parser: Callable[[domish.Element], Any] | None = analyser.get("parser")
        if parser is None:
            return None
        parsed = []
        for item in items:
            try:
                parsed.append(parser(item))
            except Exception as e:
                raise CacheError(
                    f"parser of {analyser['name']} failed on item "
                    f"{item.getAttribute('id')!r}: {e!r}"
                ) from e
        return parsed

    # --- notifications ------------------------------------------------------------------------

    async def _on_event(self, client: Any, event: Event) -> None:
        """Trigger ``XEP-0060_event``: keep synchronised nodes up to date."""
        analyser = self.analyser_for_name(event.node)
        key = self._key(client, event.service, event.node)
        state = self._syncing.get(key)
        if state is not None:
            state.pending.append(event)
            if analyser is not None and analyser.get("type"):
                event.category = analyser["type"]
            return
        try:
            node = await self.host.storage.get_pubsub_node(
                client.profile, event.service, event.node
            )
        except Exception:
            log.exception("%s: cannot read the pubsub cache", client.profile)
            return
        if node is None:
            if analyser is not None and analyser.get("type"):
                event.category = analyser["type"]
            return
        if node.type_:
            event.category = node.type_
        if node.sync_state is not SyncState.COMPLETED:
            return
        analyser = self._analyser_named(node.analyser)
        try:
            if analyser is None:
                raise CacheError(f"analyser {node.analyser!r} is not registered")
            await self._apply(client, node, event, analyser)
        except Exception as e:
            self._give_up(key, f"notification not applied: {e!r}")
            await self.host.storage.update_pubsub_node_sync_state(node, SyncState.ERROR)

    async def _apply_pending(
        self, client: Any, node: PubsubNode, key: NodeKey, analyser: Analyser
    ) -> None:
        state = self._syncing.get(key)
        while state is not None and state.pending:
            event = state.pending.pop(0)
            await self._apply(client, node, event, analyser)

    async def _apply(self, client: Any, node: PubsubNode, event: Event, analyser: Analyser) -> None:
        storage = self.host.storage
        if event.kind == ITEMS:
            items = [normalised_item(i) for i in event.items]
            # a node configured without payloads notifies ids only: fetch those items
            bare = [i["id"] for i in items if i.getAttribute("id") and payload_namespace(i)
                    is None and not list(i.elements())]  # fmt: skip
            if bare:
                page = await self.ps.get_items(
                    client, node.service, node.name, item_ids=bare, use_cache=False
                )
                fetched = {i.getAttribute("id"): normalised_item(i) for i in page.items}
                items = [fetched.get(i.getAttribute("id"), i) for i in items]
            await storage.cache_pubsub_items(node, items, self._parse(analyser, items))
            if event.retracted:
                await storage.delete_pubsub_items(node, event.retracted)
        elif event.kind == RETRACT:
            await storage.delete_pubsub_items(node, event.retracted)
        elif event.kind == PURGE:
            await storage.delete_pubsub_items(node)
        elif event.kind == DELETE:
            await storage.delete_pubsub_node([client.profile], [node.service], [node.name])

    # --- connection ---------------------------------------------------------------------------

    def profile_connected(self, client: Any) -> None:
        client.extra["PUBSUB_CACHE_check"] = background(
            self._check_nodes(client), f"pubsub cache check {client.profile}"
        )

    def profile_disconnected(self, client: Any) -> None:
        for key in [k for k in self._uncached if k[0] == client.profile]:
            self._uncached.discard(key)

    async def _check_nodes(self, client: Any) -> int:
        """Synchronise again the nodes that changed while we were offline; how many."""
        nodes = await self.host.storage.get_pubsub_nodes(
            client.profile, [SyncState.COMPLETED, SyncState.IN_PROGRESS]
        )
        for node in nodes:
            if node.subscribed:  # their notifications are accepted (XEP-0060 plugin)
                self.ps.add_known_subscription(client, node.service, node.name)
        resynced = 0
        for node in nodes:
            try:
                if node.sync_state is SyncState.IN_PROGRESS or await self._changed(client, node):
                    resynced += 1
                    await self.start_sync(client, node)
            except Exception as e:
                self._give_up(self._key(client, node.service, node.name), f"check failed: {e!r}")
        return resynced

    async def _changed(self, client: Any, node: PubsubNode) -> bool:
        """Whether the service's newest items or item count differ from the cache."""
        page = await self.ps.get_items(
            client,
            node.service,
            node.name,
            rsm=RSMRequest(max=CHECK_PAGE_SIZE, before=""),
            use_cache=False,
        )
        cached, meta = await self.host.storage.get_items(
            node, max_items=CHECK_PAGE_SIZE, before="", order_by="modification", desc=False
        )
        if page.rsm is not None and page.rsm.count is not None and page.rsm.count != meta.count:
            return True
        theirs = [xml_tools.serialise(normalised_item(i)) for i in page.items]
        ours = [xml_tools.serialise(i.data) for i in cached]
        return theirs != ours

    # --- bridge -------------------------------------------------------------------------------

    def _register_bridge(self, bridge: Any) -> None:
        service = ("service", "s", '"": our own PEP service')
        node = ("node", "s")
        profile_key = ("profile_key", "s")
        bridge.add_method(
            "ps_cache_get",
            self._ps_cache_get,
            args=[
                service,
                node,
                ("max_items", "i", "-1: no maximum"),
                ("item_ids", "as"),
                ("sub_id", "s"),
                ("rsm", "s", "serialised {max, before, after, index}"),
                ("extra", "s", "serialised dict: order_by"),
                profile_key,
            ],  # fmt: skip
            returns="s",
            doc="Items of a synchronised node, from the cache only (as ps_items_get). "
            "NotFound when the node is not synchronised.",
        )
        bridge.add_method(
            "ps_cache_sync",
            self._ps_cache_sync,
            args=[service, node, profile_key],
            doc="Synchronise a node now (again if it was); fails when no analyser wants it.",
        )
        bridge.add_method(
            "ps_cache_purge",
            self._ps_cache_purge,
            args=[
                (
                    "purge_data",
                    "s",
                    "serialised {profiles, types, subtypes, services, nodes, "
                    "created_before, updated_before}",
                )
            ],  # fmt: skip
            returns="i",
            doc="Delete cached items matching every filter; returns how many.",
        )
        bridge.add_method(
            "ps_cache_reset",
            self._ps_cache_reset,
            doc="Delete every cached node and item (they are synchronised again when read).",
        )
        bridge.add_method(
            "ps_cache_search",
            self._ps_cache_search,
            args=[("query", "s", "serialised search query (see doc/developer.rst)")],
            returns="s",
            doc="Search the cached items: serialised list of {profile, service, node, item_id, "
            "created, updated, item (XML), parsed}; at most limit items (default 100, at most "
            "10,000: page with index).",
        )

    async def _ps_cache_get(
        self,
        service: str,
        node: str,
        max_items: int,
        item_ids: list[str],
        sub_id: str,
        rsm: str,
        extra: str,
        profile_key: str,
    ) -> str:
        rsm_request = RSMRequest.from_dict(json_arg(rsm, "rsm")) if rsm else None
        options = json_arg(extra, "extra")
        order_by = options.get("order_by")
        if order_by is not None and order_by not in ("creation", "modification"):
            raise InvalidInput("order_by must be creation or modification")
        client = await self.host.client_of(profile_key)
        target = self.ps.service_of(client, parse_jid_arg(service, "service") if service else None)
        cached = await self.host.storage.get_pubsub_node(client.profile, target, node)
        if cached is None or cached.sync_state is not SyncState.COMPLETED:
            raise NotFound(f"node {node!r} of {target.full()} is not in the cache")
        request = ItemsRequest(
            target, node, max_items if max_items >= 0 else None, item_ids or None,
            sub_id or None, rsm_request, order_by,
        )  # fmt: skip
        return items_result(target, node, await self.read(cached, request))

    async def _ps_cache_sync(self, service: str, node: str, profile_key: str) -> None:
        if not node:
            raise InvalidInput("a node name is required")
        client = await self.host.client_of(profile_key)
        target = self.ps.service_of(client, parse_jid_arg(service, "service") if service else None)
        self._uncached.discard(self._key(client, target, node))
        await self.synchronise(client, target, node)

    async def _ps_cache_purge(self, purge_data: str) -> int:
        data = json_arg(purge_data, "purge_data")
        filters: dict[str, Any] = {}
        for key in ("profiles", "types", "subtypes", "nodes", "services"):
            if data.get(key) is not None:
                values = data[key]
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise InvalidInput(f"{key} must be a list of strings")
                filters[key] = (
                    [parse_jid_arg(v, "service") for v in values] if key == "services" else values
                )
        for key in ("created_before", "updated_before"):
            if data.get(key) is not None:
                if isinstance(data[key], bool) or not isinstance(data[key], int | float):
                    raise InvalidInput(f"{key} must be a number (seconds since the epoch)")
                filters[key] = float(data[key])
        unknown = set(data) - set(filters) - {k for k, v in data.items() if v is None}
        if unknown:
            raise InvalidInput(f"unknown purge keys {sorted(unknown)}")
        names = filters.pop("nodes", None)
        return int(await self.host.storage.purge_pubsub_items(names=names, **filters))

    async def _ps_cache_reset(self) -> None:
        await self.host.storage.delete_pubsub_node()
        self._uncached.clear()

    async def _ps_cache_search(self, query: str) -> str:
        data = json_arg(query, "query")
        # an answer must fit in one D-Bus message (128 MiB at most): page with index/limit
        limit = data.setdefault("limit", SEARCH_DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= SEARCH_MAX:
            raise InvalidInput(f"limit must be between 1 and {SEARCH_MAX} (page with index)")
        items: list[PubsubItem] = await self.host.storage.search_pubsub_items(data)
        profiles = {}
        for item in items:
            if item.node.profile_id not in profiles:
                profiles[item.node.profile_id] = self.host.storage.profile_name_of(
                    item.node.profile_id
                )
        return json.dumps(
            [
                {
                    "profile": profiles[item.node.profile_id],
                    "service": item.node.service.full(),
                    "node": item.node.name,
                    "item_id": item.name,
                    "created": item.created,
                    "updated": item.updated,
                    "item": xml_tools.serialise(item.data),
                    "parsed": item.parsed,
                }
                for item in items
            ]
        )
