"""``li roster``: the contact list."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from libervia.cli.base import Cli, Command, Group


def contact_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A ``contacts_get`` tuple as the dict that ``-O json`` prints."""
    jid, attributes, groups = row
    return {
        "jid": jid,
        "name": attributes.get("name", ""),
        "to": attributes.get("to") == "true",
        "from": attributes.get("from") == "true",
        "ask": attributes.get("ask", ""),
        "groups": list(groups),
    }


def subscription_text(contact: dict[str, Any]) -> str:
    """both / to / from / none, plus ``(asked)`` for a pending request."""
    sub = {(True, True): "both", (True, False): "to", (False, True): "from"}.get(
        (contact["to"], contact["from"]), "none"
    )
    return sub + (" (asked)" if contact["ask"] else "")


class RosterGet(Command):
    name = "get"
    help = "show the contacts"
    examples = (
        ("li roster get", "the contacts of the default profile"),
        ("li roster get -p alice -O json", "alice's contacts as JSON"),
    )
    need_connect = True
    use_output = True

    async def run(self, cli: Cli) -> None:
        contacts = sorted(
            (contact_dict(row) for row in await cli.bridge.contacts_get(cli.profile)),
            key=lambda c: c["jid"],
        )

        def render() -> None:
            rows = [{**c, "subscription": subscription_text(c)} for c in contacts]
            cli.out.table(
                rows,
                [
                    ("jid", "JID"),
                    ("name", "name"),
                    ("subscription", "subscription"),
                    ("groups", "groups"),
                ],
            )

        cli.out.show(contacts, render)


class RosterAdd(Command):
    name = "add"
    help = "add a contact (and ask to see their presence)"
    examples = (
        ("li roster add bob@example.org", "add bob"),
        ("li roster add bob@example.org -n Bob -g friends -g work", "with a name and groups"),
    )
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("jid", metavar="JID", help="the contact")
        parser.add_argument("-n", "--name", default="", help="name to show for the contact")
        parser.add_argument(
            "-g", "--group", dest="groups", action="append", default=[], help="group (repeatable)"
        )

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.bridge.contact_add(args.jid, cli.profile)
        if args.name or args.groups:
            await cli.bridge.contact_update(args.jid, args.name, args.groups, cli.profile)
        cli.out.info(f"{args.jid} added to the contacts of {cli.profile}")


class RosterDelete(Command):
    name = "delete"
    help = "remove a contact"
    examples = (("li roster delete bob@example.org -f", "remove bob without confirmation"),)
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("jid", metavar="JID", help="the contact")
        parser.add_argument(
            "-f", "--force", action="store_true", help="delete without confirmation"
        )

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.confirm(f"Remove {args.jid} from the contacts of {cli.profile}?", args.force)
        await cli.bridge.contact_del(args.jid, cli.profile)
        cli.out.info(f"{args.jid} removed from the contacts of {cli.profile}")


class Roster(Group):
    name = "roster"
    help = "manage the contact list"
    subcommands = (RosterGet, RosterAdd, RosterDelete)
