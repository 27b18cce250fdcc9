"""The ``ps_*`` bridge methods and the ``ps_event`` signal of the XEP-0060 plugin.

Thin adapters: bridge strings and serialised dicts in, the typed plugin methods called,
serialised dicts out. A ``service`` of ``""`` is the profile's own PEP service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.xmpp import parse_jid_arg
from libervia.backend.plugins.plugin_xep_0059 import RSMRequest
from libervia.backend.tools import xml as xml_tools

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0060 import XEP_0060, ItemsResult
    from libervia.backend.plugins.plugin_xep_0060.events import Event

SERVICE = ("service", "s", 'pubsub service JID ("": our own PEP service)')
NODE = ("node", "s", "node name")
PROFILE_KEY = ("profile_key", "s")
#: largest payload accepted from a frontend (the service may refuse less)
MAX_PAYLOAD = 10 * 1024 * 1024


def service_arg(value: str) -> JID | None:
    return parse_jid_arg(value, "service") if value else None


def json_arg(value: str, what: str, expected: type = dict) -> Any:
    """A serialised value (``""``: empty)."""
    if not value:
        return expected()
    try:
        data = json.loads(value)
    except ValueError as e:
        raise InvalidInput(f"{what} is not valid JSON: {e}") from None
    if not isinstance(data, expected):
        raise InvalidInput(f"{what} must be a JSON {expected.__name__}")
    return data


def items_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    """Decode the ``extra`` of an items request: ``rsm``, ``order_by``, ``use_cache``."""
    known = {"rsm", "order_by", "use_cache"}
    unknown = set(extra) - known
    if unknown:
        raise InvalidInput(f"unknown extra keys {sorted(unknown)} (known: {sorted(known)})")
    use_cache = extra.get("use_cache", True)
    if not isinstance(use_cache, bool):
        raise InvalidInput("use_cache must be a boolean")
    order_by = extra.get("order_by")
    if order_by is not None and not isinstance(order_by, str):
        raise InvalidInput("order_by must be a string")
    rsm = RSMRequest.from_dict(extra["rsm"]) if extra.get("rsm") is not None else None
    return {"rsm": rsm, "order_by": order_by, "use_cache": use_cache}


def items_result(service: JID, node: str, result: ItemsResult) -> str:
    """The serialised answer of ``ps_items_get`` / ``ps_cache_get``."""
    data: dict[str, Any] = {
        "service": service.full(),
        "node": node,
        "items": [xml_tools.serialise(item) for item in result.items],
        "cached": result.cached,
    }
    if result.rsm is not None:
        data["rsm"] = result.rsm.to_dict()
    if result.complete is not None:
        data["complete"] = result.complete
    return json.dumps(data)


def _options(options: Mapping[str, str]) -> dict[str, str | list[str]]:
    """a{ss} form values: a value with new lines is a list (list-multi, jid-multi...)."""
    return {k: (v.split("\n") if "\n" in v else v) for k, v in options.items()}


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def register(plugin: XEP_0060, bridge: Any) -> None:
    """Declare the plugin's bridge methods and signal."""
    adapters = Adapters(plugin)

    def add(name: str, handler: Any, args: list[Any], returns: str, doc: str) -> None:
        bridge.add_method(name, handler, args=args, returns=returns, doc=doc)

    add(
        "ps_node_create",
        adapters.ps_node_create,
        [SERVICE, ("node", "s", '"" lets the service choose'), ("options", "a{ss}"), PROFILE_KEY],
        "s",
        "Create a node with configuration options; returns its name.",
    )
    add("ps_node_delete", adapters.ps_node_delete, [SERVICE, NODE, PROFILE_KEY], "",
        "Delete a node (owner).")  # fmt: skip
    add(
        "ps_node_configuration_get",
        adapters.ps_node_configuration_get,
        [SERVICE, NODE, PROFILE_KEY],
        "a{ss}",
        "A node's configuration (owner); multiple values are separated by new lines.",
    )
    add(
        "ps_node_configuration_set",
        adapters.ps_node_configuration_set,
        [SERVICE, NODE, ("options", "a{ss}"), PROFILE_KEY],
        "",
        "Change a node's configuration (owner).",
    )
    add(
        "ps_node_metadata_get",
        adapters.ps_node_metadata_get,
        [SERVICE, NODE, PROFILE_KEY],
        "s",
        "A node's metadata (disco#info): serialised dict of the meta-data form fields and "
        "identities.",
    )
    add(
        "ps_item_send",
        adapters.ps_item_send,
        [
            SERVICE,
            NODE,
            ("payload", "s", "the item's payload: one XML element"),
            ("item_id", "s", '"": the service chooses'),
            ("extra", "s", "serialised dict: publish_options {field: value}"),
            PROFILE_KEY,
        ],
        "s",
        "Publish an item; returns its id.",
    )
    add(
        "ps_items_get",
        adapters.ps_items_get,
        [
            SERVICE,
            NODE,
            ("max_items", "i", "-1: no maximum"),
            ("item_ids", "as", "only these items"),
            ("sub_id", "s", "subscription id, if the service needs it"),
            (
                "extra",
                "s",
                "serialised dict: rsm {max, before, after, index}, order_by "
                "(creation, modification), use_cache (default true)",
            ),
            PROFILE_KEY,
        ],  # fmt: skip
        "s",
        "A page of items (from the pubsub cache when it has the node): serialised dict with "
        "service, node, items (XML), rsm {first, last, index, count}, complete, cached.",
    )
    add(
        "ps_item_retract",
        adapters.ps_item_retract,
        [SERVICE, NODE, ("item_id", "s"), ("notify", "b", "notify subscribers"), PROFILE_KEY],
        "",
        "Retract (delete) an item.",
    )
    add("ps_node_purge", adapters.ps_node_purge, [SERVICE, NODE, PROFILE_KEY], "",
        "Delete every item of a node (owner).")  # fmt: skip
    add(
        "ps_subscribe",
        adapters.ps_subscribe,
        [SERVICE, NODE, ("options", "s", "serialised dict of subscription options"), PROFILE_KEY],
        "s",
        "Subscribe to a node; returns serialised {subid, state}.",
    )
    add("ps_unsubscribe", adapters.ps_unsubscribe, [SERVICE, NODE, PROFILE_KEY], "",
        "Unsubscribe from a node.")  # fmt: skip
    add(
        "ps_subscriptions_get",
        adapters.ps_subscriptions_get,
        [SERVICE, ("node", "s", '"": every node'), PROFILE_KEY],
        "s",
        "Our subscriptions: serialised list of {service, node, subscriber, state, subid}.",
    )
    add(
        "ps_node_affiliations_get",
        adapters.ps_node_affiliations_get,
        [SERVICE, NODE, PROFILE_KEY],
        "a{ss}",
        "Everybody's affiliation with a node (owner): JID -> affiliation.",
    )
    add(
        "ps_node_affiliations_set",
        adapters.ps_node_affiliations_set,
        [SERVICE, NODE, ("affiliations", "a{ss}", "JID -> affiliation"), PROFILE_KEY],
        "",
        "Change affiliations with a node (owner).",
    )
    add(
        "ps_affiliations_get",
        adapters.ps_affiliations_get,
        [SERVICE, ("node", "s", '"": every node'), PROFILE_KEY],
        "a{ss}",
        "Our affiliations: node -> affiliation.",
    )
    bridge.add_signal(
        "ps_event",
        [
            ("category", "s", '"generic", or the node type given by its cache analyser'),
            ("service", "s"),
            ("node", "s"),
            ("event_type", "s", "items, retract, purge, delete or configuration"),
            ("data", "s", "serialised dict: items (XML) and item_ids, or item_ids retracted"),
            ("profile", "s"),
        ],
        doc="A pubsub notification.",
    )


