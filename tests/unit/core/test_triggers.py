"""core.triggers: priorities, short-circuit, async callbacks, failures, removal."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.triggers import TriggerManager
from tests.conftest import aio


def test_priority_order_and_short_circuit() -> None:
    """Higher priority runs first, ties in registration order; False stops the rest."""
    manager = TriggerManager()
    calls: list[str] = []

    def make(name: str, result: Any = None):
        def callback(value: int) -> Any:
            calls.append(f"{name}:{value}")
            return result

        callback.__name__ = name
        return callback

    manager.add("p", make("low"), priority=-5)
    manager.add("p", make("high"), priority=10)
    manager.add("p", make("mid1"))
    manager.add("p", make("mid2"))
    assert manager.point("p", 1) is True
    assert calls == ["high:1", "mid1:1", "mid2:1", "low:1"]
    calls.clear()
    manager.add("p", make("stop", False), priority=5)
    assert manager.point("p", 2) is False
    assert calls == ["high:2", "stop:2"]
    assert manager.point("unknown point") is True


@aio
async def test_async_point() -> None:
    """async_point awaits coroutine callbacks and mixes them with plain ones."""
    manager = TriggerManager()
    seen: list[str] = []

    async def cached(node: str) -> bool:
        seen.append(f"cache:{node}")
        return node != "cached"

    def logger(node: str) -> None:
        seen.append(f"log:{node}")

    manager.add("items", cached, priority=100)
    manager.add("items", logger)
    assert await manager.async_point("items", "other") is True
    assert await manager.async_point("items", "cached") is False
    assert seen == ["cache:other", "log:other", "cache:cached"]


def test_sync_point_refuses_async_callback() -> None:
    """A coroutine callback on a synchronous point is a clear error, not a dropped coroutine."""
    manager = TriggerManager()

    async def callback() -> None:
        pass

    manager.add("p", callback)
    with pytest.raises(InvalidInput, match="async"):
        manager.point("p")


def test_failing_callback_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in a callback is logged; the next callbacks still run."""
    manager = TriggerManager()
    after: list[bool] = []

    def broken() -> None:
        raise RuntimeError("boom")

    manager.add("p", broken, priority=1)
    manager.add("p", lambda: after.append(True))
    with caplog.at_level(logging.ERROR):
        assert manager.point("p") is True
    assert after == [True]
    assert "boom" in caplog.text


def test_add_remove_and_validation() -> None:
    """Duplicates and out-of-range priorities are refused; remove and remove_all work."""
    manager = TriggerManager()

    class Plugin:
        def on_a(self) -> None: ...

        def on_b(self) -> None: ...

    plugin = Plugin()
    manager.add("a", plugin.on_a)
    manager.add("b", plugin.on_b)
    other = lambda: None  # noqa: E731
    manager.add("a", other)
    with pytest.raises(InvalidInput):
        manager.add("a", plugin.on_a)
    with pytest.raises(InvalidInput):
        manager.add("a", lambda: None, priority=10_000)
    manager.remove("a", other)
    manager.remove("a", other)  # absent: no error
    assert manager.callbacks("a") == [plugin.on_a]
    manager.remove_all(plugin)
    assert manager.callbacks("a") == [] and manager.callbacks("b") == []
