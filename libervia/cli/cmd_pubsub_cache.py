"""``li pubsub cache``: read, synchronise, purge and search the daemon's pubsub cache."""

from __future__ import annotations

import argparse
import json
from typing import Any

from libervia.cli.base import Cli, Command, Group
from libervia.cli.cmd_message import time_arg
from libervia.cli.output import format_time
from libervia.cli.pubsub_common import (
    DEFAULT_SEARCH_LIMIT,
    PARSED_OPERATORS,
    SEARCH_ORDERS,
    Metavar,
    add_force,
    add_node,
    add_page_arguments,
    add_service,
    deserialise,
    non_negative_int,
    page_request,
    show_items,
    where,
)


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
