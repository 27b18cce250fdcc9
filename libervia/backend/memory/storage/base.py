"""What every store shares: the engine, the session factory and engine-aware helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.memory.engine import READ_ONLY, create_sessionmaker, create_sync_twin


class Database:
    """The engine, its session factory, and a clock (for timestamps; tests inject one)."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
        #: the same engine, for transactions that only read (a deferred BEGIN on SQLite)
        self._read_engine = engine.execution_options(**{READ_ONLY: True})
        self._read_sessions = create_sessionmaker(self._read_engine)
        self.clock = clock
        #: SQLite file: synchronous engine for one-hop transactions (see run_transaction)
        self._sync_engine = create_sync_twin(engine.url)
        self._executor: ThreadPoolExecutor | None = None
        self._sync_conn: sa.Connection | None = None

    async def run_transaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(connection, *args)`` (synchronous Core code) in one transaction.

        On an SQLite file the whole transaction runs in one worker thread on a synchronous
        engine: one thread round trip, instead of one per statement through aiosqlite (a
        message in the history: ~7 ms -> ~1 ms, doc/benchmarks.rst). Elsewhere it runs on the
        async engine (``AsyncConnection.run_sync``). Transactions run one at a time in the
        worker, in call order.

        Raises:
            InvalidInput: a value could not be converted for the database.
        """
        if self._sync_engine is None:
            async with self.connection() as conn:
                return await conn.run_sync(fn, *args)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="libervia-db")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._run_sync_transaction, fn, args
        )

    def _run_sync_transaction(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        # runs in the single worker thread, which keeps its connection open (a pool checkout
        # per transaction cost ~0.08 ms here)
        assert self._sync_engine is not None
        if self._sync_conn is None or self._sync_conn.closed or self._sync_conn.invalidated:
            self._sync_conn = self._sync_engine.connect()
        conn = self._sync_conn
        with _bad_values_as_invalid_input(), conn.begin():
            return fn(conn, *args)

    def _close_sync_connection(self) -> None:
        if self._sync_conn is not None:
            self._sync_conn.close()
            self._sync_conn = None

    async def close(self) -> None:
        """Close every connection (async engine, and the synchronous twin and its thread)."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(executor, self._close_sync_connection)
            await loop.run_in_executor(None, executor.shutdown)
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        await self.engine.dispose()

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work: a short session inside a transaction, committed on exit.

        ``read_only``: the unit of work never writes (on SQLite it then does not take the
        write lock, see :data:`~libervia.backend.memory.engine.READ_ONLY`).

        Raises:
            InvalidInput: a value could not be converted for the database (e.g. an ``extra``
                that is not JSON-serialisable); the transaction is rolled back.
        """
        sessions = self._read_sessions if read_only else self.sessions
        with _bad_values_as_invalid_input():
            async with sessions() as session, session.begin():
                yield session

    def insert(self, table: Any) -> Any:
        """Engine-specific INSERT (for ``on_conflict_do_nothing`` / ``on_conflict_do_update``)."""
        if self.dialect == "postgresql":
            return _postgresql().insert(table)
        return sqlite.insert(table)

    @asynccontextmanager
    async def connection(self, read_only: bool = False) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction (cheaper than a session, for Core statements);
        ``read_only`` as for :meth:`transaction`."""
        engine = self._read_engine if read_only else self.engine
        with _bad_values_as_invalid_input():
            async with engine.connect() as conn, conn.begin():
                yield conn

    def insert_ignore(self, table: Any) -> Any:
        """INSERT skipping rows that would violate a unique constraint.

        SQLite: ``INSERT OR IGNORE`` (measured ~1.7x faster than ``ON CONFLICT DO NOTHING`` for
        multi-row inserts; it also skips NOT NULL and CHECK violations, so validate rows
        first); PostgreSQL: ``ON CONFLICT DO NOTHING``.
        """
        if self.dialect == "postgresql":
            return _postgresql().insert(table).on_conflict_do_nothing()
        return sa.insert(table).prefix_with("OR IGNORE")

    def fts_param(self, text: str) -> str:
        """The value to bind to :meth:`fts_match`'s parameter for the user's search text."""
        text = text.replace("\x00", " ")  # NUL ends strings early (FTS5) or is refused (PG)
        return text if self.dialect == "postgresql" else fts5_query(text)

    def fts_match(
        self, column: sa.ColumnElement[Any], fts_table: str, query: str | sa.BindParameter[str]
    ) -> Any:
        """Full-text condition on ``column`` (its table's primary key must be ``id``).

        SQLite searches the FTS5 table ``fts_table``; PostgreSQL uses the GIN index on
        ``to_tsvector('simple', column)``. Every word of ``query`` must match. ``query`` is the
        user's text, or a bind parameter that will get :meth:`fts_param` of it.
        """
        value = sa.bindparam(None, self.fts_param(query)) if isinstance(query, str) else query
        if self.dialect == "postgresql":
            return sa.func.to_tsvector(sa.literal_column("'simple'"), column).op("@@")(
                sa.func.plainto_tsquery(sa.literal_column("'simple'"), value)
            )
        id_column = column.table.c.id  # type: ignore[attr-defined]
        return id_column.in_(
            sa.select(sa.literal_column("rowid"))
            .select_from(sa.table(fts_table))
            .where(sa.literal_column(fts_table).op("MATCH")(value))
        )


@contextmanager
def _bad_values_as_invalid_input() -> Iterator[None]:
    """Turn "this value cannot be bound" errors into InvalidInput (database errors pass)."""
    try:
        yield
    except sa.exc.StatementError as e:
        if isinstance(e, sa.exc.DBAPIError) or not isinstance(e.orig, TypeError | ValueError):
            raise
        raise InvalidInput(f"invalid value for the database: {e.orig}") from e


def fts5_query(text: str) -> str:
    """Turn user text into a safe FTS5 query: every word quoted, all required.

    FTS5 has its own query syntax (``AND``, ``NEAR``, ``*``, column filters...): quoting each word
    makes any user input a valid query that means "all these words".
    """
    words = text.replace("\x00", " ").split()  # NUL would end the FTS5 string early
    if not words:
        return '""'
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def _postgresql() -> Any:
    """SQLAlchemy's PostgreSQL dialect, imported by PostgreSQL engines only (~50 ms)."""
    from sqlalchemy.dialects import postgresql

    return postgresql
