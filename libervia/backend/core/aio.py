"""The boundary between Twisted Deferreds and asyncio coroutines.

The asyncio reactor runs both on one loop. Rules (measured, DESIGN.md §4):

- from Twisted code, run a coroutine with :func:`as_deferred` (never ``defer.ensureDeferred``
  on a coroutine that awaits asyncio objects: SQLAlchemy, aiosqlite, asyncpg, aiortc);
- from asyncio code, await a Deferred with :func:`as_future`;
- never drop a task: await it or hand it to :func:`background`, which logs failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from libervia.backend.core.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")

_background_tasks: set[asyncio.Task[Any]] = set()


def as_deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run an asyncio coroutine and return a Deferred of its result."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


def as_future(d: Deferred[T]) -> asyncio.Future[T]:
    """Return an asyncio future of a Deferred's result (await it from asyncio code)."""
    return d.asFuture(asyncio.get_event_loop())


def background(coro: Coroutine[Any, Any, Any], description: str) -> asyncio.Task[Any]:
    """Run a coroutine in the background; its failure is logged, never lost silently."""
    task = asyncio.ensure_future(coro)
    _background_tasks.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        _background_tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("background task %r failed", description, exc_info=t.exception())

    task.add_done_callback(done)
    return task
