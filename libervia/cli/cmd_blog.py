"""``li blog``: microblogging (XEP-0277): post, read and delete blog entries."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from rich.markup import escape

from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, CommandError, Group, in_thread
from libervia.cli.output import Output, format_time
from libervia.cli.pubsub_common import (
    add_force,
    add_node,
    add_page_arguments,
    add_service,
    deserialise,
    page_request,
    page_text,
)

#: the microblog node, used when -n is not given
MICROBLOG_NODE = "urn:xmpp:microblog:0"
NODE_HELP = f"the blog node (default: {MICROBLOG_NODE})"


def author_text(author: Mapping[str, Any] | None) -> str:
    """``Name <jid>``, or whichever of them is known."""
    author = author or {}
    name, jid = author.get("name") or "", author.get("jid") or ""
    if name and jid and name != jid:
        return f"{name} <{jid}>"
    return name or jid or author.get("uri") or ""


def entry_lines(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The header of an entry as (label, value) pairs: date, author, tags..."""
    lines: list[tuple[str, str]] = []
    published, updated = entry.get("published"), entry.get("updated")
    if published or updated:
        date = format_time(published or updated)
        if published and updated and int(updated) != int(published):
            date += f" (updated {format_time(updated)})"
        lines.append(("date", date))
    author = author_text(entry.get("author"))
    if author:
        lines.append(("author", author))
    if entry.get("tags"):
        lines.append(("tags", ", ".join(entry["tags"])))
    if entry.get("language"):
        lines.append(("language", entry["language"]))
    if entry.get("comments"):
        lines.append(("comments", ", ".join(entry["comments"])))
    lines.append(("id", entry.get("id") or ""))
    return lines


def print_entries(out: Output, entries: list[Mapping[str, Any]]) -> None:
    """Blog entries for people: the title, a header (date, author, tags, id), the content;
    a blank line between two entries."""
    for i, entry in enumerate(entries):
        if i:
            out.text("")
        title = entry.get("title") or ""
        content = entry.get("content") or entry.get("content_xhtml") or ""
        if out.rich:
            if title:
                out.console.print(escape(title), style="bold yellow")
            for label, value in entry_lines(entry):
                out.console.print(f"[bold blue]{label}[/bold blue]: {escape(value)}")
        else:
            if title:
                out.text(f"# {title}")
            for label, value in entry_lines(entry):
                out.text(f"{label}: {value}")
        if content:
            out.text("")
            for line in content.splitlines():
                out.text(line)


class BlogPost(Command):
    name = "post"
    help = "publish a blog entry"
    description = (
        "Publish a blog entry (XEP-0277) on your blog (or on the node -n of the service -s). "
        "The content is the remaining arguments, or else standard input. Prints the entry's id."
    )
    examples = (
        ("li blog post -t 'Hello' 'My first post'", "a post with a title"),
        ("li blog post --tag xmpp --tag libervia -l en -C 'Comments welcome'", "tags, comments"),
        ("li blog post -t 'Notes' < notes.txt", "the content from a file"),
        ("li blog post --xhtml '<p>Some <em>rich</em> text</p>'", "rich content (XHTML)"),
    )
    need_connect = True
    use_output = True
    extra_words = "content"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "content",
            metavar="CONTENT",
            nargs="*",
            help="the content (default: standard input); after --, words starting with - too",
        )
        add_service(parser)
        add_node(parser, False, NODE_HELP)
        parser.add_argument("-t", "--title", help="title of the entry")
        parser.add_argument(
            "--tag", dest="tags", action="append", default=[], help="tag (repeatable)"
        )
        parser.add_argument("-l", "--language", help="language of the entry (e.g. en)")
        parser.add_argument(
            "-C",
            "--comments",
            action="store_true",
            help="create a comments node for the entry",
        )
        parser.add_argument(
            "-i",
            "--item",
            metavar="ITEM_ID",
            help="id of the entry (default: a new one); an existing id replaces that entry",
        )
        parser.add_argument("--xhtml", action="store_true", help="the content is XHTML (rich text)")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        if args.content:
            content = " ".join(args.content)
        else:
            if sys.stdin.isatty():
                cli.stderr.write("li: type the entry, then Ctrl-D\n")
            content = await in_thread(sys.stdin.read)
        content = content.strip()
        if not content and not args.title:
            raise CommandError("nothing to post: the entry is empty", C.EXIT_USAGE)
        data: dict[str, Any] = {}
        if args.item:
            data["id"] = args.item
        if args.title:
            data["title"] = args.title
        if content:
            data["content_xhtml" if args.xhtml else "content"] = content
        if args.tags:
            data["tags"] = list(args.tags)
        if args.language:
            data["language"] = args.language
        if args.comments:
            data["comments"] = True
        item_id = await cli.bridge.mb_send(args.service, args.node, json.dumps(data), cli.profile)
        cli.out.info("blog entry published")
        cli.out.show(
            {"service": args.service, "node": args.node or MICROBLOG_NODE, "item_id": item_id},
            lambda: cli.out.text(item_id),
        )


class BlogGet(Command):
    name = "get"
    help = "read blog entries"
    description = (
        "Print blog entries (XEP-0277): the most recent ones, a page (RSM: --before, --after, "
        "--index) or the entries asked with -i, with their title, date, author, tags and "
        "content; -O json prints them as the daemon gives them."
    )
    examples = (
        ("li blog get", "your last 10 entries"),
        ("li blog get -s bob@example.org -m 5", "bob's last 5 entries"),
        ("li blog get --before=ID", "the page before the entry ID"),
        ("li blog get -i ID -O json", "one entry, as JSON"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_service(parser)
        add_node(parser, False, NODE_HELP)
        add_page_arguments(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        max_items, extra = page_request(args)
        result = deserialise(
            await cli.bridge.mb_get(
                args.service, args.node, max_items, args.items, json.dumps(extra), cli.profile
            )
        )
        entries = result.get("items") or []

        def render() -> None:
            if not entries:
                cli.out.info("no blog entries", "dim")
                return
            print_entries(cli.out, entries)
            cli.out.info(page_text(result), "dim")

        cli.out.show(result, render)


class BlogDelete(Command):
    name = "delete"
    help = "delete a blog entry"
    examples = (
        ("li blog delete ID", "delete your entry ID"),
        ("li blog delete ID -n urn:example:blog -f", "from another node, without confirmation"),
    )
    need_connect = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("item", metavar="ITEM_ID", help="id of the entry")
        add_service(parser)
        add_node(parser, False, NODE_HELP)
        add_force(parser)

    async def run(self, cli: Cli) -> None:
        args = cli.args
        await cli.confirm(f"Delete the blog entry {args.item!r}?", args.force)
        await cli.bridge.mb_retract(args.service, args.node, args.item, cli.profile)
        cli.out.info(f"blog entry {args.item!r} deleted")


class Blog(Group):
    name = "blog"
    help = "microblogging (XEP-0277): post, read, delete entries"
    subcommands = (BlogPost, BlogGet, BlogDelete)
