"""``li pubsub``: publish-subscribe (XEP-0060) nodes and items (the cache group is in
``cmd_pubsub_cache``).

Every command takes ``-s/--service`` (default: the profile's own PEP service) and, where it acts
on a node, ``-n/--node``. Structured values cross the bridge as serialised dicts (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from libervia.cli.base import Cli, Command, Group, in_thread
from libervia.cli.cmd_pubsub_cache import Cache
from libervia.cli.pubsub_common import (
    add_fields,
    add_force,
    add_node,
    add_page_arguments,
    add_service,
    check_payload,
    deserialise,
    fields_dict,
    page_request,
    show_items,
    where,
)


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
