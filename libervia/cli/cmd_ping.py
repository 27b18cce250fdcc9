"""``li ping``: XMPP ping (XEP-0199), the round trip to an entity."""

from __future__ import annotations

import argparse
import asyncio

from libervia.cli.base import Cli, Command


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def ping_dict(jid: str, times_ms: list[float]) -> dict[str, object]:
    """The round trips (milliseconds) as the dict that ``-O json`` prints."""
    return {
        "jid": jid,
        "rtt_ms": [round(t, 3) for t in times_ms],
        "min_ms": round(min(times_ms), 3),
        "avg_ms": round(sum(times_ms) / len(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
    }


class Ping(Command):
    name = "ping"
    help = "ping an entity (XEP-0199) and print the round trip in milliseconds"
    description = (
        "Send an XMPP ping (XEP-0199) to an entity (a server, a service, a client: a full JID "
        "with its resource; a bare JID is answered by the account's server) and print the "
        "round trip in milliseconds. An entity that answers an error (not reachable, ping not "
        "supported) is an error (exit code 3), no answer in time is exit code 6."
    )
    examples = (
        ("li ping example.org", "the round trip to your server"),
        ("li ping bob@example.org/phone -n 5", "five pings, one a second, then a summary"),
        ("li ping example.org -d", "only the time (in ms), for scripts"),
        ("li ping example.org -n 3 -i 0 -O json", "three pings at once, as JSON"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("jid", metavar="JID", help="entity to ping")
        parser.add_argument(
            "-n",
            "--count",
            type=positive_int,
            default=1,
            metavar="COUNT",
            help="number of pings (default: 1)",
        )
        parser.add_argument(
            "-i",
            "--interval",
            type=non_negative_float,
            default=1.0,
            metavar="SECONDS",
            help="time between two pings (default: 1)",
        )
        parser.add_argument(
            "-d",
            "--delay-only",
            action="store_true",
            help="print only the round trip, in milliseconds",
        )

    async def run(self, cli: Cli) -> None:
        args, out = cli.args, cli.out
        times: list[float] = []
        for i in range(args.count):
            if i and args.interval:
                await asyncio.sleep(args.interval)
            seconds = await cli.bridge.ping(args.jid, cli.profile)
            ms = float(seconds) * 1000
            times.append(ms)
            if not out.json:
                out.text(f"{ms:.2f}" if args.delay_only else f"pong from {args.jid}: {ms:.2f} ms")
        data = ping_dict(args.jid, times)
        if out.json:
            out.print_json(data)
        elif args.count > 1 and not args.delay_only:
            out.text(
                f"{args.count} pings: min {data['min_ms']:.2f} / avg {data['avg_ms']:.2f} / "
                f"max {data['max_ms']:.2f} ms"
            )
