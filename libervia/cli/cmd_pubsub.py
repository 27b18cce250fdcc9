"""``li pubsub``: publish-subscribe (XEP-0060) nodes and items, and the daemon's pubsub cache.

Every command takes ``-s/--service`` (default: the profile's own PEP service) and, where it acts
on a node, ``-n/--node``. Structured values cross the bridge as serialised dicts (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, CommandError, Group, in_thread
from libervia.cli.cmd_message import time_arg
from libervia.cli.output import format_time

#: prefix added to the field names of -f that have none (``max_items``: ``pubsub#max_items``)
PUBSUB_PREFIX = "pubsub#"
#: XEP-0413 orders of ``li pubsub get`` (and ``li blog get``)
ITEMS_ORDERS = ("creation", "modification")
#: operators of the ``parsed`` filters of a cache search (those of the daemon's
#: memory/storage/pubsub_search.py: li does not import the backend)
PARSED_OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "in",
    "not_in",
    "like",
    "ilike",
    "contains",
    "overlap",
    "exists",
    "not_exists",
)
#: orders of a cache search, besides the paths of the parsed data
SEARCH_ORDERS = ("creation", "modification", "item_id", "rank")
#: default page size of ``li pubsub get``, ``li pubsub cache get`` and ``li blog get``
DEFAULT_MAX = 10
#: default number of results of ``li pubsub cache search``
DEFAULT_SEARCH_LIMIT = 20


class Metavar(tuple[str, ...]):
    """The metavar of an option taking several words (``-f NAME VALUE``): argparse uses the
    words, the documentation (:mod:`libervia.cli.docgen`) prints it with ``str``."""

    def __str__(self) -> str:
        return " ".join(self)


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def deserialise(text: str, default: Any = None) -> Any:
    """A serialised value from the daemon (JSON; ``""`` is ``default``, an empty dict unless
    told)."""
    if not text:
        return {} if default is None else default
    return json.loads(text)


def field_name(name: str) -> str:
    """A data form field name of ``-f``: ``pubsub#`` is added when the name has no ``#``."""
    return name if "#" in name else PUBSUB_PREFIX + name


def fields_dict(pairs: Sequence[Sequence[str]]) -> dict[str, str]:
    """``-f NAME VALUE`` options as a form's {field: value} (the last value of a name wins)."""
    return {field_name(name): value for name, value in pairs}


def check_payload(text: str) -> str:
    """The payload of an item, checked to be one well-formed XML element (an XML declaration
    is dropped). Raises CommandError (a usage error) otherwise."""
    payload = text.strip()
    if payload.startswith("<?xml"):
        end = payload.find("?>")
        payload = payload[end + 2 :].strip() if end != -1 else payload
    if not payload:
        raise CommandError(
            "nothing to publish: give the item's XML on standard input", C.EXIT_USAGE
        )
    try:
        ET.fromstring(payload)
    except ET.ParseError as e:
        raise CommandError(
            f"the payload is not one well-formed XML element ({e}); example: "
            "<note xmlns='urn:example:note'>hello</note>",
            C.EXIT_USAGE,
        ) from None
    return payload


# --- shared arguments ----------------------------------------------------------------------


def add_service(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-s",
        "--service",
        default="",
        metavar="JID",
        help="pubsub service (default: the profile's own PEP service)",
    )


def add_node(parser: argparse.ArgumentParser, required: bool = True, help: str = "") -> None:
    parser.add_argument(
        "-n",
        "--node",
        default="",
        required=required,
        metavar="NODE",
        help=help or "the node",
    )


def add_fields(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-f",
        "--field",
        dest="fields",
        action="append",
        nargs=2,
        default=[],
        metavar=Metavar(("NAME", "VALUE")),
        help=f"{what} (repeatable); a NAME without '#' gets the pubsub# prefix "
        "(max_items: pubsub#max_items)",
    )


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do it without confirmation")


