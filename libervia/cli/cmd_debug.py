"""``li debug``: raw access to the bridge, for developers."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from dbus_fast.signature import get_signature_tree

from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, CommandError, Group
from libervia.cli.output import as_text

_INTS = set("ynqiuxth")


def convert_arg(signature: str, value: str) -> Any:
    """A command-line string as a D-Bus value of ``signature`` (one complete type): strings
    as they are, numbers and booleans parsed, containers as JSON (``'{"": "hi"}'``)."""
    try:
        if signature in ("s", "o", "g"):
            return value
        if signature == "b":
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
        if signature in _INTS:
            return int(value)
        if signature == "d":
            return float(value)
        data = json.loads(value)
    except ValueError:
        raise CommandError(
            f"invalid value {value!r} for D-Bus type {signature!r}", C.EXIT_USAGE
        ) from None
    if signature.startswith("(") and isinstance(data, list):
        return tuple(data)
    return data


def jsonable(value: Any) -> Any:
    """D-Bus values (tuples, bytes) as JSON-friendly ones."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class DebugBridge(Command):
    name = "bridge"
    help = "call a bridge method with raw arguments"
    description = (
        "Call METHOD of the daemon with ARGS, converted according to its D-Bus signature "
        "(containers as JSON). The profile options are not used: pass the profile as an "
        "argument like any other."
    )
    examples = (
        ("li debug bridge profiles_list_get true false", "list the profiles"),
        (
            "li debug bridge message_send bob@example.org '{\"\": \"hi\"}' '{}' chat '' alice",
            "send a message",
        ),
    )
    use_profile = False
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("method", metavar="METHOD", help="bridge method name")
        parser.add_argument("args", metavar="ARG", nargs="*", help="its arguments")

    async def run(self, cli: Cli) -> None:
        args, bridge = cli.args, cli.bridge
        method = bridge.methods.get(args.method)
        if method is None:
            await bridge.refresh()
            method = bridge.methods.get(args.method)
        if method is None:
            raise CommandError(f"the daemon has no method {args.method!r}", C.EXIT_MISSING_FEATURE)
        types = [t.signature for t in get_signature_tree(method.in_signature).types]
        if len(args.args) != len(types):
            raise CommandError(
                f"{method.describe()} takes {len(types)} arguments "
                f"[signature {method.in_signature!r}], got {len(args.args)}",
                C.EXIT_USAGE,
            )
        values = [convert_arg(t, v) for t, v in zip(types, args.args, strict=True)]
        result = await bridge.call(args.method, *values)
        if method.out_signature:
            cli.out.show(jsonable(result))


class DebugMonitor(Command):
    name = "monitor"
    help = "show the bridge signals as they come (Ctrl-C to stop)"
    examples = (
        ("li debug monitor", "every signal"),
        ("li debug monitor message_new -O json", "new messages, one JSON object per line"),
    )
    use_profile = False
    use_output = True
    stops_on_interrupt = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "signals", metavar="SIGNAL", nargs="*", help="signals to show (default: all)"
        )

    async def run(self, cli: Cli) -> None:
        bridge = cli.bridge
        names = cli.args.signals or sorted(bridge.signals)
        unknown = [n for n in names if n not in bridge.signals]
        if unknown:
            raise CommandError(f"unknown signal(s): {', '.join(unknown)}", C.EXIT_USAGE)

        def make(name: str) -> Any:
            arg_names = bridge.signals[name].arg_names

            def show(*values: Any) -> None:
                data = dict(zip(arg_names, jsonable(list(values)), strict=False))
                if cli.out.json:
                    cli.out.json_line({"signal": name, "args": data})
                else:
                    cli.out.text(f"{name}: " + as_text(data))

            return show

        for name in names:
            bridge.on_signal(name, make(name))
        cli.out.info(f"listening to {len(names)} signal(s), Ctrl-C to stop")
        await asyncio.Event().wait()


class Debug(Group):
    name = "debug"
    help = "tools for developers"
    subcommands = (DebugBridge, DebugMonitor)
