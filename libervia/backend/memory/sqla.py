"""Storage: the high-level async API through which everything reaches the database.

Plugins and core call the methods of :class:`Storage`; they never build SQL. The methods are
implemented by per-concern stores (:mod:`libervia.backend.memory.storage`), reachable as
attributes (``storage.history``, ``storage.pubsub``...) and exposed here under their public
names, so that ``storage.add_to_history(...)`` and ``storage.history.add_to_history(...)`` are
the same call.

Usage::

    storage = Storage(config.db_url)
    await storage.initialise()   # creates or migrates the database (see memory/schema.py)
    await storage.create_profile("alice")
    await storage.add_to_history(HistoryMessage(...), "alice")
    await storage.close()
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa

from libervia.backend.core.exceptions import ConfigError, DatabaseError
from libervia.backend.core.log import get_logger
from libervia.backend.memory import schema
from libervia.backend.memory.engine import create_engine
from libervia.backend.memory.storage.base import Database
from libervia.backend.memory.storage.files import FileStore
from libervia.backend.memory.storage.history import Direction, HistoryMessage, HistoryStore
from libervia.backend.memory.storage.params import ParamStore
from libervia.backend.memory.storage.privates import PrivateStore
from libervia.backend.memory.storage.profiles import ProfileStore
from libervia.backend.memory.storage.pubsub import PubsubStore, RSMResult

__all__ = ["Direction", "HistoryMessage", "RSMResult", "Storage", "is_transient_error"]

log = get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _expose(
    store: str, method: Callable[Concatenate[Any, P], R]
) -> Callable[Concatenate[Storage, P], R]:
    """Expose a store's method on Storage (same signature and docstring)."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: Storage, *args: P.args, **kwargs: P.kwargs) -> R:
        self._check_ready()
        return getattr(getattr(self, store), name)(*args, **kwargs)  # type: ignore[no-any-return]

    return call


def is_transient_error(error: BaseException) -> bool:
    """Whether a storage error may go away by itself, so that the write is worth trying again.

    True for the database's operational errors (SQLite: "database or disk is full", "disk I/O
    error", "database is locked"; PostgreSQL: lost connection...), a connection invalidated
    under the call, and OS errors (no space, I/O). False for errors of the data itself
    (integrity, invalid values: trying again would fail the same way).
    """
    if isinstance(error, sa.exc.OperationalError):
        return True
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    return isinstance(error, (sqlite3.OperationalError, OSError))


class Storage:
    """The database of the backend.

    Args:
        db_url: SQLAlchemy URL (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``).
        clock: time source of the timestamps the storage sets itself (tests inject one).
        script_location: Alembic scripts (tests use a copy with extra revisions).
    """

    def __init__(
        self,
        db_url: str,
        *,
        clock: Callable[[], float] = time.time,
        script_location: Path = schema.MIGRATION_DIR,
        **engine_kwargs: Any,
    ) -> None:
        try:
            engine = create_engine(db_url, **engine_kwargs)
        except (sa.exc.ArgumentError, ImportError, ValueError) as e:
            raise ConfigError(f"invalid database URL {db_url!r}: {e}") from e
        self.db_url = db_url
        self.script_location = script_location
        self.db = Database(engine, clock)
        self.profiles = ProfileStore(self.db)
        self.params = ParamStore(self.db, self.profiles)
        self.history = HistoryStore(self.db, self.profiles)
        self.privates = PrivateStore(self.db, self.profiles)
        self.files = FileStore(self.db, self.profiles)
        self.pubsub = PubsubStore(self.db, self.profiles)
        self.status: schema.DbStatus | None = None

    @property
    def engine(self) -> Any:
        return self.db.engine

    def _check_ready(self) -> None:
        if self.status is None:
            raise DatabaseError("the storage is not initialised: call initialise() first")

    async def initialise(self) -> schema.DbStatus:
        """Create or migrate the database, then load the profiles.

        Raises:
            DatabaseCorrupted, DatabaseTooNew, MigrationFailed, DatabaseError: see
                :func:`libervia.backend.memory.schema.prepare_database`; the database is left
                untouched in every case.
        """
        status = await schema.prepare_database(self.db.engine, self.script_location)
        await self.profiles.load()
        self.status = status
        return status

    async def close(self) -> None:
        """Close every connection (the storage cannot be used afterwards)."""
        self.status = None
        await self.db.close()

    # profiles
    get_profiles_list = _expose("profiles", ProfileStore.get_profiles_list)
    has_profile = _expose("profiles", ProfileStore.has_profile)
    profile_name_of = _expose("profiles", ProfileStore.name_of)
    profile_is_component = _expose("profiles", ProfileStore.profile_is_component)
    get_entry_point = _expose("profiles", ProfileStore.get_entry_point)
    create_profile = _expose("profiles", ProfileStore.create_profile)
    delete_profile = _expose("profiles", ProfileStore.delete_profile)

    # params
    load_gen_params = _expose("params", ParamStore.load_gen_params)
    load_ind_params = _expose("params", ParamStore.load_ind_params)
    get_ind_param = _expose("params", ParamStore.get_ind_param)
    get_ind_param_values = _expose("params", ParamStore.get_ind_param_values)
    set_gen_param = _expose("params", ParamStore.set_gen_param)
    set_ind_param = _expose("params", ParamStore.set_ind_param)

    # history
    add_to_history = _expose("history", HistoryStore.add_to_history)
    history_get = _expose("history", HistoryStore.history_get)
    delete_history = _expose("history", HistoryStore.delete_history)

    # private values
    get_privates = _expose("privates", PrivateStore.get_privates)
    set_private_value = _expose("privates", PrivateStore.set_private_value)
    del_private_value = _expose("privates", PrivateStore.del_private_value)
    del_private_namespace = _expose("privates", PrivateStore.del_private_namespace)

    # files
    get_files = _expose("files", FileStore.get_files)
    set_file = _expose("files", FileStore.set_file)
    file_update = _expose("files", FileStore.file_update)
    file_delete = _expose("files", FileStore.file_delete)
    file_get_used_space = _expose("files", FileStore.file_get_used_space)

    # pubsub cache
    get_pubsub_node = _expose("pubsub", PubsubStore.get_pubsub_node)
    set_pubsub_node = _expose("pubsub", PubsubStore.set_pubsub_node)
    get_pubsub_nodes = _expose("pubsub", PubsubStore.get_pubsub_nodes)
    update_pubsub_node_sync_state = _expose("pubsub", PubsubStore.update_pubsub_node_sync_state)
    delete_pubsub_node = _expose("pubsub", PubsubStore.delete_pubsub_node)
    cache_pubsub_items = _expose("pubsub", PubsubStore.cache_pubsub_items)
    delete_pubsub_items = _expose("pubsub", PubsubStore.delete_pubsub_items)
    purge_pubsub_items = _expose("pubsub", PubsubStore.purge_pubsub_items)
    get_items = _expose("pubsub", PubsubStore.get_items)
    search_pubsub_items = _expose("pubsub", PubsubStore.search_pubsub_items)