def add_page_arguments(parser: argparse.ArgumentParser, cache: bool = False) -> None:
    """``-m``, ``-i`` and the paging (RSM, XEP-0059) options of the commands reading items."""
    parser.add_argument(
        "-m",
        "--max",
        type=non_negative_int,
        default=DEFAULT_MAX,
        metavar="N",
        help=f"at most N items, the most recent (default: {DEFAULT_MAX}; 0: no maximum); "
        "with --before/--after/--index, the page size",
    )
    parser.add_argument(
        "-i",
        "--item",
        dest="items",
        action="append",
        default=[],
        metavar="ITEM_ID",
        help="only the item ITEM_ID (repeatable)",
    )
    page = parser.add_mutually_exclusive_group()
    page.add_argument(
        "--before",
        nargs="?",
        const="",
        metavar="ID",
        help="the page before item ID (--before alone: the last page); write --before=ID",
    )
    page.add_argument("--after", metavar="ID", help="the page after item ID; write --after=ID")
    page.add_argument(
        "--index",
        type=non_negative_int,
        metavar="N",
        help="the page starting at the Nth item (0: the first)",
    )
    parser.add_argument(
        "--order-by",
        choices=ITEMS_ORDERS,
        help="order of the items: creation or modification date (XEP-0413, if the service "
        "supports it)",
    )
    if not cache:
        parser.add_argument(
            "--no-cache",
            action="store_true",
            help="ask the service, not the daemon's pubsub cache",
        )