def emit_event(bridge: Any, client: Any, event: Event) -> None:
    bridge.emit(
        "ps_event",
        event.category,
        event.service.full(),
        event.node,
        event.kind,
        json.dumps(event.signal_data()),
        client.profile,
    )


class Adapters:
    def __init__(self, plugin: XEP_0060) -> None:
        self.plugin = plugin
        self.host = plugin.host

    async def ps_node_create(
        self, service: str, node: str, options: Mapping[str, str], profile_key: str
    ) -> str:
        client = await self.host.client_of(profile_key)
        return await self.plugin.create_node(
            client, service_arg(service), node or None, _options(options)
        )

    async def ps_node_delete(self, service: str, node: str, profile_key: str) -> None:
        client = await self.host.client_of(profile_key)
        await self.plugin.delete_node(client, service_arg(service), node)

    async def ps_node_configuration_get(
        self, service: str, node: str, profile_key: str
    ) -> dict[str, str]:
        client = await self.host.client_of(profile_key)
        config = await self.plugin.get_configuration(client, service_arg(service), node)
        return {k: _text(v) for k, v in config.items()}

    async def ps_node_configuration_set(
        self, service: str, node: str, options: Mapping[str, str], profile_key: str
    ) -> None:
        client = await self.host.client_of(profile_key)
        await self.plugin.set_configuration(client, service_arg(service), node, _options(options))

    async def ps_node_metadata_get(self, service: str, node: str, profile_key: str) -> str:
        client = await self.host.client_of(profile_key)
        metadata = await self.plugin.get_metadata(client, service_arg(service), node)
        return json.dumps(metadata, default=str)

    async def ps_item_send(
        self, service: str, node: str, payload: str, item_id: str, extra: str, profile_key: str
    ) -> str:
        data = json_arg(extra, "extra")
        unknown = set(data) - {"publish_options"}
        if unknown:
            raise InvalidInput(f"unknown extra keys {sorted(unknown)}")
        options = data.get("publish_options") or None
        if options is not None and not isinstance(options, dict):
            raise InvalidInput("publish_options must be a dict")
        if len(payload) > MAX_PAYLOAD:
            raise InvalidInput(f"payload bigger than {MAX_PAYLOAD} characters")
        try:
            element = xml_tools.parse(payload) if payload else None
        except xml_tools.XMLParseError as e:
            raise InvalidInput(f"payload: {e}") from None
        client = await self.host.client_of(profile_key)
        return await self.plugin.send_item(
            client, service_arg(service), node, element, item_id or None, options
        )

    async def ps_items_get(
        self,
        service: str,
        node: str,
        max_items: int,
        item_ids: list[str],
        sub_id: str,
        extra: str,
        profile_key: str,
    ) -> str:
        decoded = items_extra(json_arg(extra, "extra"))
        client = await self.host.client_of(profile_key)
        target = self.plugin.service_of(client, service_arg(service))
        result = await self.plugin.get_items(
            client,
            target,
            node,
            max_items if max_items >= 0 else None,
            item_ids or None,
            sub_id or None,
            decoded["rsm"],
            decoded["order_by"],
            use_cache=decoded["use_cache"],
        )
        return items_result(target, node, result)

    async def ps_item_retract(
        self, service: str, node: str, item_id: str, notify: bool, profile_key: str
    ) -> None:
        if not item_id:
            raise InvalidInput("an item id is required")
        client = await self.host.client_of(profile_key)
        await self.plugin.retract_items(client, service_arg(service), node, [item_id], notify)

    async def ps_node_purge(self, service: str, node: str, profile_key: str) -> None:
        client = await self.host.client_of(profile_key)
        await self.plugin.purge_node(client, service_arg(service), node)

    async def ps_subscribe(self, service: str, node: str, options: str, profile_key: str) -> str:
        opts = json_arg(options, "options")
        client = await self.host.client_of(profile_key)
        sub = await self.plugin.subscribe(client, service_arg(service), node, options=opts or None)
        return json.dumps({"subid": sub.sub_id, "state": sub.state})

    async def ps_unsubscribe(self, service: str, node: str, profile_key: str) -> None:
        client = await self.host.client_of(profile_key)
        await self.plugin.unsubscribe(client, service_arg(service), node)

    async def ps_subscriptions_get(self, service: str, node: str, profile_key: str) -> str:
        client = await self.host.client_of(profile_key)
        subs = await self.plugin.get_subscriptions(client, service_arg(service), node or None)
        return json.dumps([s.to_dict() for s in subs])

    async def ps_node_affiliations_get(
        self, service: str, node: str, profile_key: str
    ) -> dict[str, str]:
        client = await self.host.client_of(profile_key)
        affs = await self.plugin.get_node_affiliations(client, service_arg(service), node)
        return {jid.full(): aff for jid, aff in affs.items()}

    async def ps_node_affiliations_set(
        self, service: str, node: str, affiliations: Mapping[str, str], profile_key: str
    ) -> None:
        decoded = {parse_jid_arg(j, "affiliation JID"): a for j, a in affiliations.items()}
        client = await self.host.client_of(profile_key)
        await self.plugin.set_node_affiliations(client, service_arg(service), node, decoded)

    async def ps_affiliations_get(
        self, service: str, node: str, profile_key: str
    ) -> dict[str, str]:
        client = await self.host.client_of(profile_key)
        return await self.plugin.get_affiliations(client, service_arg(service), node or None)
