"""Progress of the daemon's long operations (file transfers...), for the commands that start
them.

The daemon reports a long operation by its id through the ``progress_started``,
``progress_finished`` and ``progress_error`` signals. :class:`Progress` listens to them (start
listening *before* starting the operation, so that a quick one is not missed), shows a rich
progress bar on stderr (transferred size, speed, ETA) while waiting, and returns the final
metadata or raises :class:`~libervia.cli.base.CommandError`. The bar is hidden with ``-q``,
``-O json`` or when stderr is not a terminal.

Positions come from a ``poll`` coroutine returning ``(position, size)`` (``size`` None when
unknown); by default the daemon's ``progress_get(id, profile)`` method when it has one, which
answers ``{"position": ..., "size": ...}``; without it the bar only shows that something is
going on.

    progress = Progress(cli, "sending report.pdf")
    progress.listen()
    progress_id = await cli.bridge.file_send(...)
    metadata = await progress.wait(progress_id)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from libervia.cli import constants as C

if TYPE_CHECKING:
    from libervia.cli.base import Cli
    from libervia.frontends.bridge.client import SignalHandle

Poll = Callable[[], Awaitable[tuple[int, int | None]]]


class Progress:
    """One long operation of the daemon, followed by its id."""

    def __init__(
        self,
        cli: Cli,
        description: str = "",
        *,
        interval: float = 0.2,
        console: Console | None = None,
    ) -> None:
        self.cli = cli
        self.description = description
        self.interval = interval
        self.console = console or Console(stderr=True)
        self.show = not cli.opts.quiet and not cli.out.json and self.console.is_terminal
        self._events: dict[str, tuple[str, Any]] = {}
        self._changed = asyncio.Event()
        self._handles: list[SignalHandle] = []

    def listen(self) -> None:
        """Start listening to the progress signals (before starting the operation)."""
        bridge = self.cli.bridge
        for name in ("progress_started", "progress_finished", "progress_error"):
            self._handles.append(bridge.on_signal(name, self._make(name)))

    def _make(self, name: str) -> Callable[[str, str, str], None]:
        def record(progress_id: str, data: str, profile: str) -> None:
            if self.cli.profile and profile != self.cli.profile:
                return
            if name != "progress_started" or progress_id not in self._events:
                self._events[progress_id] = (name, data)
            self._changed.set()

        return record

    def _default_poll(self, progress_id: str) -> Poll | None:
        bridge = self.cli.bridge
        if "progress_get" not in bridge.methods:
            return None

        async def poll() -> tuple[int, int | None]:
            data = await bridge.progress_get(progress_id, self.cli.profile)
            if isinstance(data, str):
                data = json.loads(data or "{}")
            size = data.get("size")
            return int(data.get("position", 0)), int(size) if size not in (None, "") else None

        return poll

    async def wait(
        self, progress_id: str, poll: Poll | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait for the end of the operation; returns the metadata of ``progress_finished``.

        Raises:
            CommandError: ``progress_error`` (EXIT_BRIDGE_ERROR), or no end within ``timeout``
                seconds (EXIT_TIMEOUT).
        """
        from libervia.cli.base import CommandError

        poll = poll or self._default_poll(progress_id)
        try:
            async with asyncio.timeout(timeout):
                if self.show:
                    await self._with_bar(progress_id, poll)
                else:
                    await self._ended(progress_id)
        except TimeoutError:
            raise CommandError(
                f"{self.description or 'the operation'}: no end after {timeout} s",
                C.EXIT_TIMEOUT,
            ) from None
        finally:
            for handle in self._handles:
                handle.remove()
        name, data = self._events[progress_id]
        if name == "progress_error":
            raise CommandError(f"{self.description or 'the operation'} failed: {data}")
        try:
            metadata = json.loads(data) if data else {}
        except ValueError:
            metadata = {"raw": data}
        return metadata if isinstance(metadata, dict) else {"value": metadata}

    def _done(self, progress_id: str) -> bool:
        event = self._events.get(progress_id)
        return event is not None and event[0] != "progress_started"

    async def _ended(self, progress_id: str) -> None:
        while not self._done(progress_id):
            self._changed.clear()
            await self._changed.wait()

    async def _with_bar(self, progress_id: str, poll: Poll | None) -> None:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        ]
        with RichProgress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(self.description, total=None)
            while not self._done(progress_id):
                if poll is not None:
                    position, size = await poll()
                    bar.update(task, completed=position, total=size)
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), self.interval)
                except TimeoutError:
                    pass
            if self._events[progress_id][0] == "progress_finished":
                total = bar.tasks[0].total
                if total is not None:
                    bar.update(task, completed=total)
