"""Alembic environment.

Two ways in:

- in-app (:mod:`libervia.backend.memory.schema`): the caller puts a synchronous connection, already
  inside a transaction, in ``config.attributes["connection"]`` (from ``AsyncConnection.run_sync``);
  the caller commits or rolls back.
- command line (``alembic upgrade head`` from the repository root or from this directory): the
  database is ``-x db_url=URL``, else ``sqlalchemy.url`` from the ini file, else the ``db_url`` of
  the user's ``libervia.conf``. All revisions run in one transaction (SQLite included).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection, make_url

from libervia.backend.core.config import Config
from libervia.backend.memory import engine as engine_mod
from libervia.backend.memory.schema import include_name, render_item
from libervia.backend.memory.sqla_mapping import Base

config = context.config
target_metadata = Base.metadata


CONFIGURE_KWARGS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "render_as_batch": True,
    "include_name": include_name,
    "render_item": render_item,
    "compare_type": True,
    "transactional_ddl": True,
}


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **CONFIGURE_KWARGS)
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "sqlite" and not context.is_offline_mode():
            engine_mod.check_foreign_keys(connection)


def get_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("db_url")
    if not url:
        url = config.get_main_option("sqlalchemy.url")
    if not url:
        url = Config.load().db_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return url


async def run_async_migrations() -> None:
    engine = engine_mod.create_engine(get_url())
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(**{engine_mod.FOREIGN_KEYS_OFF: True})
            await conn.run_sync(do_run_migrations)
            await conn.commit()
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    do_run_migrations(connection)
elif context.is_offline_mode():
    context.configure(url=get_url(), literal_binds=True, **CONFIGURE_KWARGS)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async_migrations())
