"""``li info``: what entities (and the daemon) say about themselves."""

from __future__ import annotations

import argparse
from typing import Any

from libervia.cli.base import Cli, Command, Group, li_version
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


def version_dict(jid: str, answer: Any) -> dict[str, str]:
    """A ``software_version_get`` answer as the dict that ``-O json`` prints."""
    name, version, os_name = answer
    return {"jid": jid, "name": name, "version": version, "os": os_name}


class InfoVersion(Command):
    name = "version"
    help = "software version of an entity (XEP-0092), or the versions of li and of the daemon"
    description = (
        "With a JID: ask that entity its software name, version and operating system "
        "(XEP-0092; each may be unknown: the entity chooses what it tells). Without: the "
        "versions of li and of the daemon (no profile needed)."
    )
    examples = (
        ("li info version", "the versions of li and of the daemon"),
        ("li info version example.org", "the server's software"),
        ("li info version bob@example.org/phone -O json", "a client's, as JSON"),
    )
    use_profile = True
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "jid",
            metavar="JID",
            nargs="?",
            help="entity to ask (a server, or a client: a full JID with its resource)",
        )

    def wants_profile(self, args: argparse.Namespace) -> bool:
        return bool(args.jid)

    async def run(self, cli: Cli) -> None:
        jid = cli.args.jid
        if jid:
            data = version_dict(jid, await cli.bridge.software_version_get(jid, cli.profile))

            def render() -> None:
                known = {k: v for k, v in data.items() if k != "jid" and v}
                if known:
                    cli.out.mapping(known)
                else:
                    cli.out.text(f"{jid} does not tell its software version")

            cli.out.show(data, render)
            return
        try:
            daemon = await cli.bridge.version_get()
        except BridgeError as e:
            daemon = f"unknown ({e.message})"
        cli.out.show({"li": li_version(), "daemon": daemon})


class Info(Group):
    name = "info"
    help = "information about entities"
    subcommands = (InfoDisco, InfoVersion)
