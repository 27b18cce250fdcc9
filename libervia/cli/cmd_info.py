"""``li info``: what entities (and the daemon) say about themselves."""

from __future__ import annotations

import argparse
from typing import Any

from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, CommandError, Group, li_version
from libervia.frontends.bridge.client import BridgeError


def disco_dict(infos: Any | None, items: Any | None) -> dict[str, Any]:
    """``disco_infos`` / ``disco_items`` answers as the dict that ``-O json`` prints."""
    data: dict[str, Any] = {}
    if infos is not None:
        features, identities, extensions = infos
        data["features"] = sorted(features)
        data["identities"] = [{"category": c, "type": t, "name": n} for c, t, n in identities]
        data["extensions"] = {
            namespace: [{"fields": dict(f), "values": list(v)} for f, v in forms]
            for namespace, forms in extensions.items()
        }
    if items is not None:
        data["items"] = [{"jid": j, "node": n, "name": name} for j, n, name in items]
    return data


class InfoDisco(Command):
    name = "disco"
    help = "service discovery (XEP-0030): identities, features and items of an entity"
    examples = (
        ("li info disco example.org", "what the server offers"),
        ("li info disco example.org -t items", "its items (components...)"),
        ("li info disco bob@example.org/phone -O json", "a client's features as JSON"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("jid", metavar="JID", help="entity to query")
        parser.add_argument("-n", "--node", default="", help="node to query")
        parser.add_argument(
            "-t",
            "--type",
            choices=("infos", "items", "both"),
            default="both",
            help="what to ask (default: both)",
        )
        parser.add_argument(
            "--no-cache", action="store_true", help="ask the entity, not the daemon's cache"
        )

    async def run(self, cli: Cli) -> None:
        args, bridge = cli.args, cli.bridge
        use_cache = not args.no_cache
        infos = items = None
        if args.type in ("infos", "both"):
            infos = await bridge.disco_infos(args.jid, args.node, use_cache, cli.profile)
        if args.type in ("items", "both"):
            items = await bridge.disco_items(args.jid, args.node, use_cache, cli.profile)
        data = disco_dict(infos, items)

        def render() -> None:
            out = cli.out
            if "identities" in data:
                out.table(
                    data["identities"],
                    [("category", "category"), ("type", "type"), ("name", "name")],
                    title="Identities",
                )
                out.items(data["features"], title="Features")
                for namespace, forms in data["extensions"].items():
                    for form in forms:
                        out.mapping(
                            {k: form["fields"][k] for k in form["fields"]},
                            title=f"Extension {namespace}",
                        )
            if "items" in data:
                out.table(
                    data["items"],
                    [("jid", "JID"), ("node", "node"), ("name", "name")],
                    title="Items",
                )

        cli.out.show(data, render)


class InfoVersion(Command):
    name = "version"
    help = "versions of the daemon and of li (an entity's software version: not available yet)"
    examples = (("li info version", "the versions of li and of the daemon"),)
    use_profile = False
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "jid",
            metavar="JID",
            nargs="?",
            help="entity to ask (XEP-0092; needs a daemon that offers it)",
        )

    async def run(self, cli: Cli) -> None:
        if cli.args.jid:
            raise CommandError(
                "this daemon cannot ask an entity for its software version yet (XEP-0092); "
                "`li info version` without JID shows the daemon's version",
                C.EXIT_MISSING_FEATURE,
            )
        try:
            daemon = await cli.bridge.version_get()
        except BridgeError as e:
            daemon = f"unknown ({e.message})"
        cli.out.show({"li": li_version(), "daemon": daemon})


class Info(Group):
    name = "info"
    help = "information about entities"
    subcommands = (InfoDisco, InfoVersion)
