"""How ``li`` prints data: ``-O default`` (rich tables and colours on a terminal, plain text
otherwise), ``-O simple`` (plain text, one item per line) and ``-O json`` (one JSON document).

Commands hand their data to :meth:`Output.show`, optionally with a renderer for the human
formats; without one, the shape of the data chooses the format (a string, a list of strings, a
dict, a list of dicts). JSON output always prints the data itself, so it is the same whatever
the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: a table column: (key in each row, header)
Column = tuple[str, str]


def format_time(timestamp: float) -> str:
    """Local time of a timestamp, ``2026-11-23 21:05:03``."""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def as_text(value: Any) -> str:
    """A value as one line of plain text (lists joined with commas, booleans yes/no)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(as_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={as_text(v)}" for k, v in value.items())
    return str(value)


def message_text(lang_map: Mapping[str, str]) -> str:
    """The text of a ``{lang: text}`` dict: the one without language first, then the others."""
    if not lang_map:
        return ""
    if "" in lang_map:
        return lang_map[""]
    return "\n".join(f"[{lang}] {text}" for lang, text in lang_map.items())


class Output:
    """Prints to ``stream`` in ``mode`` (``default``, ``json``, ``simple``).

    Args:
        terminal: whether ``stream`` is a terminal (default: ask it); ``default`` uses rich only
            on a terminal.
        quiet: ``-q``: no informational lines (data is still printed).
    """

    def __init__(
        self,
        mode: str = "default",
        stream: TextIO | None = None,
        *,
        terminal: bool | None = None,
        quiet: bool = False,
        width: int | None = None,
    ) -> None:
        self.mode = mode
        self.stream = stream if stream is not None else sys.stdout
        if terminal is None:
            isatty = getattr(self.stream, "isatty", None)
            terminal = bool(isatty and isatty())
        self.terminal = terminal
        self.quiet = quiet
        self.rich = mode == "default" and terminal
        self.console = Console(
            file=self.stream,
            force_terminal=terminal if self.rich else False,
            highlight=False,
            soft_wrap=not self.rich,
            width=width,
        )

    @property
    def json(self) -> bool:
        return self.mode == "json"

    # --- entry points ----------------------------------------------------------------------

    def show(self, data: Any, render: Callable[[], None] | None = None) -> None:
        """Print ``data``: as JSON in JSON mode, else through ``render`` or by its shape."""
        if self.json:
            self.print_json(data)
        elif render is not None:
            render()
        else:
            self.auto(data)

    def info(self, text: str, style: str = "green") -> None:
        """An informational line (``profile created``): not in JSON mode, nor with ``-q``."""
        if self.quiet or self.json:
            return
        if self.rich:
            self.console.print(escape(text), style=style)
        else:
            self._write(text)

    def print_json(self, data: Any) -> None:
        self._write(json.dumps(data, ensure_ascii=False, indent=2, default=str))

    def json_line(self, data: Any) -> None:
        """One JSON document on one line (streams: ``li debug monitor -O json``)."""
        self._write(json.dumps(data, ensure_ascii=False, default=str))
        self.stream.flush()

    # --- shapes ----------------------------------------------------------------------------

    def auto(self, data: Any) -> None:
        if data is None:
            return
        if isinstance(data, str):
            self.text(data)
        elif isinstance(data, Mapping):
            self.mapping(data)
        elif isinstance(data, list | tuple) and data and all(isinstance(r, Mapping) for r in data):
            keys: list[str] = []
            for row in data:
                keys.extend(k for k in row if k not in keys)
            self.table(data, [(k, k) for k in keys])
        elif isinstance(data, list | tuple):
            self.items(data)
        else:
            self.text(as_text(data))

    def text(self, text: str) -> None:
        if self.rich:
            self.console.print(escape(text))
        else:
            self._write(text)

    def title(self, text: str) -> None:
        if self.rich:
            self.console.print(escape(text), style="bold yellow")
        else:
            self._write(f"{text}:")

    def items(self, items: Iterable[Any], title: str | None = None) -> None:
        items = list(items)
        if title is not None and (self.rich or items):
            self.title(title)
        for item in items:
            if self.rich:
                self.console.print(f"{'  ' if title else ''}{escape(as_text(item))}")
            else:
                self._write(f"{'  ' if title else ''}{as_text(item)}")

    def mapping(self, data: Mapping[str, Any], title: str | None = None) -> None:
        if self.rich:
            table = Table(show_header=False, box=None, title=title, title_justify="left")
            table.add_column(style="bold blue")
            table.add_column()
            for key, value in data.items():
                table.add_row(escape(str(key)), escape(as_text(value)))
            self.console.print(table)
            return
        if title is not None:
            self.title(title)
        indent = "  " if title else ""
        for key, value in data.items():
            self._write(f"{indent}{key}: {as_text(value)}")

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[Column],
        title: str | None = None,
    ) -> None:
        """Rows as a table (rich) or one tab-separated line per row, without header (simple)."""
        if self.rich:
            table = Table(title=title, title_justify="left", header_style="bold yellow")
            for _key, header in columns:
                table.add_column(header)
            for row in rows:
                table.add_row(*(escape(as_text(row.get(k))) for k, _h in columns))
            self.console.print(table)
            return
        if title is not None and rows:
            self.title(title)
        for row in rows:
            self._write("\t".join(as_text(row.get(k)) for k, _h in columns))

    def messages(self, messages: Iterable[Mapping[str, Any]]) -> None:
        """Chat messages (dicts as made by :func:`libervia.cli.cmd_message.message_dict`)."""
        for msg in messages:
            when = format_time(msg["timestamp"])
            text = message_text(msg["message"])
            subject = message_text(msg["subject"])
            if self.rich:
                line = (
                    f"[dim]{when}[/dim] [bold blue]{escape(msg['from'])}[/bold blue]"
                    f" [dim]→ {escape(msg['to'])}[/dim]"
                )
                if msg.get("type") not in (None, "chat"):
                    line += f" [magenta]({escape(msg['type'])})[/magenta]"
                self.console.print(line)
                if subject:
                    self.console.print(f"  [bold]{escape(subject)}[/bold]")
                for part in text.splitlines() or [""]:
                    self.console.print(f"  {escape(part)}")
            else:
                head = f"[{when}] {msg['from']} > {msg['to']}"
                if subject:
                    head += f" [{subject}]"
                lines = text.splitlines() or [""]
                self._write(f"{head}: {lines[0]}")
                for part in lines[1:]:
                    self._write(f"    {part}")

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
