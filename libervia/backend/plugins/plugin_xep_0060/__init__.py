"""XEP-0060: Publish-Subscribe (client side), with XEP-0059 paging and XEP-0413 ordering.

Typed methods take the profile's ``client`` first and a ``service`` (``None``: the profile's
own PEP service, its bare JID). Errors of the service are :class:`XMPPError` with the
condition (``item-not-found``, ``forbidden``...).

Trigger points:

``XEP-0060_items(client, request)``
    before items are requested from a service; ``request`` is an :class:`ItemsRequest`. A
    callback that can answer (the pubsub cache) sets ``request.result`` and returns False: the
    service is not asked. Not run when the caller asks ``use_cache=False``.
``XEP-0060_event(client, event)``
    for each node notification received (:class:`.events.Event`), in the order they arrived,
    before the ``ps_event`` signal; a callback may set ``event.category``. Returning False
    stops the other callbacks, not the signal.

Bridge methods (``ps_*``) and the ``ps_event`` signal: :mod:`.bridge`.

Which notifications are accepted (:meth:`XEP_0060.refusal`): anyone can send us a
``<message/>`` with a pubsub ``<event/>``, so a notification reaches the trigger point (and
the pubsub cache) and the ``ps_event`` signal only when it comes from

- our own server or one of its components (a JID without user part whose domain is our
  server's or a subdomain of it: the server can forge any stanza of our stream anyway);
- our own PEP service (our bare JID);
- a service and node we subscribed to (:meth:`XEP_0060.subscribe`, or listed by
  :meth:`XEP_0060.get_subscriptions`, or a node the pubsub cache keeps subscribed);
- the PEP service (bare JID) of a contact whose presence we receive (roster subscription
  "to" or "both"), for a node we announce interest in (``<node>+notify`` among our disco
  features), XEP-0163 §4.

Anything else (a full JID: a client, not a service; a stranger's PEP; a service we never
subscribed to) is a logged rejection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import data_form
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput, XMPPError
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq
from libervia.backend.plugins.plugin_xep_0059 import RSMRequest, RSMResponse
from libervia.backend.plugins.plugin_xep_0060 import bridge as bridge_methods
from libervia.backend.plugins.plugin_xep_0060.events import NS_PUBSUB_EVENT, Event, parse_event

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Publish-Subscribe",
    "import_name": "XEP-0060",
    "type": "XEP",
    "protocols": ["XEP-0060", "XEP-0413"],
    "dependencies": ["XEP-0030", "XEP-0059"],
    "main": "XEP_0060",
    "handler": True,
    "description": "Pubsub nodes, items, subscriptions and notifications",
}

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
NS_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NS_SUBSCRIBE_OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options"
NS_META_DATA = "http://jabber.org/protocol/pubsub#meta-data"
NS_ORDER_BY = "urn:xmpp:order-by:1"
#: announced by services paging items with RSM (XEP-0060 §6.5.4)
NS_PUBSUB_RSM = "http://jabber.org/protocol/pubsub#rsm"
#: item ids asked per request when paging by ids
ID_BATCH = 100
#: nodes up to this many items are fetched whole from a service without RSM (one request;
#: Prosody's file storage loads the whole node for every item asked by id, so paging by ids
#: there costs one node load per item); bigger ones are fetched by ids
WHOLE_NODE_MAX = 20_000
#: XEP-0413 sort fields
ORDER_FIELDS = ("creation", "modification")
AFFILIATIONS = ("owner", "publisher", "publish-only", "member", "none", "outcast")
#: the last event handling task of each profile (events are handled in arrival order)
EVENTS_TAIL_KEY = "XEP-0060_events_tail"
#: the (service bare JID, node) pairs this session knows we are subscribed to
SUBSCRIPTIONS_KEY = "XEP-0060_subscriptions"

FormValues = Mapping[str, str | bool | int | Sequence[str]]


@dataclass
class ItemsResult:
    """A page of items: ``<item/>`` elements, the RSM metadata when known, whether the page
    reaches the end of the set (None: unknown), and whether the cache answered.

    ``unpaged`` is the whole node as the service sent it, when the service ignored the RSM
    request and the page was cut locally (:func:`page_locally`)."""

    items: list[domish.Element]
    rsm: RSMResponse | None = None
    complete: bool | None = None
    cached: bool = False
    unpaged: list[domish.Element] | None = None


def page_bounds(ids: list[str], rsm: RSMRequest) -> tuple[int, int]:
    """The [start, end) slice of an RSM page in a set of item ids (in the node's order).

    Raises:
        XMPPError: ``before``/``after`` is not an item of the node (``item-not-found``, as a
            service would answer).
    """
    size = rsm.max

    def position(item_id: str) -> int:
        try:
            return ids.index(item_id)
        except ValueError:
            raise XMPPError(f"item {item_id!r} is not in the node", "item-not-found") from None

    if rsm.after is not None:
        start = position(rsm.after) + 1
        end = len(ids) if size is None else min(len(ids), start + size)
    elif rsm.before is not None:
        end = len(ids) if rsm.before == "" else position(rsm.before)
        start = 0 if size is None else max(0, end - size)
    else:
        start = min(rsm.index or 0, len(ids))
        end = len(ids) if size is None else min(len(ids), start + size)
    return start, end


def page_meta(ids: list[str], start: int, end: int) -> RSMResponse:
    """The RSM metadata of the page ``ids[start:end]``."""
    if end <= start:
        return RSMResponse(count=len(ids))
    return RSMResponse(first=ids[start], last=ids[end - 1], index=start, count=len(ids))


def page_locally(every: list[domish.Element], rsm: RSMRequest) -> ItemsResult:
    """Cut an RSM page out of a whole node (a service ignoring RSM sent it all).

    Raises:
        XMPPError: see :func:`page_bounds`.
    """
    ids = [i.getAttribute("id") or "" for i in every]
    start, end = page_bounds(ids, rsm)
    return ItemsResult(every[start:end], page_meta(ids, start, end), end >= len(ids),
                       unpaged=every)  # fmt: skip


@dataclass
class ItemsRequest:
    """An items request, as the ``XEP-0060_items`` trigger point sees it."""

    service: JID
    node: str
    max_items: int | None = None
    item_ids: list[str] | None = None
    sub_id: str | None = None
    rsm: RSMRequest | None = None
    order_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: set by a trigger callback answering the request itself
    result: ItemsResult | None = None


@dataclass(frozen=True)
class Subscription:
    service: JID
    node: str
    subscriber: JID
    state: str
    sub_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service.full(),
            "node": self.node,
            "subscriber": self.subscriber.full(),
            "state": self.state,
            "subid": self.sub_id,
        }


def form_values(values: FormValues) -> dict[str, str | list[str]]:
    """Form field values as strings (booleans as ``true``/``false``)."""
    converted: dict[str, str | list[str]] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput("form field names must be non-empty strings")
        if isinstance(value, bool):
            converted[name] = "true" if value else "false"
        elif isinstance(value, int | str):
            converted[name] = str(value)
        elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
            converted[name] = list(value)
        else:
            raise InvalidInput(f"form field {name!r}: a string or a list of strings expected")
    return converted


def submit_form(namespace: str, values: FormValues) -> domish.Element:
    """A submitted data form (XEP-0004) with a FORM_TYPE."""
    form = data_form.Form("submit", formNamespace=namespace)
    form.makeFields(form_values(values))
    return form.toElement()


def read_form(parent: domish.Element | None, namespace: str | None = None) -> dict[str, Any]:
    """The field values of the data form child of ``parent`` (without FORM_TYPE).

    Raises:
        InvalidInput: a malformed form (wokkel's parser refuses it).
    """
    if parent is None:
        return {}
    for element in parent.elements(data_form.NS_X_DATA, "x"):
        try:
            form = data_form.Form.fromElement(element)
        except (data_form.Error, ValueError, KeyError) as e:
            raise InvalidInput(f"malformed data form: {e}") from None
        if namespace is None or form.formNamespace == namespace:
            return dict(form.getValues())
    return {}


def parse_items_answer(answer: domish.Element, request: ItemsRequest | None = None) -> ItemsResult:
    """The page of items of a service's answer to an items request.

    Raises:
        InvalidInput: malformed RSM metadata.
    """
    pubsub = _child(answer, NS_PUBSUB, "pubsub")
    if pubsub is None:
        return ItemsResult([], complete=True)
    items_el = _child(pubsub, NS_PUBSUB, "items")
    items = list(items_el.elements(NS_PUBSUB, "item")) if items_el is not None else []
    rsm_response = RSMResponse.find(pubsub)
    if (
        rsm_response is None
        and request is not None
        and request.rsm is not None
        and not request.item_ids
    ):
        return page_locally(items, request.rsm)
    complete = None
    if rsm_response is not None and rsm_response.count is not None:
        if rsm_response.index is not None:
            complete = rsm_response.index + len(items) >= rsm_response.count
        elif not items:
            complete = True
    return ItemsResult(items, rsm_response, complete)


def _child(element: domish.Element, namespace: str, name: str) -> domish.Element | None:
    return next(element.elements(namespace, name), None)


def _check_node(node: str | None) -> str:
    if not isinstance(node, str) or not node:
        raise InvalidInput("a node name is required")
    return node


class XEP_0060:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.disco = host.plugins["XEP-0030"]
        host.trigger.add("message_received", self._on_message, priority=950)
        bridge_methods.register(self, host.bridge)

    def get_handler(self, client: Any) -> Any:
        return EventHandler(self, client)

    def service_of(self, client: Any, service: JID | None) -> JID:
        """The service to ask: ``service``, or the profile's own PEP service."""
        return service if service is not None else JID(client.jid.userhost())

    async def _pubsub_iq(
        self,
        client: Any,
        iq_type: str,
        service: JID | None,
        namespace: str = NS_PUBSUB,
        build: Any = None,
    ) -> tuple[domish.Element, domish.Element]:
        """Send an IQ with a ``<pubsub/>`` child filled by ``build(pubsub)``; the answer."""
        iq = make_iq(iq_type, self.service_of(client, service))
        pubsub = iq.addElement((namespace, "pubsub"))
        if build is not None:
            build(pubsub)
        answer = await client.send_iq(iq)
        return answer, pubsub

    async def _owner_request(
        self, client: Any, iq_type: str, service: JID | None, name: str, node: str
    ) -> domish.Element | None:
        """Send ``<pubsub xmlns='…#owner'><NAME node='NODE'/></pubsub>``; the ``NAME`` child
        of the answer's ``<pubsub/>``, if any."""
        _check_node(node)
        answer, _ = await self._pubsub_iq(
            client,
            iq_type,
            service,
            NS_PUBSUB_OWNER,
            lambda p: p.addElement(name).__setitem__("node", node),
        )
        pubsub = _child(answer, NS_PUBSUB_OWNER, "pubsub")
        return _child(pubsub, NS_PUBSUB_OWNER, name) if pubsub is not None else None

    # --- nodes --------------------------------------------------------------------------------

    async def create_node(
        self,
        client: Any,
        service: JID | None,
        node: str | None,
        options: FormValues | None = None,
    ) -> str:
        """Create a node (an instant node with a name chosen by the service when ``node`` is
        empty) configured with ``options``; returns its name."""

        def build(pubsub: domish.Element) -> None:
            create = pubsub.addElement("create")
            if node:
                create["node"] = node
            if options:
                pubsub.addElement("configure").addChild(submit_form(NS_NODE_CONFIG, options))

        answer, _ = await self._pubsub_iq(client, "set", service, build=build)
        pubsub = _child(answer, NS_PUBSUB, "pubsub")
        created = _child(pubsub, NS_PUBSUB, "create") if pubsub is not None else None
        name = created.getAttribute("node") if created is not None else None
        if name:
            return str(name)
        if not node:
            raise XMPPError("the service created a node without telling its name", "bad-request")
        return node

    async def delete_node(self, client: Any, service: JID | None, node: str) -> None:
        await self._owner_request(client, "set", service, "delete", node)

    async def get_configuration(
        self, client: Any, service: JID | None, node: str
    ) -> dict[str, Any]:
        """The node's configuration (owner request): field name -> value(s)."""
        configure = await self._owner_request(client, "get", service, "configure", node)
        return read_form(configure, NS_NODE_CONFIG)

    async def set_configuration(
        self, client: Any, service: JID | None, node: str, options: FormValues
    ) -> None:
        _check_node(node)

        def build(pubsub: domish.Element) -> None:
            configure = pubsub.addElement("configure")
            configure["node"] = node
            configure.addChild(submit_form(NS_NODE_CONFIG, options))

        await self._pubsub_iq(client, "set", service, NS_PUBSUB_OWNER, build)

    async def get_metadata(self, client: Any, service: JID | None, node: str) -> dict[str, Any]:
        """The node's disco#info: its identities and meta-data form fields."""
        _check_node(node)
        info = await self.disco.get_infos(
            client, self.service_of(client, service), node, use_cache=False
        )
        metadata: dict[str, Any] = {}
        form = info.extensions.get(NS_META_DATA)
        if form is not None:
            metadata.update(form.getValues())
        metadata["identities"] = [list(key) for key in info.identities]
        return metadata

    # --- items --------------------------------------------------------------------------------

    async def publish(
        self,
        client: Any,
        service: JID | None,
        node: str,
        items: Sequence[domish.Element],
        options: FormValues | None = None,
    ) -> list[str]:
        """Publish ``<item/>`` elements; returns the ids of the published items."""
        _check_node(node)

        def build(pubsub: domish.Element) -> None:
            publish = pubsub.addElement("publish")
            publish["node"] = node
            for item in items:
                publish.addChild(item)
            if options:
                pubsub.addElement("publish-options").addChild(
                    submit_form(NS_PUBLISH_OPTIONS, options)
                )

        answer, _ = await self._pubsub_iq(client, "set", service, build=build)
        given = [i.getAttribute("id") for i in items]
        pubsub = _child(answer, NS_PUBSUB, "pubsub")
        publish_el = _child(pubsub, NS_PUBSUB, "publish") if pubsub is not None else None
        if publish_el is not None:
            ids = [i.getAttribute("id") for i in publish_el.elements(NS_PUBSUB, "item")]
            if ids and all(ids):
                return [str(i) for i in ids]
        return [str(i) for i in given if i]

    async def send_item(
        self,
        client: Any,
        service: JID | None,
        node: str,
        payload: domish.Element | None,
        item_id: str | None = None,
        options: FormValues | None = None,
    ) -> str:
        """Publish one item; returns its id (chosen by the service when ``item_id`` is None).

        Raises:
            XMPPError: refused, or the service did not say which id it chose.
        """
        item = domish.Element((NS_PUBSUB, "item"))
        if item_id:
            item["id"] = item_id
        if payload is not None:
            item.addChild(payload)
        ids = await self.publish(client, service, node, [item], options)
        if not ids:
            raise XMPPError("the service did not tell the id of the published item", "bad-request")
        return ids[0]

    async def get_items(
        self,
        client: Any,
        service: JID | None,
        node: str,
        max_items: int | None = None,
        item_ids: Sequence[str] | None = None,
        sub_id: str | None = None,
        rsm: RSMRequest | None = None,
        order_by: str | None = None,
        *,
        use_cache: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> ItemsResult:
        """A page of a node's items (from the pubsub cache when it can answer).

        Items come in the node's order, oldest first (as Prosody and most services send
        them); ``max_items`` alone asks for the most recent ones (XEP-0060 §6.5.7), in that
        order too. ``rsm`` pages through that order (``before=""``: the last, most recent,
        page); a service ignoring RSM sends the whole node and the page is cut here.

        ``order_by`` (``creation``/``modification``, XEP-0413) is sent only to services
        announcing ``urn:xmpp:order-by:1``; others use their own order.
        """
        _check_node(node)
        if order_by is not None and order_by not in ORDER_FIELDS:
            raise InvalidInput(f"order_by must be one of {ORDER_FIELDS}")
        if max_items is not None and max_items < 0:
            raise InvalidInput("max_items must not be negative")
        request = ItemsRequest(
            self.service_of(client, service),
            node,
            max_items,
            list(item_ids) if item_ids else None,
            sub_id,
            rsm,
            order_by,
            dict(extra or {}),
        )
        if use_cache and not await self.host.trigger.async_point("XEP-0060_items", client, request):
            if request.result is not None:
                return request.result
        return await self.fetch_items(client, request)

    async def fetch_items(self, client: Any, request: ItemsRequest) -> ItemsResult:
        """Ask the service (never the cache).

        A page asked of a service that does not announce ``pubsub#rsm`` (Prosody 0.12) is
        made from the node's item ids (disco#items) and the items of the page fetched by id:
        asking such a service for a page would bring the whole node in one stanza (a node of
        10,000 blog posts is ~7.5 MB, ~120,000 XML elements: over the stream parser's
        limits, and the stream is lost).
        """
        if (
            request.rsm is not None
            and not request.item_ids
            and not await self.supports_rsm(client, request.service)
        ):
            return await self._page_without_rsm(client, request)
        return await self._fetch(client, request)

    async def _page_without_rsm(self, client: Any, request: ItemsRequest) -> ItemsResult:
        """An RSM page from a service ignoring RSM: the item ids (disco#items) place the page;
        the last page is asked with ``max_items``, a page of a node of at most
        ``WHOLE_NODE_MAX`` items is cut out of the whole node, other pages are fetched by id."""
        assert request.rsm is not None
        try:
            ids = await self.get_item_ids(client, request.service, request.node)
        except XMPPError as e:
            log.info("%s: no item ids of %s (%s): whole node asked", client.profile,
                     request.node, e)  # fmt: skip
            return await self._fetch(client, request)
        start, end = page_bounds(ids, request.rsm)
        meta = page_meta(ids, start, end)
        complete = end >= len(ids)
        if end <= start:
            return ItemsResult([], meta, complete)
        if end == len(ids):  # the most recent items: max_items asks exactly them
            last = await self._fetch(
                client, ItemsRequest(request.service, request.node, max_items=end - start)
            )
            if [i.getAttribute("id") for i in last.items] == ids[start:end]:
                return ItemsResult(last.items, meta, complete)
        if len(ids) <= WHOLE_NODE_MAX:
            whole = await self._fetch(client, ItemsRequest(request.service, request.node))
            return page_locally(whole.items, request.rsm)
        items = await self.fetch_by_ids(client, request.service, request.node, ids[start:end])
        return ItemsResult(items, meta, complete)

    async def supports_rsm(self, client: Any, service: JID) -> bool:
        """Whether ``service`` pages items with RSM (it announces ``pubsub#rsm``)."""
        try:
            return bool(await self.disco.has_feature(client, NS_PUBSUB_RSM, service))
        except Exception:
            return False

    async def get_item_ids(self, client: Any, service: JID, node: str) -> list[str]:
        """The ids of a node's items, oldest first, from disco#items on the node (XEP-0060
        §5.5). Services list them newest first (Prosody 0.12, measured): the list is
        reversed.

        Raises:
            XMPPError: the service does not list them.
        """
        listed = await self.disco.get_items(client, service, node)
        ids = [str(item.name) for item in listed if item.name]
        ids.reverse()
        return ids

    async def fetch_by_ids(
        self, client: Any, service: JID, node: str, item_ids: Sequence[str]
    ) -> list[domish.Element]:
        """Items by id, in batches of ``ID_BATCH``, in the order of ``item_ids`` (ids the
        service does not have any more are left out)."""
        found: dict[str, domish.Element] = {}
        for start in range(0, len(item_ids), ID_BATCH):
            batch = list(item_ids[start : start + ID_BATCH])
            page = await self._fetch(client, ItemsRequest(service, node, item_ids=batch))
            for item in page.items:
                found[item.getAttribute("id") or ""] = item
        return [found[i] for i in item_ids if i in found]

    async def _fetch(self, client: Any, request: ItemsRequest) -> ItemsResult:
        send_order = request.order_by is not None and await self._supports_order(
            client, request.service
        )

        def build(pubsub: domish.Element) -> None:
            items_el = pubsub.addElement("items")
            items_el["node"] = request.node
            if request.sub_id:
                items_el["subid"] = request.sub_id
            if request.item_ids:
                for item_id in request.item_ids:
                    items_el.addElement("item")["id"] = item_id
            elif request.max_items is not None and request.rsm is None:
                items_el["max_items"] = str(request.max_items)
            if request.rsm is not None and not request.item_ids:
                rsm = request.rsm
                if rsm.max is None and request.max_items is not None:
                    rsm = RSMRequest(request.max_items, rsm.before, rsm.after, rsm.index)
                pubsub.addChild(rsm.to_element())
            if send_order:
                pubsub.addElement((NS_ORDER_BY, "order"))["field"] = request.order_by

        answer, _ = await self._pubsub_iq(client, "get", request.service, build=build)
        return parse_items_answer(answer, request)

    async def _supports_order(self, client: Any, service: JID) -> bool:
        try:
            return bool(await self.disco.has_feature(client, NS_ORDER_BY, service))
        except Exception:
            return False

    async def retract_items(
        self,
        client: Any,
        service: JID | None,
        node: str,
        item_ids: Sequence[str],
        notify: bool = True,
    ) -> None:
        _check_node(node)
        if not item_ids:
            raise InvalidInput("no item to retract")

        def build(pubsub: domish.Element) -> None:
            retract = pubsub.addElement("retract")
            retract["node"] = node
            if notify:
                retract["notify"] = "true"
            for item_id in item_ids:
                retract.addElement("item")["id"] = item_id

        await self._pubsub_iq(client, "set", service, build=build)

    async def purge_node(self, client: Any, service: JID | None, node: str) -> None:
        await self._owner_request(client, "set", service, "purge", node)

    # --- subscriptions and affiliations -------------------------------------------------------

    async def subscribe(
        self,
        client: Any,
        service: JID | None,
        node: str,
        subscriber: JID | None = None,
        options: FormValues | None = None,
    ) -> Subscription:
        """Subscribe (our bare JID by default) to a node."""
        _check_node(node)
        who = subscriber or JID(client.jid.userhost())
        target = self.service_of(client, service)

        def build(pubsub: domish.Element) -> None:
            subscribe = pubsub.addElement("subscribe")
            subscribe["node"] = node
            subscribe["jid"] = who.full()
            if options:
                opts = pubsub.addElement("options")
                opts["node"], opts["jid"] = node, who.full()
                opts.addChild(submit_form(NS_SUBSCRIBE_OPTIONS, options))

        answer, _ = await self._pubsub_iq(client, "set", target, build=build)
        pubsub = _child(answer, NS_PUBSUB, "pubsub")
        sub_el = _child(pubsub, NS_PUBSUB, "subscription") if pubsub is not None else None
        if sub_el is None:  # XEP-0060 §6.1.2: an empty result means subscribed
            subscription = Subscription(target, node, who, "subscribed")
        else:
            subscription = self._subscription(target, sub_el, node, who)
        if subscription.state != "none":
            self.add_known_subscription(client, target, node)
        return subscription

    def add_known_subscription(self, client: Any, service: JID, node: str) -> None:
        """Accept the notifications of ``node`` on ``service`` (we are subscribed to it)."""
        client.extra.setdefault(SUBSCRIPTIONS_KEY, set()).add((service.userhost(), node))

    def remove_known_subscription(self, client: Any, service: JID, node: str) -> None:
        client.extra.get(SUBSCRIPTIONS_KEY, set()).discard((service.userhost(), node))

    def refusal(self, client: Any, event: Event) -> str | None:
        """Why a received notification is refused, or None when it is accepted (see the
        module docstring)."""
        service = event.service
        own = client.jid
        if service.resource is not None:
            return "sent by a client (full JID), not by a pubsub service"
        if service.user is None:
            host = service.host
            if host == own.host or host.endswith(f".{own.host}"):
                return None
        elif service.userhost() == own.userhost():
            return None
        if (service.userhost(), event.node) in client.extra.get(SUBSCRIPTIONS_KEY, ()):
            return None
        if service.user is not None:
            roster = getattr(client, "roster", None)
            contact = roster.get(service) if roster is not None else None
            if contact is not None and contact.subscription_to:
                if f"{event.node}+notify" in self.disco.features:
                    return None
                return f"node {event.node[:100]!r} of a contact's PEP without +notify"
        return f"not subscribed to node {event.node[:100]!r} of {service.full()[:100]!r}"

    def _subscription(
        self, service: JID, element: domish.Element, node: str | None, who: JID | None
    ) -> Subscription:
        try:
            subscriber = JID(element["jid"]) if element.getAttribute("jid") else who
        except Exception:
            subscriber = who
        return Subscription(
            service,
            element.getAttribute("node") or node or "",
            subscriber or service,
            element.getAttribute("subscription") or "subscribed",
            element.getAttribute("subid"),
        )

    async def unsubscribe(
        self,
        client: Any,
        service: JID | None,
        node: str,
        subscriber: JID | None = None,
        sub_id: str | None = None,
    ) -> None:
        _check_node(node)
        who = subscriber or JID(client.jid.userhost())

        def build(pubsub: domish.Element) -> None:
            unsubscribe = pubsub.addElement("unsubscribe")
            unsubscribe["node"] = node
            unsubscribe["jid"] = who.full()
            if sub_id:
                unsubscribe["subid"] = sub_id

        await self._pubsub_iq(client, "set", service, build=build)
        if subscriber is None or subscriber.userhost() == client.jid.userhost():
            self.remove_known_subscription(client, self.service_of(client, service), node)

    async def get_subscriptions(
        self, client: Any, service: JID | None, node: str | None = None
    ) -> list[Subscription]:
        """Our subscriptions on a service (on one node when ``node`` is given)."""
        target = self.service_of(client, service)

        def build(pubsub: domish.Element) -> None:
            subs = pubsub.addElement("subscriptions")
            if node:
                subs["node"] = node

        answer, _ = await self._pubsub_iq(client, "get", target, build=build)
        pubsub = _child(answer, NS_PUBSUB, "pubsub")
        subs = _child(pubsub, NS_PUBSUB, "subscriptions") if pubsub is not None else None
        if subs is None:
            return []
        subscriptions = [
            self._subscription(target, element, node, None)
            for element in subs.elements(NS_PUBSUB, "subscription")
        ]
        for subscription in subscriptions:
            if subscription.state == "subscribed" and subscription.node:
                self.add_known_subscription(client, target, subscription.node)
        return subscriptions

    async def get_affiliations(
        self, client: Any, service: JID | None, node: str | None = None
    ) -> dict[str, str]:
        """Our affiliations on a service: node -> affiliation."""

        def build(pubsub: domish.Element) -> None:
            affs = pubsub.addElement("affiliations")
            if node:
                affs["node"] = node

        answer, _ = await self._pubsub_iq(client, "get", service, build=build)
        pubsub = _child(answer, NS_PUBSUB, "pubsub")
        affs = _child(pubsub, NS_PUBSUB, "affiliations") if pubsub is not None else None
        if affs is None:
            return {}
        return {
            str(a.getAttribute("node") or node or ""): str(a.getAttribute("affiliation") or "none")
            for a in affs.elements(NS_PUBSUB, "affiliation")
        }

    async def get_node_affiliations(
        self, client: Any, service: JID | None, node: str
    ) -> dict[JID, str]:
        """Everybody's affiliation with a node (owner request)."""
        affs = await self._owner_request(client, "get", service, "affiliations", node)
        result: dict[JID, str] = {}
        for element in affs.elements(NS_PUBSUB_OWNER, "affiliation") if affs is not None else ():
            try:
                result[JID(element["jid"])] = element.getAttribute("affiliation") or "none"
            except Exception:
                log.warning("%s: ignoring an invalid affiliation entry", client.profile)
        return result

    async def set_node_affiliations(
        self, client: Any, service: JID | None, node: str, affiliations: Mapping[JID, str]
    ) -> None:
        _check_node(node)
        for affiliation in affiliations.values():
            if affiliation not in AFFILIATIONS:
                raise InvalidInput(f"unknown affiliation {affiliation!r} (one of {AFFILIATIONS})")

        def build(pubsub: domish.Element) -> None:
            affs = pubsub.addElement("affiliations")
            affs["node"] = node
            for jid, affiliation in affiliations.items():
                element = affs.addElement("affiliation")
                element["jid"], element["affiliation"] = jid.full(), affiliation

        await self._pubsub_iq(client, "set", service, NS_PUBSUB_OWNER, build)

    # --- notifications ------------------------------------------------------------------------

    def _on_message(self, client: Any, element: domish.Element, message: Any) -> bool:
        # notifications are handled by EventHandler, in order: never messages of their own
        return element.parent is not None or _child(element, NS_PUBSUB_EVENT, "event") is None

    def event_received(self, client: Any, element: domish.Element) -> None:
        """Queue the notifications of a received ``<message/>`` (arrival order is kept)."""
        try:
            events = parse_event(element, client.jid.host)
        except InvalidInput as e:
            log.warning("%s: ignoring a pubsub notification: %s", client.profile, e)
            return
        accepted = []
        for event in events:
            refusal = self.refusal(client, event)
            if refusal is None:
                accepted.append(event)
            else:
                log.warning("%s: ignoring a pubsub notification (%s)", client.profile, refusal)
        events = accepted
        if not events:
            return
        previous = client.extra.get(EVENTS_TAIL_KEY)
        client.extra[EVENTS_TAIL_KEY] = background(
            self._handle_events(client, events, previous), "pubsub event"
        )

    async def _handle_events(
        self, client: Any, events: list[Event], previous: asyncio.Future[Any] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        for event in events:
            await self.host.trigger.async_point("XEP-0060_event", client, event)
            bridge_methods.emit_event(self.host.bridge, client, event)

    async def events_drained(self, client: Any) -> None:
        """Wait until the notifications received so far are handled (tests, benchmarks)."""
        tail = client.extra.get(EVENTS_TAIL_KEY)
        if tail is not None:
            await asyncio.wait([tail])


class EventHandler(XMPPHandler):
    """Feeds pubsub notifications to the plugin as they arrive."""

    def __init__(self, plugin: XEP_0060, client: Any) -> None:
        super().__init__()
        self.plugin = plugin
        self.client = client

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        self.xmlstream.addObserver(f"/message/event[@xmlns='{NS_PUBSUB_EVENT}']", self._on_event)

    def _on_event(self, element: domish.Element) -> None:
        self.plugin.event_received(self.client, element)
