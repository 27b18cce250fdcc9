"""``li message``: send messages and read the history."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, CommandError, Group, in_thread


def time_arg(value: str) -> float:
    """A point in time: seconds since the epoch, or an ISO 8601 date/time (local time unless
    it has an offset): ``1700000000``, ``2026-11-23``, ``2026-11-23T21:05``."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {value!r}: use seconds since the epoch or an ISO date "
            "(2026-11-23 or 2026-11-23T21:05)"
        ) from None


def message_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A ``history_get`` tuple as the dict that ``-O json`` prints."""
    uid, timestamp, from_jid, to_jid, message, subject, mess_type, extra = row
    try:
        extra_data = json.loads(extra) if extra else {}
    except ValueError:
        extra_data = {"raw": extra}
    return {
        "uid": uid,
        "timestamp": timestamp,
        "from": from_jid,
        "to": to_jid,
        "message": dict(message),
        "subject": dict(subject),
        "type": mess_type,
        "extra": extra_data,
    }


def split_messages(text: str, separate: bool) -> list[str]:
    """The messages to send: the whole text, or one per non-empty line with ``separate``."""
    if separate:
        return [line for line in text.splitlines() if line.strip()]
    text = text.rstrip("\n")
    return [text] if text.strip() else []


class MessageSend(Command):
    name = "send"
    help = "send a message"
    description = (
        "Send a message to JID. The text is the remaining arguments, or else standard input "
        "(all of it as one message, or one message per line with --separate)."
    )
    examples = (
        ("li message send bob@example.org Hello Bob", "send a message"),
        ("echo 'Hi!' | li message send -p alice bob@example.org", "send standard input"),
        ("li message send -s 'News' -t normal bob@example.org 'Read this'", "with a subject"),
        ("journalctl -n 3 | li message send --separate bob@example.org", "one per line"),
    )
    need_connect = True
    extra_words = "text"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("jid", metavar="JID", help="recipient")
        parser.add_argument(
            "text",
            metavar="TEXT",
            nargs="*",
            help="the message (default: standard input); after --, words starting with - too",
        )
        parser.add_argument("-s", "--subject", help="subject of the message")
        parser.add_argument(
            "-t",
            "--type",
            choices=C.MESSAGE_TYPES,
            default="auto",
            help="message type (default: auto, i.e. chat)",
        )
        parser.add_argument(
            "-l", "--lang", default="", help="language of the text and subject (e.g. en)"
        )
        parser.add_argument(
            "--separate", action="store_true", help="send one message per line of text"
        )

    async def run(self, cli: Cli) -> None:
        args = cli.args
        if args.text:
            text = " ".join(args.text)
        else:
            if sys.stdin.isatty():
                cli.stderr.write("li: type the message, then Ctrl-D\n")
            text = await in_thread(sys.stdin.read)
        messages = split_messages(text, args.separate)
        if not messages:
            raise CommandError("nothing to send: the message is empty", C.EXIT_USAGE)
        subject = {args.lang: args.subject} if args.subject else {}
        for body in messages:
            await cli.bridge.message_send(
                args.jid, {args.lang: body}, subject, args.type, "", cli.profile
            )
        count = f"{len(messages)} messages" if len(messages) > 1 else "message"
        cli.out.info(f"{count} sent to {args.jid}")


class MessageHistory(Command):
    name = "history"
    help = "show the messages exchanged with an entity (from the local history)"
    examples = (
        ("li message history bob@example.org", "the last 20 messages with bob"),
        ("li message history bob@example.org -n 0 --search invoice", "every one with 'invoice'"),
        ("li message history bob@example.org --after 2026-11-01 -O json", "as JSON"),
    )
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("jid", metavar="JID", help="the other side of the conversation")
        parser.add_argument(
            "-n",
            "--max",
            type=int,
            default=20,
            metavar="N",
            help="the last N messages (default: 20; 0: all)",
        )
        parser.add_argument("--search", metavar="TEXT", help="only messages containing TEXT")
        parser.add_argument(
            "--before", type=time_arg, metavar="TIME", help="only messages before TIME"
        )
        parser.add_argument(
            "--after", type=time_arg, metavar="TIME", help="only messages after TIME"
        )

    async def run(self, cli: Cli) -> None:
        args = cli.args
        if args.max < 0:
            raise CommandError("-n must be 0 (all) or more", C.EXIT_USAGE)
        filters: dict[str, str] = {}
        if args.search:
            filters["search"] = args.search
        if args.before is not None:
            filters["before"] = repr(args.before)
        if args.after is not None:
            filters["after"] = repr(args.after)
        rows = await cli.bridge.history_get(
            args.jid, "", args.max or -1, True, filters, cli.profile
        )
        messages = [message_dict(row) for row in rows]
        if not messages and cli.out.rich:
            cli.out.info(f"no messages with {args.jid}", style="dim")
        cli.out.show(messages, lambda: cli.out.messages(messages))


class MessageMam(Command):
    name = "mam"
    help = "query a message archive on the server (XEP-0313)"
    description = (
        "Show messages from a server archive (yours by default), without storing them: the "
        "latest page, or the page before/after an archive id. The archive ids to page with are "
        "printed at the end (and are the 'page' of -O json)."
    )
    examples = (
        ("li message mam", "the last 20 messages of your archive"),
        ("li message mam --with bob@example.org -n 50", "the last 50 exchanged with bob"),
        ("li message mam --before=ID", "the page before the message with archive id ID"),
        ("li message mam room@muc.example.org --start 2026-11-01", "a room's archive"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "service", metavar="JID", nargs="?", default="", help="the archive (default: yours)"
        )
        parser.add_argument("--with", dest="with_jid", metavar="JID", help="only with JID")
        parser.add_argument(
            "-n", "--max", type=int, default=20, metavar="N", help="page size (default: 20)"
        )
        page = parser.add_mutually_exclusive_group()
        page.add_argument("--before", metavar="ID", help="the page before this archive id")
        page.add_argument("--after", metavar="ID", help="the page after this archive id")
        parser.add_argument(
            "--start", type=time_arg, metavar="TIME", help="only messages from TIME on"
        )
        parser.add_argument("--end", type=time_arg, metavar="TIME", help="only until TIME")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        if args.max < 1:
            raise CommandError("-n must be 1 or more", C.EXIT_USAGE)
        filters: dict[str, str] = {"max": str(args.max)}
        if args.with_jid:
            filters["with"] = args.with_jid
        if args.after:
            filters["after"] = args.after
        elif args.start is None:
            # the latest page, unless paging forward from an id or a time
            filters["before"] = args.before or ""
        elif args.before:
            filters["before"] = args.before
        for name in ("start", "end"):
            value = getattr(args, name)
            if value is not None:
                filters[name] = repr(value)
        rows, page = await cli.bridge.mam_get(args.service, filters, cli.profile)
        messages = [message_dict(row) for row in rows]
        data = {"messages": messages, "page": dict(page)}

        def render() -> None:
            if not messages:
                cli.out.info("no messages in the archive", style="dim")
                return
            cli.out.messages(messages)
            if page.get("first") and page.get("complete") != "true":
                # as options: an archive id may start with "-"
                cli.out.info(
                    f"archive ids: --before={page['first']} --after={page.get('last', '')}",
                    "dim",
                )

        cli.out.show(data, render)


class Message(Group):
    name = "message"
    help = "send messages, read the history"
    subcommands = (MessageSend, MessageHistory, MessageMam)