def page_request(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """``max_items`` and the ``extra`` dict (``rsm``, ``order_by``, ``use_cache``) of an
    items request (``ps_items_get``, ``mb_get``, ``ps_cache_get``)."""
    rsm: dict[str, Any] = {}
    if args.before is not None:
        rsm["before"] = args.before
    if args.after is not None:
        rsm["after"] = args.after
    if args.index is not None:
        rsm["index"] = args.index
    extra: dict[str, Any] = {}
    if args.items:
        if rsm:
            raise CommandError(
                "-i cannot be combined with --before, --after or --index", C.EXIT_USAGE
            )
        max_items = -1
    elif rsm:
        if args.max:
            rsm["max"] = args.max
        extra["rsm"] = rsm
        max_items = -1
    else:
        max_items = args.max or -1
    if args.order_by:
        extra["order_by"] = args.order_by
    if getattr(args, "no_cache", False):
        extra["use_cache"] = False
    return max_items, extra


def page_text(result: Mapping[str, Any]) -> str:
    """What a page of items is (count, index, cache) and the options to get the pages around."""
    items = result.get("items") or []
    rsm = result.get("rsm") or {}
    text = f"{len(items)} item{'' if len(items) == 1 else 's'}"
    if rsm.get("count") is not None:
        text += f" of {rsm['count']}"
    if rsm.get("index") is not None:
        text += f" from index {rsm['index']}"
    if result.get("cached"):
        text += " (from the cache)"
    if rsm.get("first") and not result.get("complete"):
        # as options: an item id may start with "-"
        text += f"; pages: --before={rsm['first']} --after={rsm.get('last') or ''}"
    return text


def show_items(cli: Cli, result: Mapping[str, Any]) -> None:
    """The items' XML, then the paging metadata (an informational line)."""

    def render() -> None:
        for item in result.get("items") or []:
            cli.out.text(item)
        cli.out.info(page_text(result), "dim")

    cli.out.show(dict(result), render)


def where(service: str, node: str) -> str:
    """``node NODE on SERVICE`` for the informational lines."""
    return f"node {node!r} on {service or 'your PEP service'}"


# --- li pubsub node ------------------------------------------------------------------------


class NodeCreate(Command):
    name = "create"
    help = "create a node"
    description = (
        "Create a node on a pubsub service, configured with the -f fields (the service's "
        "defaults for the others). Without -n, the service chooses the node's name (an "
        "instant node). Prints the node's name."
    )
    examples = (
        ("li pubsub node create -n notes", "create the node 'notes' on your PEP service"),
        (
            "li pubsub node create -s pubsub.example.org -n news -f access_model open "
            "-f max_items max",
            "an open node keeping every item",
        ),
        ("li pubsub node create -s pubsub.example.org", "an instant node (its name is printed)"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser, False, "name of the node (default: chosen by the service)")
        add_fields(parser, "configuration field")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        node = await cli.bridge.ps_node_create(
            args.service, args.node, fields_dict(args.fields), cli.profile
        )
        cli.out.info(f"{where(args.service, node)} created")
        cli.out.show({"service": args.service, "node": node}, lambda: cli.out.text(node))


class NodeDelete(Command):
    name = "delete"
    help = "delete a node and its items"
    examples = (
        ("li pubsub node delete -n notes", "delete the node 'notes' of your PEP service"),
        ("li pubsub node delete -s pubsub.example.org -n news -f", "without confirmation"),
    )
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        add_force(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.confirm(
            f"Delete the {where(args.service, args.node)}, with all its items?", args.force
        )
        await cli.bridge.ps_node_delete(args.service, args.node, cli.profile)
        cli.out.info(f"{where(args.service, args.node)} deleted")


class NodeInfo(Command):
    name = "info"
    help = "show a node's configuration and metadata"
    description = (
        "Show the configuration of a node (only its owner may read it) and its metadata (the "
        "meta-data form of service discovery: title, type, owners...)."
    )
    examples = (
        ("li pubsub node info -n urn:xmpp:microblog:0", "your blog node"),
        ("li pubsub node info -s pubsub.example.org -n news -t metadata", "only the metadata"),
        ("li pubsub node info -n notes -O json", "as JSON"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        parser.add_argument(
            "-t",
            "--type",
            choices=("configuration", "metadata", "both"),
            default="both",
            help="what to show (default: both)",
        )

    async def run(self, cli: Cli) -> None:
        args, bridge = cli.args, cli.bridge
        data: dict[str, Any] = {}
        if args.type in ("configuration", "both"):
            data["configuration"] = dict(
                await bridge.ps_node_configuration_get(args.service, args.node, cli.profile)
            )
        if args.type in ("metadata", "both"):
            data["metadata"] = deserialise(
                await bridge.ps_node_metadata_get(args.service, args.node, cli.profile)
            )

        def render() -> None:
            for title, values in data.items():
                cli.out.mapping(values, title=title)

        cli.out.show(data, render)


class NodePurge(Command):
    name = "purge"
    help = "delete every item of a node (the node stays)"
    examples = (
        ("li pubsub node purge -n notes", "empty the node 'notes' of your PEP service"),
        ("li pubsub node purge -s pubsub.example.org -n news -f", "without confirmation"),
    )
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        add_force(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.confirm(f"Delete every item of the {where(args.service, args.node)}?", args.force)
        await cli.bridge.ps_node_purge(args.service, args.node, cli.profile)
        cli.out.info(f"{where(args.service, args.node)} purged")


class Node(Group):
    name = "node"
    help = "create, delete, inspect and purge nodes"
    subcommands = (NodeCreate, NodeDelete, NodeInfo, NodePurge)


# --- li pubsub set/get/delete ---------------------------------------------------------------


class PubsubSet(Command):
    name = "set"
    help = "publish an item (its XML payload read from standard input)"
    description = (
        "Publish an item on a node: its payload, one XML element, is read from standard "
        "input (checked before anything is sent). With -i, the item of that id is replaced; "
        "else the service chooses the id. Prints the item's id."
    )
    examples = (
        (
            "echo \"<note xmlns='urn:example:note'>hi</note>\" | li pubsub set -n notes",
            "publish a note on your PEP service",
        ),
        (
            "li pubsub set -s pubsub.example.org -n news -i first < item.xml",
            "publish (or replace) the item 'first'",
        ),
        (
            "li pubsub set -n notes -f max_items max -f access_model open < note.xml",
            "with publish options",
        ),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        parser.add_argument(
            "-i",
            "--item",
            default="",
            metavar="ITEM_ID",
            help="id of the item (default: chosen by the service)",
        )
        add_fields(parser, "publish option")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        if sys.stdin.isatty():
            cli.stderr.write("li: type the item's XML, then Ctrl-D\n")
        payload = check_payload(await in_thread(sys.stdin.read))
        extra: dict[str, Any] = {}
        if args.fields:
            extra["publish_options"] = fields_dict(args.fields)
        item_id = await cli.bridge.ps_item_send(
            args.service, args.node, payload, args.item, json.dumps(extra), cli.profile
        )
        cli.out.info(f"item published on the {where(args.service, args.node)}")
        cli.out.show(
            {"service": args.service, "node": args.node, "item_id": item_id},
            lambda: cli.out.text(item_id),
        )


class PubsubGet(Command):
    name = "get"
    help = "get items of a node (their XML)"
    description = (
        "Print the XML of the items of a node: the most recent ones, a page (RSM: --before, "
        "--after, --index) or the items asked with -i. The daemon answers from its pubsub "
        "cache when the node is cached (--no-cache asks the service). After the items, a line "
        "tells the count and the options to get the pages around."
    )
    examples = (
        ("li pubsub get -n notes", "the last 10 items of your node 'notes'"),
        ("li pubsub get -s pubsub.example.org -n news -m 20 --before", "the last page of 20"),
        ("li pubsub get -n notes --after=ID", "the page after the item ID"),
        ("li pubsub get -n notes -i first -i second -O json", "two items, as JSON"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        add_page_arguments(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        max_items, extra = page_request(args)
        result = deserialise(
            await cli.bridge.ps_items_get(
                args.service, args.node, max_items, args.items, "", json.dumps(extra), cli.profile
            )
        )
        show_items(cli, result)


class PubsubDelete(Command):
    name = "delete"
    help = "delete (retract) an item"
    examples = (
        ("li pubsub delete -n notes -i first", "delete the item 'first' of your node 'notes'"),
        ("li pubsub delete -s pubsub.example.org -n news -i x --notify -f", "notify subscribers"),
    )
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        parser.add_argument("-i", "--item", required=True, metavar="ITEM_ID", help="id of the item")
        parser.add_argument(
            "-N", "--notify", action="store_true", help="notify the subscribers of the deletion"
        )
        add_force(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.confirm(
            f"Delete the item {args.item!r} of the {where(args.service, args.node)}?",
            args.force,
        )
        await cli.bridge.ps_item_retract(
            args.service, args.node, args.item, args.notify, cli.profile
        )
        cli.out.info(f"item {args.item!r} deleted")


# --- subscriptions and affiliations --------------------------------------------------------


class PubsubSubscribe(Command):
    name = "subscribe"
    help = "subscribe to a node"
    examples = (
        ("li pubsub subscribe -s pubsub.example.org -n news", "get the new items of 'news'"),
        (
            "li pubsub subscribe -s pubsub.example.org -n news -f deliver false",
            "with a subscription option",
        ),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        add_fields(parser, "subscription option")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        result = deserialise(
            await cli.bridge.ps_subscribe(
                args.service, args.node, json.dumps(fields_dict(args.fields)), cli.profile
            )
        )

        def render() -> None:
            state = result.get("state") or "subscribed"
            text = f"{state} to the {where(args.service, args.node)}"
            if result.get("subid"):
                text += f" (subscription id {result['subid']})"
            cli.out.text(text)

        cli.out.show(result, render)


class PubsubUnsubscribe(Command):
    name = "unsubscribe"
    help = "unsubscribe from a node"
    examples = (("li pubsub unsubscribe -s pubsub.example.org -n news", "no more news"),)
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.bridge.ps_unsubscribe(args.service, args.node, cli.profile)
        cli.out.info(f"unsubscribed from the {where(args.service, args.node)}")


class PubsubSubscriptions(Command):
    name = "subscriptions"
    help = "list your subscriptions on a service"
    examples = (
        ("li pubsub subscriptions -s pubsub.example.org", "every subscription on the service"),
        ("li pubsub subscriptions -s pubsub.example.org -n news -O json", "to one node, JSON"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser, False, "only the subscriptions to this node")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        subscriptions = deserialise(
            await cli.bridge.ps_subscriptions_get(args.service, args.node, cli.profile), []
        )

        def render() -> None:
            if not subscriptions:
                cli.out.info("no subscriptions", "dim")
                return
            cli.out.table(
                subscriptions,
                [
                    ("service", "service"),
                    ("node", "node"),
                    ("subscriber", "subscriber"),
                    ("state", "state"),
                    ("subid", "subscription id"),
                ],
            )

        cli.out.show(subscriptions, render)


class PubsubAffiliations(Command):
    name = "affiliations"
    help = "list your affiliations (owner, publisher...) on a service"
    examples = (
        ("li pubsub affiliations -s pubsub.example.org", "your affiliation to each node"),
        ("li pubsub affiliations -n notes -O json", "to your node 'notes', as JSON"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser, False, "only the affiliation to this node")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        affiliations = dict(
            await cli.bridge.ps_affiliations_get(args.service, args.node, cli.profile)
        )

        def render() -> None:
            if not affiliations:
                cli.out.info("no affiliations", "dim")
                return
            rows = [{"node": n, "affiliation": a} for n, a in sorted(affiliations.items())]
            cli.out.table(rows, [("node", "node"), ("affiliation", "affiliation")])

        cli.out.show(affiliations, render)


# --- li pubsub cache -----------------------------------------------------------------------


def parsed_path(text: str) -> list[str | int]:
    """A dotted path in the parsed data (``author.name``; a number is an array index:
    ``tags.0``)."""
    parts = text.split(".")
    if not text or not all(parts):
        raise ValueError(f"invalid path {text!r}: keys separated by dots (author.name)")
    return [int(p) if p.isdigit() else p for p in parts]


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def json_or_text(text: str) -> Any:
    """A value given on the command line: JSON when it is valid JSON (``3``, ``true``,
    ``["a", "b"]``), else the string itself (``NaN`` and ``Infinity`` too: Python's json
    accepts them, JSON does not)."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def parsed_filter(path: str, op: str, value: str) -> dict[str, Any]:
    """A ``--parsed PATH OP VALUE`` option as a filter of the search query. ``exists`` and
    ``not_exists`` take true or false as VALUE (``exists false`` is ``not_exists``).
    Raises ValueError."""
    if op not in PARSED_OPERATORS:
        raise ValueError(f"unknown operator {op!r} (known: {', '.join(PARSED_OPERATORS)})")
    spec: dict[str, Any] = {"path": parsed_path(path), "op": op}
    parsed_value = json_or_text(value)
    if op in ("exists", "not_exists"):
        if not isinstance(parsed_value, bool):
            raise ValueError(f"{op} takes true or false as VALUE, not {value!r}")
        if not parsed_value:
            spec["op"] = "not_exists" if op == "exists" else "exists"
    elif parsed_value is None:
        raise ValueError(f"{op} needs a value, not null (exists false finds what has none)")
    else:
        spec["value"] = parsed_value
    return spec


class ParsedFilterAction(argparse.Action):
    """``--parsed PATH OP VALUE``: appends the filter dict, or is a usage error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        try:
            spec = parsed_filter(*values)
        except ValueError as e:
            raise argparse.ArgumentError(self, str(e)) from None
        filters = list(getattr(namespace, self.dest, None) or [])
        filters.append(spec)
        setattr(namespace, self.dest, filters)


def order_arg(text: str) -> dict[str, Any]:
    """A ``--order-by`` of a cache search: ``creation``, ``modification``, ``item_id``,
    ``rank`` or ``parsed.PATH``, then optionally ``:asc`` or ``:desc``."""
    key, direction = text, "asc"
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        if tail in ("asc", "desc"):
            key, direction = head, tail
    if key in SEARCH_ORDERS:
        return {"order": key, "direction": direction}
    if key.startswith("parsed."):
        try:
            return {"path": parsed_path(key.removeprefix("parsed.")), "direction": direction}
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    raise argparse.ArgumentTypeError(
        f"invalid order {text!r}: {', '.join(SEARCH_ORDERS)} or parsed.PATH, optionally "
        "followed by :asc or :desc"
    )


def search_query(args: argparse.Namespace) -> dict[str, Any]:
    """The query of ``ps_cache_search`` (see the daemon's pubsub_search module) made from the
    options of ``li pubsub cache search``."""
    query: dict[str, Any] = {}
    for key, values in (
        ("profiles", args.profiles),
        ("services", args.services),
        ("nodes", args.nodes),
        ("types", args.types),
        ("subtypes", args.subtypes),
        ("names", args.items),
    ):
        if values:
            query[key] = list(values)
    if args.fts:
        query["fts"] = args.fts
    if args.parsed:
        query["parsed"] = list(args.parsed)
    if args.order_by:
        query["order-by"] = list(args.order_by)
    if args.index:
        query["index"] = args.index
    if args.limit:
        query["limit"] = args.limit
    return query


def add_cache_filters(parser: argparse.ArgumentParser) -> None:
    """The node filters shared by ``cache purge`` and ``cache search`` (repeatable)."""
    parser.add_argument(
        "--profile",
        dest="profiles",
        action="append",
        default=[],
        metavar="PROFILE",
        help="only the nodes cached for this profile (repeatable)",
    )
    parser.add_argument(
        "-s",
        "--service",
        dest="services",
        action="append",
        default=[],
        metavar="JID",
        help="only the nodes of this service (repeatable)",
    )
    parser.add_argument(
        "-n",
        "--node",
        dest="nodes",
        action="append",
        default=[],
        metavar="NODE",
        help="only the nodes of this name (repeatable)",
    )
    parser.add_argument(
        "-t",
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="TYPE",
        help="only the nodes of this type, as set by the analysers: blog... (repeatable)",
    )
    parser.add_argument(
        "--subtype",
        dest="subtypes",
        action="append",
        default=[],
        metavar="SUBTYPE",
        help="only the nodes of this subtype (repeatable)",
    )


class CacheGet(Command):
    name = "get"
    help = "get items from the daemon's pubsub cache only"
    description = (
        "Print the XML of items of a node as stored in the daemon's pubsub cache, without "
        "asking the service (an error when the node is not cached). Same options as "
        "li pubsub get."
    )
    examples = (
        ("li pubsub cache get -n urn:xmpp:microblog:0", "your cached blog items"),
        (
            "li pubsub cache get -s bob@example.org -n urn:xmpp:microblog:0 --index 20 -O json",
            "a page of bob's, as JSON",
        ),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)
        add_page_arguments(parser, cache=True)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        max_items, extra = page_request(args)
        rsm = extra.pop("rsm", {})
        result = deserialise(
            await cli.bridge.ps_cache_get(
                args.service,
                args.node,
                max_items,
                args.items,
                "",
                json.dumps(rsm) if rsm else "",
                json.dumps(extra),
                cli.profile,
            )
        )
        show_items(cli, result)


class CacheSync(Command):
    name = "sync"
    help = "(re)synchronise a node in the cache now"
    examples = (
        ("li pubsub cache sync -n urn:xmpp:microblog:0", "your blog"),
        ("li pubsub cache sync -s bob@example.org -n urn:xmpp:microblog:0", "bob's blog"),
    )
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.bridge.ps_cache_sync(args.service, args.node, cli.profile)
        cli.out.info(f"{where(args.service, args.node)} synchronised")


class CachePurge(Command):
    name = "purge"
    help = "remove items from the cache"
    description = (
        "Remove cached items, chosen by the options (all of them must match: the node filters "
        "and the dates of the items). Without any option, every cached item is removed "
        "(asked for confirmation unless -f). Prints how many were removed."
    )
    examples = (
        ("li pubsub cache purge -t blog --updated-before 2026-01-01", "old blog posts"),
        ("li pubsub cache purge --profile alice", "what was cached for alice"),
        ("li pubsub cache purge -f", "everything, without confirmation"),
    )
    use_profile = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_cache_filters(parser)
        parser.add_argument(
            "--created-before",
            type=time_arg,
            metavar="TIME",
            help="only items created before TIME (seconds since the epoch or an ISO date)",
        )
        parser.add_argument(
            "--updated-before",
            type=time_arg,
            metavar="TIME",
            help="only items not updated since TIME",
        )
        add_force(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        purge: dict[str, Any] = {}
        for key in ("profiles", "types", "subtypes", "services", "nodes"):
            if getattr(args, key):
                purge[key] = list(getattr(args, key))
        for key in ("created_before", "updated_before"):
            if getattr(args, key) is not None:
                purge[key] = getattr(args, key)
        if not purge:
            await cli.confirm("Purge the whole pubsub cache (of every profile)?", args.force)
        count = await cli.bridge.ps_cache_purge(json.dumps(purge))
        cli.out.info(f"{count} cached items removed" if count is not None else "cache purged")


class CacheReset(Command):
    name = "reset"
    help = "delete every cached node and item"
    examples = (("li pubsub cache reset -f", "empty the cache without confirmation"),)
    use_profile = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_force(parser)

    async def run(self, cli: Cli) -> None:
        await cli.confirm(
            "Delete every node and item of the pubsub cache (of every profile)?", cli.args.force
        )
        await cli.bridge.ps_cache_reset()
        cli.out.info("pubsub cache reset")


class CacheSearch(Command):
    name = "search"
    help = "search the items of the cache (full text, parsed data)"
    description = (
        "Search the cached items: full text (--fts, every word must match), nodes (--profile, "
        "-s, -n, -t, --subtype), filters on the data parsed by the analysers (--parsed PATH OP "
        "VALUE: PATH dotted, author.name, a number for an array index, tags.0; OP one of "
        + ", ".join(PARSED_OPERATORS)
        + "; VALUE read as JSON when it is valid JSON, else as a string; exists and "
        "not_exists take true or false). Prints a table of the items found (newest first "
        "unless --order-by), their XML with --xml, everything with -O json."
    )
    examples = (
        ("li pubsub cache search --fts 'xmpp python'", "items containing both words"),
        (
            "li pubsub cache search -t blog --parsed author.name eq Alice "
            "--parsed tags contains xmpp",
            "Alice's blog posts tagged xmpp",
        ),
        (
            "li pubsub cache search --parsed published gt 1790000000 --order-by parsed.published",
            "posts published after a date, oldest first",
        ),
        ("li pubsub cache search --fts libervia --limit 5 --xml", "the XML of five items"),
    )
    use_profile = False
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fts", metavar="TEXT", help="full-text search in the items")
        add_cache_filters(parser)
        parser.add_argument(
            "-i",
            "--item",
            dest="items",
            action="append",
            default=[],
            metavar="ITEM_ID",
            help="only items of this id (repeatable)",
        )
        parser.add_argument(
            "--parsed",
            action=ParsedFilterAction,
            nargs=3,
            default=[],
            metavar=Metavar(("PATH", "OP", "VALUE")),
            help="filter on the parsed data (repeatable; see above)",
        )
        parser.add_argument(
            "--order-by",
            type=order_arg,
            action="append",
            default=[],
            metavar="ORDER",
            help=f"sort by {', '.join(SEARCH_ORDERS)} (relevance of --fts) or parsed.PATH, "
            "then :asc (the default) or :desc (repeatable; default: newest first)",
        )
        parser.add_argument(
            "--index", type=non_negative_int, default=0, metavar="N", help="skip N items"
        )
        parser.add_argument(
            "--limit",
            type=non_negative_int,
            default=DEFAULT_SEARCH_LIMIT,
            metavar="N",
            help=f"at most N items (default: {DEFAULT_SEARCH_LIMIT}; 0: no limit)",
        )
        parser.add_argument("--xml", action="store_true", help="print the items' XML")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        found = deserialise(await cli.bridge.ps_cache_search(json.dumps(search_query(args))), [])

        def render() -> None:
            if args.xml:
                for row in found:
                    cli.out.text(row["item"])
                return
            if not found:
                cli.out.info("no items found", "dim")
                return
            rows = [
                {**row, "created": format_time(row["created"]) if row.get("created") else ""}
                for row in found
            ]
            cli.out.table(
                rows,
                [
                    ("created", "created"),
                    ("profile", "profile"),
                    ("service", "service"),
                    ("node", "node"),
                    ("item_id", "item"),
                ],
            )

        cli.out.show(found, render)


class Cache(Group):
    name = "cache"
    help = "the daemon's pubsub cache: read, synchronise, purge, search"
    subcommands = (CacheGet, CacheSync, CachePurge, CacheReset, CacheSearch)


class Pubsub(Group):
    name = "pubsub"
    help = "publish-subscribe (XEP-0060): nodes, items, subscriptions, the cache"
    subcommands = (
        Node,
        PubsubSet,
        PubsubGet,
        PubsubDelete,
        PubsubSubscribe,
        PubsubUnsubscribe,
        PubsubSubscriptions,
        PubsubAffiliations,
        Cache,
    )
