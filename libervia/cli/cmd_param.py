"""``li param``: read and change a profile's parameters (settings)."""

from __future__ import annotations

import argparse

from libervia.cli.base import Cli, Command, Group


class ParamGet(Command):
    name = "get"
    help = "print a parameter's value"
    examples = (("li param get Connection JabberID -p alice", "alice's XMPP address"),)
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("category", metavar="CATEGORY", help="category (e.g. Connection)")
        parser.add_argument("name", metavar="NAME", help="parameter name (e.g. JabberID)")
        parser.add_argument(
            "-a", "--attribute", default="value", help="attribute to read (default: value)"
        )

    async def run(self, cli: Cli) -> None:
        args = cli.args
        value = await cli.bridge.param_get_a_async(
            args.name, args.category, args.attribute, -1, cli.profile
        )
        cli.out.show(value)


class ParamSet(Command):
    name = "set"
    help = "change a parameter"
    examples = (("li param set Connection autoconnect true -p alice", "connect alice at startup"),)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("category", metavar="CATEGORY", help="category (e.g. Connection)")
        parser.add_argument("name", metavar="NAME", help="parameter name")
        parser.add_argument("value", metavar="VALUE", help="new value")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.bridge.param_set(args.name, args.value, args.category, -1, cli.profile)
        cli.out.info(f"{args.category}/{args.name} set for {cli.profile}")


class Param(Group):
    name = "param"
    help = "read and change a profile's parameters"
    subcommands = (ParamGet, ParamSet)
