"""The progress helper follows a long operation by the daemon's progress signals."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from libervia.cli import constants as C
from libervia.cli.base import Cli, CommandError, build_parser, parse_args
from libervia.cli.progress import Progress
from tests.conftest import aio


class Handle:
    def __init__(self, signals: dict[str, list[Callable[..., Any]]], name: str, cb: Any) -> None:
        self.signals, self.name, self.cb = signals, name, cb

    def remove(self) -> None:
        self.signals[self.name].remove(self.cb)


class SignalBridge:
    methods: dict[str, Any] = {}

    def __init__(self) -> None:
        self.signals: dict[str, list[Callable[..., Any]]] = {}

    def on_signal(self, name: str, cb: Callable[..., Any]) -> Handle:
        self.signals.setdefault(name, []).append(cb)
        return Handle(self.signals, name, cb)

    def emit(self, name: str, *args: Any) -> None:
        for cb in list(self.signals.get(name, [])):
            cb(*args)


def make_cli(*options: str) -> tuple[Cli, SignalBridge]:
    cli = Cli(parse_args(build_parser(), ["roster", "get", *options]), stdout=io.StringIO())
    bridge = SignalBridge()
    cli._bridge = bridge  # type: ignore[assignment]
    cli.profile = "alice"
    return cli, bridge


@aio
async def test_waits_for_its_own_end_and_returns_the_metadata() -> None:
    cli, bridge = make_cli()
    progress = Progress(cli, "sending", console=Console(file=io.StringIO()))
    progress.listen()
    waiting = asyncio.ensure_future(progress.wait("id1"))
    await asyncio.sleep(0)
    bridge.emit("progress_started", "id1", "{}", "alice")
    bridge.emit("progress_finished", "id2", "{}", "alice")  # another operation
    bridge.emit("progress_finished", "id1", "{}", "bob")  # another profile
    await asyncio.sleep(0)
    assert not waiting.done()
    bridge.emit("progress_finished", "id1", '{"hash": "abc"}', "alice")
    assert await waiting == {"hash": "abc"}
    assert all(not cbs for cbs in bridge.signals.values())  # stopped listening


@aio
async def test_error_and_timeout() -> None:
    cli, bridge = make_cli()
    progress = Progress(cli, "sending x", console=Console(file=io.StringIO()))
    progress.listen()
    bridge.emit("progress_error", "id1", "peer refused", "alice")  # before wait: not missed
    with pytest.raises(CommandError, match="sending x failed: peer refused"):
        await progress.wait("id1")
    progress = Progress(cli, "sending y", console=Console(file=io.StringIO()))
    progress.listen()
    with pytest.raises(CommandError) as info:
        await progress.wait("id2", timeout=0.01)
    assert info.value.exit_code == C.EXIT_TIMEOUT


@aio
async def test_bar_on_a_terminal_with_size_and_speed() -> None:
    cli, bridge = make_cli()
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    progress = Progress(cli, "report.pdf", interval=0.001, console=console)
    assert progress.show
    progress.listen()
    positions = iter([(0, 2_000_000), (1_000_000, 2_000_000), (2_000_000, 2_000_000)])

    async def poll() -> tuple[int, int | None]:
        try:
            return next(positions)
        except StopIteration:
            bridge.emit("progress_finished", "id1", "", "alice")
            return 2_000_000, 2_000_000

    assert await progress.wait("id1", poll) == {}
    text = stream.getvalue()
    assert "report.pdf" in text and "2.0 MB" in text and "100%" in text


def test_hidden_when_quiet_or_json_or_not_a_terminal() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert not Progress(make_cli("-q")[0], console=terminal).show
    assert not Progress(make_cli("-O", "json")[0], console=terminal).show
    assert not Progress(make_cli()[0], console=Console(file=io.StringIO())).show
