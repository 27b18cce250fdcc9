"""Concurrent units of work that read, then write (the pattern of most storage methods): on
SQLite in WAL mode a deferred transaction doing so fails at once with "database is locked"
when another connection wrote since its read (found by the bridge walk of
tests/reliability); writing transactions therefore take the write lock first (``BEGIN
IMMEDIATE``) and wait for each other, read-only ones do not block."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from libervia.backend.memory.sqla import Storage
from tests.conftest import aio


@aio
async def test_read_then_write_transactions_in_parallel(storage: Storage) -> None:
    db = storage.db

    async def read_then_write(n: int) -> None:
        async with db.transaction() as session:
            await session.execute(sa.text("SELECT count(*) FROM private_gen"))
            await asyncio.sleep(0)  # let the others read too
            await session.execute(
                sa.text("INSERT INTO private_gen (namespace, key, value) VALUES ('t', :k, :v)"),
                {"k": f"k{n}", "v": '"v"'},
            )

    await asyncio.gather(*(read_then_write(n) for n in range(24)))
    async with db.transaction(read_only=True) as session:
        count = await session.scalar(
            sa.text("SELECT count(*) FROM private_gen WHERE namespace = 't'")
        )
    assert count == 24


@aio
async def test_readers_do_not_wait_for_a_writer(storage: Storage) -> None:
    """A read-only unit of work runs while a writing one holds the write lock."""
    db = storage.db
    writing = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as session:
            await session.execute(
                sa.text("INSERT INTO private_gen (namespace, key, value) VALUES ('w', 'k', :v)"),
                {"v": '"v"'},
            )
            writing.set()
            await release.wait()

    task = asyncio.ensure_future(writer())
    await writing.wait()
    async with db.transaction(read_only=True) as session:
        # the writer's row is not committed: not seen, and no waiting for its lock
        assert await session.scalar(sa.text("SELECT count(*) FROM private_gen")) == 0
    release.set()
    await task
