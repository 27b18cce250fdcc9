"""Bridge benchmark: our D-Bus bridge and client against raw dbus-fast, measured in the same run.

    .venv/bin/python bench/bridge.py                  # full size (a few seconds)
    .venv/bin/python bench/bridge.py --scale 0.1 --json figures.json
    .venv/bin/python bench/bridge.py --json          # figures as JSON on stdout too

Starts its own private ``dbus-daemon`` (nothing touches the user's session bus), then, service
and client in this process on one asyncio loop (so each figure is the cost of both ends):

1. sequential calls/s: one ``profile_name_get(s) -> s`` at a time (trivial handler);
2. pipelined calls/s: 5,000 calls in flight at once;
3. signals/s: ``connected(ss)`` signals emitted by the service, counted by the client.

Each is measured through :class:`DBusBridge` + :class:`BridgeClient`, and as a baseline with
raw dbus-fast's low-level API (a message handler answering the same method, ``bus.call`` of
a prebuilt message; ``bus.send`` of signals, counted by a message handler), so the ratios show
what our layers cost. Each figure is the best of ``--rounds`` rounds, alternating between the
two stacks; besides the rates, the CPU time of this process per operation is reported (it
varies less with the machine's load than the rates do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbus_fast import Message, MessageType  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

from libervia.backend.bridge.api import OBJECT_PATH, interface_name  # noqa: E402
from libervia.backend.bridge.dbus import DBusBridge  # noqa: E402
from libervia.frontends.bridge import BridgeClient, dbus_fast_compat  # noqa: E402
from tests.dbus import DBusDaemon  # noqa: E402

CORE = interface_name("core")
RAW_NAME = "org.libervia.BenchRaw"
SEQUENTIAL = 5000
PIPELINED = 5000
SIGNALS = 20000


class Handlers:
    def profile_name_get(self, profile_key: str) -> str:
        return profile_key


async def timed(count: int, run: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """(operations per second, CPU microseconds of this process per operation).

    Service and client share this process, so the CPU figure is the cost of both ends (the
    dbus-daemon's own work excluded); it varies less than the rate with the machine's load.
    """
    cpu, start = time.process_time(), time.perf_counter()
    await run(count)
    return count / (time.perf_counter() - start), (time.process_time() - cpu) * 1e6 / count


class Ours:
    """DBusBridge + BridgeClient."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def start(self) -> None:
        self.bridge = DBusBridge(Handlers(), bus_address=self.address)
        await self.bridge.connect()
        self.client = await BridgeClient.connect(self.address)
        self.received = 0
        self.target = 0
        self.done = asyncio.Event()
        handle = self.client.on_signal("connected", self._on_signal)
        await handle.ready()

    async def stop(self) -> None:
        await self.client.close()
        await self.bridge.disconnect()

    def _on_signal(self, jid: str, profile: str) -> None:
        self.received += 1
        if self.received == self.target:
            self.done.set()

    async def sequential(self, n: int) -> None:
        for _ in range(n):
            assert await self.client.profile_name_get("alice") == "alice"

    async def pipelined(self, n: int) -> None:
        results = await asyncio.gather(*(self.client.profile_name_get("bob") for _ in range(n)))
        assert len(results) == n

    async def signals(self, n: int) -> None:
        self.received, self.target = 0, n
        self.done.clear()
        for _ in range(n):
            self.bridge.emit("connected", "alice@example.org/bench", "alice")
        await asyncio.wait_for(self.done.wait(), 120)


class Raw:
    """The baseline: dbus-fast's low-level API only (what any bridge must at least cost)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def start(self) -> None:
        self.service = await MessageBus(bus_address=self.address).connect()
        self.service.add_message_handler(self._serve)
        await self.service.request_name(RAW_NAME)
        self.client = await MessageBus(bus_address=self.address).connect()
        self.client.add_message_handler(self._on_signal)
        rule = f"type='signal',sender='{RAW_NAME}',path='{OBJECT_PATH}',interface='{CORE}'"
        await self.client.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        self.received = 0
        self.target = 0
        self.done = asyncio.Event()

    async def stop(self) -> None:
        for bus in (self.client, self.service):
            bus.disconnect()
            await bus.wait_for_disconnect()

    @staticmethod
    def _serve(msg: Message) -> Message | None:
        if msg.message_type is MessageType.METHOD_CALL and msg.member == "profile_name_get":
            return Message.new_method_return(msg, "s", [msg.body[0]])
        return None

    def _on_signal(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.member == "connected":
            self.received += 1
            if self.received == self.target:
                self.done.set()

    def _message(self, arg: str) -> Message:
        return Message(
            destination=RAW_NAME,
            path=OBJECT_PATH,
            interface=CORE,
            member="profile_name_get",
            signature="s",
            body=[arg],
        )

    async def sequential(self, n: int) -> None:
        for _ in range(n):
            reply = await self.client.call(self._message("alice"))
            assert reply.body == ["alice"]

    async def pipelined(self, n: int) -> None:
        replies = await asyncio.gather(*(self.client.call(self._message("bob")) for _ in range(n)))
        assert len(replies) == n

    async def signals(self, n: int) -> None:
        self.received, self.target = 0, n
        self.done.clear()
        for _ in range(n):
            self.service.send(
                Message.new_signal(
                    OBJECT_PATH, CORE, "connected", "ss", ["alice@example.org/bench", "alice"]
                )
            )
        await asyncio.wait_for(self.done.wait(), 120)


async def measure(address: str, scale: float, rounds: int) -> dict[str, float]:
    """Both stacks run side by side (the raw service owns another name); rounds alternate
    between them so that load from elsewhere on the machine hits both alike."""
    dbus_fast_compat.install()
    sizes = {
        "sequential": max(1, int(SEQUENTIAL * scale)),
        "pipelined": max(1, int(PIPELINED * scale)),
        "signals": max(1, int(SIGNALS * scale)),
    }
    impls = {"raw": Raw(address), "bridge": Ours(address)}
    figures: dict[str, float] = {}
    for impl in impls.values():
        await impl.start()
    try:
        for impl in impls.values():
            await impl.sequential(min(200, sizes["sequential"]))  # warm up
        for _ in range(rounds):
            for kind, count in sizes.items():
                for label, impl in impls.items():
                    rate, cpu = await timed(count, getattr(impl, kind))
                    key = f"{label}_{kind}"
                    figures[f"{key}_per_s"] = max(figures.get(f"{key}_per_s", 0.0), rate)
                    figures[f"{key}_cpu_us"] = min(figures.get(f"{key}_cpu_us", cpu), cpu)
    finally:
        for impl in impls.values():
            await impl.stop()
    for kind in sizes:
        figures[f"{kind}_ratio"] = figures[f"bridge_{kind}_per_s"] / figures[f"raw_{kind}_per_s"]
        figures[f"{kind}_cpu_ratio"] = (
            figures[f"bridge_{kind}_cpu_us"] / figures[f"raw_{kind}_cpu_us"]
        )
    figures.update({f"{kind}_count": float(n) for kind, n in sizes.items()})
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"{'':<28}{'-- operations per second --':^36}{'-- CPU us per operation --':^36}",
        f"{'measure':<28}{'bridge':>12}{'raw':>12}{'ratio':>12}"
        f"{'bridge':>12}{'raw':>12}{'ratio':>12}",
    ]
    for kind, unit in (("sequential", "calls"), ("pipelined", "calls"), ("signals", "signals")):
        label = f"{kind} {unit} ({int(figures[kind + '_count']):,})"
        lines.append(
            f"{label:<28}"
            f"{figures[f'bridge_{kind}_per_s']:>12,.0f}{figures[f'raw_{kind}_per_s']:>12,.0f}"
            f"{figures[f'{kind}_ratio']:>12.2f}"
            f"{figures[f'bridge_{kind}_cpu_us']:>12.1f}{figures[f'raw_{kind}_cpu_us']:>12.1f}"
            f"{figures[f'{kind}_cpu_ratio']:>12.2f}"
        )
    lines.append(
        "ratio = bridge / raw dbus-fast (rates: best round; CPU: cheapest round, service and "
        "client together)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (best kept)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        help="also write the figures as JSON, to this file or (no value) to stdout",
    )
    args = parser.parse_args()
    # the bench serves one method: don't list the others as missing
    logging.getLogger("libervia.backend.bridge.dbus").setLevel(logging.ERROR)
    with DBusDaemon() as daemon:
        figures = asyncio.run(measure(daemon.address, args.scale, args.rounds))
    print(report(figures))
    if args.json == "-":
        print(json.dumps(figures, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
