"""BridgeClient pieces that need no bus: errors, the connect/method name clash, deadlines."""

from __future__ import annotations

import asyncio

import pytest

from libervia.frontends.bridge import client as client_module
from libervia.frontends.bridge.client import (
    BridgeClient,
    BridgeError,
    BridgeTimeout,
    BridgeUnavailable,
)
from tests.conftest import aio


def test_error_code_and_text() -> None:
    e = BridgeError("org.libervia.Libervia.Error.ProfileUnknown", "unknown profile 'x'")
    assert (e.name, e.code, e.message) == (
        "org.libervia.Libervia.Error.ProfileUnknown",
        "ProfileUnknown",
        "unknown profile 'x'",
    )
    assert str(e) == "ProfileUnknown: unknown profile 'x'"
    other = BridgeError("org.freedesktop.DBus.Error.InvalidArgs", "bad")
    assert other.code == "org.freedesktop.DBus.Error.InvalidArgs"


def test_error_subclasses() -> None:
    unavailable = BridgeUnavailable("gone")
    assert isinstance(unavailable, BridgeError)
    assert unavailable.code == "org.freedesktop.DBus.Error.ServiceUnknown"
    timeout = BridgeTimeout("slow")
    assert isinstance(timeout, BridgeError) and isinstance(timeout, TimeoutError)
    assert "libervia-backend start" in client_module.NOT_RUNNING


class _Bus:
    connected = True

    def add_message_handler(self, handler: object) -> None:
        pass


def test_connect_is_open_on_the_class_and_the_core_method_on_an_instance() -> None:
    assert BridgeClient.connect == BridgeClient.open
    client = BridgeClient(_Bus())  # type: ignore[arg-type]
    method = client.connect
    assert method.__name__ == "connect"
    assert client.profile_create.__name__ == "profile_create"
    assert client.profile_create is client.profile_create  # cached after the first access
    with pytest.raises(AttributeError):
        client._private  # noqa: B018


class FakeLoop:
    """Just what _Deadlines uses of a loop, with a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object, list[bool]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: object) -> object:
        cancelled = [False]
        self.timers.append((when, callback, cancelled))

        class Handle:
            def cancel(self) -> None:
                cancelled[0] = True

        return Handle()

    def advance(self, seconds: float) -> None:
        """Move the clock and run the timers due, like the event loop would."""
        self.now += seconds
        while True:
            due = [t for t in self.timers if t[0] <= self.now and not t[2][0]]
            if not due:
                return
            timer = min(due, key=lambda t: t[0])
            self.timers.remove(timer)
            timer[1]()  # type: ignore[operator]


@aio
async def test_deadlines_fire_in_order_and_rearm() -> None:
    fake = FakeLoop()
    deadlines = client_module._Deadlines(fake)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    late, early, dropped = (loop.create_future() for _ in range(3))
    deadlines.add(late, 60, lambda: fired.append("late"))
    deadlines.add(early, 20, lambda: fired.append("early"))  # earlier: re-arms the timer
    deadlines.add(dropped, 10, lambda: fired.append("dropped"))
    deadlines.discard(dropped)
    assert len([t for t in fake.timers if not t[2][0]]) == 1  # one live timer for all
    fake.advance(15)
    assert fired == []  # the discarded call never expires
    fake.advance(10)
    assert fired == ["early"]
    fake.advance(34)
    assert fired == ["early"]
    fake.advance(1)
    assert fired == ["early", "late"]
    assert deadlines._pending == {} and deadlines._timer is None
    deadlines.add(loop.create_future(), 30, lambda: fired.append("never"))
    deadlines.close()
    fake.advance(60)
    assert fired == ["early", "late"]
    assert deadlines._timer is None and deadlines._pending == {}
