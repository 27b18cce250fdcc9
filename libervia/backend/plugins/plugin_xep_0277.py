"""XEP-0277: Microblogging over XMPP.

Blog posts are Atom entries (:mod:`libervia.backend.tools.atom`: hardened parsing, building)
published as pubsub items, by default on the ``urn:xmpp:microblog:0`` node of the profile's
own PEP service. Everything goes through the XEP-0060 plugin's typed methods, so reading goes
through its ``XEP-0060_items`` trigger point: the pubsub cache answers transparently for the
nodes it synchronises.

- Publishing on a PEP service (ours) sends the publish-options ``pubsub#max_items=max``: PEP
  services keep one item per node otherwise. If the existing node is configured differently
  (``conflict``: precondition not met), the node is reconfigured (we own our PEP nodes) and
  the publication tried once more. Other services get no publish-options (their node
  configuration is their owner's business).
- ``comments: true`` creates the post's comments node, ``urn:xmpp:microblog:0:comments/<item
  id>`` on the blog's service (open access and publication, all items kept; with all items
  kept only when the service refuses those options; an existing node is reused), and links it
  from the entry (``rel='replies' title='comments'``).
- Items that are not acceptable Atom entries (hostile or malformed XML) are skipped with a
  warning: a bad item never makes a whole page fail.
- When the ``PUBSUB_CACHE`` plugin is loaded, microblog nodes are registered with it (an
  analyser of type ``blog``, synchronised, items parsed by :func:`cache_parser`: an
  unacceptable item is stored without parsed data instead of putting the whole node in error;
  ``mb_get`` skips it all the same).

Bridge methods: ``mb_send``, ``mb_get``, ``mb_retract`` (the pubsub API contract).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput, XMPPError
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0059 import RSMRequest, RSMResponse
from libervia.backend.plugins.plugin_xep_0060.bridge import items_extra, json_arg, service_arg
from libervia.backend.tools import atom, ids
from libervia.backend.tools import xml as xml_tools

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Microblogging over XMPP",
    "import_name": "XEP-0277",
    "type": "XEP",
    "protocols": ["XEP-0277"],
    "dependencies": ["XEP-0030", "XEP-0060"],
    "recommendations": ["PUBSUB_CACHE"],
    "main": "XEP_0277",
    "handler": False,
    "description": "Publish, read and retract blog posts (Atom entries over pubsub)",
}

NS_MICROBLOG = "urn:xmpp:microblog:0"
COMMENTS_NODE_PREFIX = f"{NS_MICROBLOG}:comments/"
#: publish-options of a post on a PEP service: keep every item (PEP keeps 1 by default)
PEP_PUBLISH_OPTIONS: dict[str, str] = {"pubsub#max_items": "max"}
#: configuration of a new comments node: anybody who can read the post can comment
COMMENTS_NODE_OPTIONS: dict[str, str] = {
    "pubsub#access_model": "open",
    "pubsub#publish_model": "open",
    "pubsub#max_items": "max",
}
#: keys of mb_send data; entry dict keys a frontend may send back when editing are ignored
SEND_KEYS = frozenset(
    {"id", "title", "title_xhtml", "content", "content_xhtml", "tags", "language", "comments"}
    | {"link", "links", "atom_id", "published"}
)
IGNORED_KEYS = frozenset({"author", "updated"})

#: the pubsub cache analyser of microblog nodes (its parser is set below)
ANALYSER_BASE: dict[str, Any] = {
    "name": "XEP-0277",
    "type": "blog",
    "namespace": atom.NS_ATOM,
    "node": NS_MICROBLOG,
    "to_sync": True,
}


def parse_microblog_item(item: domish.Element | str | bytes) -> dict[str, Any]:
    """The entry dict of a raw microblog pubsub item (the cache analyser's parser).

    Args:
        item: the ``<item/>`` element, or its XML.

    Raises:
        atom.AtomError: not an acceptable Atom entry (hostile, malformed, too big).
    """
    xml = xml_tools.serialise(item) if isinstance(item, domish.Element) else item
    return atom.parse_item(xml)


def cache_parser(item: domish.Element) -> dict[str, Any] | None:
    """The pubsub cache analyser's parser: :func:`parse_microblog_item`, None (logged) for
    an item that is not an acceptable Atom entry (one bad item must not stop the caching of a
    whole blog)."""
    try:
        return parse_microblog_item(item)
    except atom.AtomError as e:
        log.warning("blog item %r not parsed: %s", (item.getAttribute("id") or "")[:100], e)
        return None


@dataclass
class MicroblogPage:
    """Entries of a page of a blog, with the page's paging metadata (see ``ItemsResult``)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    rsm: RSMResponse | None = None
    complete: bool | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The serialisable answer of ``mb_get``."""
        data: dict[str, Any] = {"items": self.entries, "cached": self.cached}
        if self.rsm is not None:
            data["rsm"] = self.rsm.to_dict()
        if self.complete is not None:
            data["complete"] = self.complete
        return data


def comments_node(item_id: str) -> str:
    """The name of a post's comments node (XEP-0277 §3.1)."""
    return f"{COMMENTS_NODE_PREFIX}{item_id}"


def _is_pep(client: Any, service: JID | None) -> bool:
    """Whether ``service`` is a PEP service (an account: ours when None)."""
    return service is None or bool(service.user)


def check_send_data(data: Any) -> dict[str, Any]:
    """``mb_send`` data with the ignored keys removed.

    Raises:
        InvalidInput: not a dict, unknown keys, bad id, or neither title nor content.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("blog post data must be a dict")
    unknown = set(data) - SEND_KEYS - IGNORED_KEYS
    if unknown:
        raise InvalidInput(f"unknown blog post keys {sorted(unknown)} (known: {sorted(SEND_KEYS)})")
    checked = {k: v for k, v in data.items() if k in SEND_KEYS}
    item_id = checked.get("id")
    if item_id is not None and (not isinstance(item_id, str) or len(item_id) > 1024):
        raise InvalidInput("id must be a string of at most 1024 characters")
    if not any(checked.get(k) for k in ("title", "title_xhtml", "content", "content_xhtml")):
        raise InvalidInput("a blog post needs a title or a content")
    return checked


class XEP_0277:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.pubsub = host.plugins["XEP-0060"]
        # PEP (XEP-0163): our contacts' servers send us their new posts
        host.plugins["XEP-0030"].add_feature(f"{NS_MICROBLOG}+notify")
        self._register_bridge(host.bridge)
        if "PUBSUB_CACHE" in host.plugins:
            host.plugins["PUBSUB_CACHE"].register_analyser(
                {**ANALYSER_BASE, "parser": cache_parser}
            )
        else:
            log.info("no pubsub cache: blogs are always read from their service")

    # --- typed methods ------------------------------------------------------------------------

    async def send(
        self, client: Any, service: JID | None, node: str | None, data: Mapping[str, Any]
    ) -> str:
        """Publish a blog post (a new one, or a new version of post ``data["id"]``).

        Args:
            service: the blog's service (None: our PEP service).
            node: the blog node (None or "": ``urn:xmpp:microblog:0``).
            data: the ``mb_send`` data (see the pubsub API contract).

        Returns:
            the item id of the post.

        Raises:
            InvalidInput: invalid data.
            XMPPError, OperationTimeout, NotConnected: as the XEP-0060 plugin.
        """
        data = check_send_data(data)
        node = node or NS_MICROBLOG
        now = client.reactor.seconds()
        item_id = data.get("id") or ids.time_ordered_uuid(now)
        if data.get("comments") is True:
            data["comments"] = await self.create_comments_node(client, service, item_id)
        elif data.get("comments") is False:
            del data["comments"]
        try:
            entry_xml = atom.build_entry(
                data,
                author_jid=client.jid.userhost(),
                author_name=None,
                item_id=item_id,
                now=now,
            )
        except atom.AtomError as e:
            raise InvalidInput(f"blog post: {e}") from None
        payload = xml_tools.parse(entry_xml)
        return await self._publish(client, service, node, payload, item_id)

    async def _publish(
        self, client: Any, service: JID | None, node: str, payload: domish.Element, item_id: str
    ) -> str:
        """Publish the entry (publish-options on PEP; see the module docstring)."""
        if not _is_pep(client, service):
            return str(await self.pubsub.send_item(client, service, node, payload, item_id))
        try:
            return str(
                await self.pubsub.send_item(
                    client, service, node, payload, item_id, PEP_PUBLISH_OPTIONS
                )
            )
        except XMPPError as e:
            if e.condition != "conflict":
                raise
            log.info("%s: blog node %s configured otherwise: reconfiguring", client.profile, node)
        await self.pubsub.set_configuration(client, service, node, PEP_PUBLISH_OPTIONS)
        return str(
            await self.pubsub.send_item(
                client, service, node, payload, item_id, PEP_PUBLISH_OPTIONS
            )
        )

    async def create_comments_node(self, client: Any, service: JID | None, item_id: str) -> str:
        """Create (or reuse) the comments node of post ``item_id``; its ``xmpp:`` URI.

        Raises:
            XMPPError, OperationTimeout, NotConnected: as the XEP-0060 plugin.
        """
        node = comments_node(item_id)
        target = self.pubsub.service_of(client, service)
        try:
            await self.pubsub.create_node(client, target, node, COMMENTS_NODE_OPTIONS)
        except XMPPError as e:
            if e.condition == "conflict":  # it exists already (a post edited)
                log.debug("%s: comments node %s exists", client.profile, node)
            elif e.condition in ("not-acceptable", "bad-request", "feature-not-implemented"):
                log.info(
                    "%s: %s refused the comments node options (%s): all items kept only",
                    client.profile,
                    target.full(),
                    e.condition,
                )
                await self.pubsub.create_node(client, target, node, PEP_PUBLISH_OPTIONS)
            else:
                raise
        return atom.pubsub_uri(target.full(), node)

    async def get(
        self,
        client: Any,
        service: JID | None,
        node: str | None,
        max_items: int | None = None,
        item_ids: Sequence[str] | None = None,
        rsm: RSMRequest | None = None,
        order_by: str | None = None,
        *,
        use_cache: bool = True,
    ) -> MicroblogPage:
        """A page of blog posts, parsed (unacceptable items are skipped and logged).

        Raises:
            InvalidInput, XMPPError, OperationTimeout, NotConnected: as the XEP-0060 plugin.
        """
        result = await self.pubsub.get_items(
            client,
            service,
            node or NS_MICROBLOG,
            max_items,
            item_ids,
            None,
            rsm,
            order_by,
            use_cache=use_cache,
        )
        entries = [
            entry for item in result.items if (entry := self.item_entry(client, item)) is not None
        ]
        return MicroblogPage(entries, result.rsm, result.complete, result.cached)

    def item_entry(self, client: Any, item: domish.Element) -> dict[str, Any] | None:
        """The entry dict of a pubsub item; None (logged) when it is not an acceptable entry."""
        try:
            return parse_microblog_item(item)
        except atom.AtomError as e:
            log.warning(
                "%s: skipping blog item %r: %s",
                client.profile,
                (item.getAttribute("id") or "")[:100],
                e,
            )
            return None

    async def retract(
        self, client: Any, service: JID | None, node: str | None, item_id: str
    ) -> None:
        """Retract (delete) a blog post, notifying the subscribers.

        Raises:
            InvalidInput: no item id.
            XMPPError, OperationTimeout, NotConnected: as the XEP-0060 plugin.
        """
        if not item_id:
            raise InvalidInput("an item id is required")
        await self.pubsub.retract_items(client, service, node or NS_MICROBLOG, [item_id], True)

    # --- bridge -------------------------------------------------------------------------------

    def _register_bridge(self, bridge: Any) -> None:
        service = ("service", "s", 'the blog\'s pubsub service ("": our own PEP service)')
        node = ("node", "s", f'the blog node ("": {NS_MICROBLOG})')
        bridge.add_method(
            "mb_send",
            self._mb_send,
            args=[
                service,
                node,
                (
                    "data",
                    "s",
                    "serialised dict: id (to edit a post), title, title_xhtml, content, "
                    "content_xhtml, tags, language, comments (node URI, or true to create "
                    "one), link, links",
                ),
                ("profile_key", "s"),
            ],
            returns="s",
            doc="Publish a blog post (XEP-0277); returns its item id.",
        )
        bridge.add_method(
            "mb_get",
            self._mb_get,
            args=[
                service,
                node,
                ("max_items", "i", "-1: no maximum"),
                ("item_ids", "as", "only these posts"),
                (
                    "extra",
                    "s",
                    "serialised dict: rsm {max, before, after, index}, order_by "
                    "(creation, modification), use_cache (default true)",
                ),
                ("profile_key", "s"),
            ],
            returns="s",
            doc="A page of blog posts (from the pubsub cache when it has the node): serialised "
            "dict with items (entry dicts: id, title, content, content_xhtml, author, "
            "published, updated, tags, links, comments, language), rsm, complete, cached.",
        )
        bridge.add_method(
            "mb_retract",
            self._mb_retract,
            args=[service, node, ("item_id", "s"), ("profile_key", "s")],
            returns="",
            doc="Retract (delete) a blog post.",
        )

    async def _mb_send(self, service: str, node: str, data: str, profile_key: str) -> str:
        decoded = json_arg(data, "data")
        client = await self.host.client_of(profile_key)
        return await self.send(client, service_arg(service), node or None, decoded)

    async def _mb_get(
        self,
        service: str,
        node: str,
        max_items: int,
        item_ids: list[str],
        extra: str,
        profile_key: str,
    ) -> str:
        decoded = items_extra(json_arg(extra, "extra"))
        client = await self.host.client_of(profile_key)
        page = await self.get(
            client,
            service_arg(service),
            node or None,
            max_items if max_items >= 0 else None,
            item_ids or None,
            decoded["rsm"],
            decoded["order_by"],
            use_cache=decoded["use_cache"],
        )
        return json.dumps(page.to_dict())

    async def _mb_retract(self, service: str, node: str, item_id: str, profile_key: str) -> None:
        client = await self.host.client_of(profile_key)
        await self.retract(client, service_arg(service), node or None, item_id)
