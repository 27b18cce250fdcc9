"""Engine creation: the per-engine settings every connection gets.

SQLite (aiosqlite):

- ``journal_mode=WAL``, ``synchronous=NORMAL`` (no fsync per commit), ``foreign_keys=ON``;
- the driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself, so
  that DDL is transactional too (a failed migration rolls back entirely) and SAVEPOINTs work;
- transactions that may write start with ``BEGIN IMMEDIATE`` (see :data:`READ_ONLY`).

PostgreSQL (asyncpg): nothing special, it already does all of that.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

#: execution option asking for foreign keys to be switched off for one SQLite transaction
#: (Alembic batch migrations copy tables that other tables reference)
FOREIGN_KEYS_OFF = "libervia_foreign_keys_off"
#: execution option of SQLite transactions that only read: a plain (deferred) ``BEGIN``.
#: Every other transaction starts with ``BEGIN IMMEDIATE``: in WAL mode, a deferred
#: transaction that read and then writes fails at once with "database is locked" when
#: another connection wrote meanwhile (its snapshot is stale: the busy timeout does not
#: apply); taking the write lock first makes writers wait for each other instead.
READ_ONLY = "libervia_read_only"

SQLITE_BUSY_TIMEOUT_S = 30
#: page cache per connection (SQLite default: 2 MiB), in KiB
SQLITE_CACHE_KIB = 32768


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # let SQLAlchemy drive transactions (see the "begin" listener)
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # the pragma is only effective outside of a transaction, hence here, before BEGIN; the state
    # is remembered per DBAPI connection, so that a pooled connection gets foreign keys back
    options = conn.get_execution_options()
    wanted_off = bool(options.get(FOREIGN_KEYS_OFF))
    info = conn.connection.info
    if wanted_off != info.get(FOREIGN_KEYS_OFF, False):
        conn.exec_driver_sql(f"PRAGMA foreign_keys={'OFF' if wanted_off else 'ON'}")
        info[FOREIGN_KEYS_OFF] = wanted_off
    conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY) else "BEGIN IMMEDIATE")


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """Create the async engine of a database URL, with our per-engine settings."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def create_sync_twin(url: str | URL) -> sa.Engine | None:
    """A synchronous engine on the same SQLite file (None for PostgreSQL or in-memory SQLite).

    aiosqlite runs each statement in its thread: a transaction of a few statements costs a
    dozen thread round trips (~0.25 ms each here: ~7 ms for one message in the history). Hot
    write paths run their whole transaction on this engine in one worker thread instead
    (:meth:`Database.run_transaction`): one round trip. Same pragmas, same explicit BEGIN.
    """
    url = make_url(url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None
    engine = sa.create_engine(
        url.set(drivername="sqlite"),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        pool_size=1,
        max_overflow=0,
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    """Sessions never expire loaded objects on commit (no implicit I/O afterwards)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def check_foreign_keys(connection: Any) -> None:
    """Fail when an SQLite transaction run without foreign keys left dangling references.

    Raises:
        sqlalchemy.exc.IntegrityError-like RuntimeError: listing the first violations.
    """
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if rows:
        raise RuntimeError(f"foreign key violations after migration: {rows[:10]}")
