"""Helpers shared by ``li pubsub``, ``li pubsub cache`` and ``li blog``: service/node/page
arguments, form fields, payload checks, item rendering."""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from libervia.cli import constants as C
from libervia.cli.base import Cli, CommandError

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
