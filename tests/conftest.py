"""Shared test helpers.

Tests run under pytest-twisted with the asyncio reactor (``--reactor=asyncio`` in pyproject), the
way the daemon runs. Async tests are written as coroutines decorated with :func:`aio`, which runs
them on the reactor's asyncio loop (never through ``defer.ensureDeferred``: SQLAlchemy's asyncio
objects need a real asyncio task).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest_twisted

from libervia.backend.core.aio import as_deferred

# fixtures shared by every tier: a private dbus-daemon (dbus_daemon, bus_address)
pytest_plugins = ["tests.dbus"]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous test code (fixtures, helpers)."""
    return pytest_twisted.blockon(as_deferred(coro))  # type: ignore[no-any-return]


def aio(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Decorate an ``async def`` test so that it runs on the reactor's asyncio loop."""
    assert inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # pytest-twisted runs test functions in the reactor's greenlet and waits for a
        # returned Deferred (fixtures run outside of it, where run() can block)
        return as_deferred(fn(*args, **kwargs))

    return wrapper


def turns(seconds: float = 60.0) -> Iterator[int]:
    """Event-loop turns for a test yielding (``await asyncio.sleep(0)``) until something
    done in a thread (the database) or in later turns shows up: numbered, for as long as
    ``seconds`` of loop time pass (a bound in time, not in turns: a loaded machine needs
    more turns for the same work)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    count = 0
    while loop.time() < deadline:
        yield count
        count += 1
