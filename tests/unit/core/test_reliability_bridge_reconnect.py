"""The D-Bus bridge's reconnection (bridge/dbus.py DBusBridge): a lost bus connection is
opened again with backoff and the name owned again; a fake sleep and fake buses (no bus, no
waiting)."""

from __future__ import annotations

import asyncio
from typing import Any

from libervia.backend.bridge.dbus import DBusBridge
from libervia.backend.core.exceptions import ConfigError, ConflictError
from tests.conftest import aio


class FakeBus:
    def __init__(self, name: str) -> None:
        self.unique_name = name
        self.connected = True
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait_for_disconnect(self) -> None:
        await self.lost

    def drop(self, error: Exception | None = None) -> None:
        self.connected = False
        if error is None:
            self.lost.set_result(None)
        else:
            self.lost.set_exception(error)

    def disconnect(self) -> None:
        self.drop()


class Setup:
    def __init__(self, failures: list[Exception]) -> None:
        self.delays: list[float] = []
        self.failures = failures
        self.buses: list[FakeBus] = []
        self.bridge = DBusBridge(object(), sleep=self.sleep)
        self.bridge._open = self.open  # type: ignore[method-assign]

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)

    async def open(self) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        bus = FakeBus(f":1.{len(self.buses)}")
        self.buses.append(bus)
        return bus


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@aio
async def test_lost_bus_is_reconnected_with_backoff(caplog) -> None:
    caplog.set_level("INFO")
    s = Setup([])
    await s.bridge.connect()
    s.failures.extend([ConfigError("no bus")] * 7)
    first = s.buses[0]
    assert s.bridge.connected
    first.drop(EOFError("the bus went away"))
    await settle()
    # 0.1 s, then twice longer after each failure, capped at 5 s
    assert s.delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert s.bridge.connected and s.bridge._bus is s.buses[1]
    assert s.bridge.reconnections == 1
    assert "lost the D-Bus connection (the bus went away)" in caplog.text
    assert "D-Bus connection restored after 8 attempt(s)" in caplog.text
    # watched again: a second loss is handled the same way
    s.delays.clear()
    s.buses[1].drop()
    await settle()
    assert s.delays == [0.1] and s.bridge._bus is s.buses[2]
    await s.bridge.disconnect()
    assert not s.buses[2].connected
    await settle()
    assert s.delays == [0.1]  # a requested disconnection is not reconnected


@aio
async def test_name_taken_meanwhile_stops_trying(caplog) -> None:
    s = Setup([])
    await s.bridge.connect()
    s.failures.append(ConflictError("another libervia-backend owns the name"))
    s.buses[0].drop()
    await settle()
    assert not s.bridge.connected and s.delays == [0.1]
    assert "the bridge name is taken" in caplog.text
    await s.bridge.disconnect()


@aio
async def test_disconnect_while_reconnecting() -> None:
    s = Setup([])
    await s.bridge.connect()
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def blocked(delay: float) -> None:
        s.delays.append(delay)
        await gate

    s.bridge._sleep = blocked
    s.buses[0].drop()
    await settle()
    assert s.delays == [0.1]
    await s.bridge.disconnect()  # cancels the pending attempt
    assert not s.bridge.connected and len(s.buses) == 1


@aio
async def test_emit_while_disconnected_is_dropped(caplog) -> None:
    s = Setup([])
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def blocked(delay: float) -> None:
        await gate

    s.bridge._sleep = blocked
    await s.bridge.connect()
    s.buses[0].drop()
    await settle()
    s.bridge.emit("disconnected", "alice")
    assert "signal disconnected dropped" in caplog.text
    await s.bridge.disconnect()
