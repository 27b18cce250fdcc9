"""Database state detection, backup and in-process migration (Alembic API, no subprocess).

:func:`prepare_database` is what :meth:`Storage.initialise` runs:

- no database (or an empty one): create it by running every migration up to head;
- at head: nothing to do;
- behind: back up (SQLite: online backup to a dated file beside it), then upgrade in one
  transaction; a failed upgrade rolls back and leaves the data as it was;
- ahead of the code (a revision this version does not know): refuse, naming both revisions;
- unreadable or corrupted file, or a database that is not Libervia's: refuse, leave it untouched.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from libervia.backend.core.exceptions import (
    DatabaseCorrupted,
    DatabaseError,
    DatabaseTooNew,
    MigrationFailed,
)
from libervia.backend.core.log import get_logger
from libervia.backend.memory.engine import FOREIGN_KEYS_OFF
from libervia.backend.memory.sqla_mapping import FTS_OBJECT_NAMES

log = get_logger(__name__)

MIGRATION_DIR = Path(__file__).parent / "migration"
SQLITE_HEADER = b"SQLite format 3\x00"
VERSION_TABLE = "alembic_version"


def _is_fts_object(name: str) -> bool:
    # FTS5 virtual tables come with shadow tables (message_fts_data, message_fts_idx...)
    return any(name == fts or name.startswith(f"{fts}_") for fts in FTS_OBJECT_NAMES)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic autogenerate filter: the engine-specific full-text objects are not mapped."""
    if name is None:
        return True
    if type_ in ("table", "index"):
        return not _is_fts_object(name)
    return True


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Alembic autogenerate: render our column types as their plain ``sa`` implementation.

    Migrations must not import the live mappings.
    """
    if type_ == "type" and isinstance(obj, sa.TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


class DbState(Enum):
    NEW = "new"
    UP_TO_DATE = "up_to_date"
    BEHIND = "behind"


@dataclass(frozen=True)
class DbStatus:
    state: DbState
    #: revision found in the database (None for a new database)
    revision: str | None
    head: str
    #: file of the SQLite backup made before an upgrade
    backup: Path | None = None


def alembic_config(script_location: Path = MIGRATION_DIR) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(script_location))
    return cfg


def sqlite_path(url: str) -> Path | None:
    """Return the file of an SQLite URL (None for an in-memory database)."""
    database = make_url(url).database
    if database in (None, "", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database)


def _inspect_sqlite_file(path: Path) -> str | None | bool:
    """Read a database file without writing to it.

    Returns:
        False for an empty database (no table), None for tables without a version, else the
        revision.

    Raises:
        DatabaseCorrupted: the file is not a readable SQLite database.
    """
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise DatabaseError(
            f"cannot read the database file {path}: {e.strerror or e}. Check db_url and the "
            "file's permissions."
        ) from e
    if header != SQLITE_HEADER:
        raise DatabaseCorrupted(
            f"{path} is not an SQLite database (bad header); it was left untouched. Move it "
            "away to start with a new database, or point db_url to the right file."
        )
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise DatabaseCorrupted(
                    f"{path} is corrupted ({check[0] if check else 'no result'}); it was left "
                    "untouched. Restore a backup, or try the sqlite3 '.recover' command."
                )
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                return False
            if VERSION_TABLE not in tables:
                return None
            row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
            return row[0] if row else None
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise DatabaseCorrupted(
            f"{path} cannot be read as a database ({e}); it was left untouched. Restore a "
            "backup or move the file away."
        ) from e


def _read_revision_txn(conn: Connection) -> str | None | bool:
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if not tables:
        return False
    if VERSION_TABLE not in tables:
        return None
    row = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return row[0] if row else None


async def read_revision(engine: AsyncEngine) -> str | None | bool:
    """Revision of the database behind ``engine`` (False: empty, None: not versioned)."""
    path = sqlite_path(str(engine.url)) if engine.dialect.name == "sqlite" else None
    if engine.dialect.name == "sqlite":
        if path is None:
            async with engine.connect() as conn:
                return await conn.run_sync(_read_revision_txn)
        if not path.exists() or path.stat().st_size == 0:
            return False
        return await asyncio.to_thread(_inspect_sqlite_file, path)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read_revision_txn)
    except (OSError, sa.exc.SQLAlchemyError) as e:
        raise DatabaseError(f"cannot connect to the database {engine.url!r}: {e}") from e


def backup_sqlite(path: Path, revision: str) -> Path:
    """Copy a live SQLite database to a dated file beside it (online backup API)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.stem}.backup-{stamp}-rev{revision}{path.suffix}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.stem}.backup-{stamp}-rev{revision}-{n}{path.suffix}")
    # the backup holds the same secrets as the database: the user's only, whatever the umask
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()
    return target


async def _run_command(
    engine: AsyncEngine, script_location: Path, command_fn: Any, revision: str
) -> None:
    """Run an Alembic command in one transaction on the engine's connection.

    SQLite foreign keys are off for that transaction (batch migrations copy referenced tables)
    and checked before commit by ``env.py``.
    """
    cfg = alembic_config(script_location)

    def run(sync_conn: Connection) -> None:
        cfg.attributes["connection"] = sync_conn
        command_fn(cfg, revision)

    async with engine.connect() as conn:
        conn = await conn.execution_options(**{FOREIGN_KEYS_OFF: True})
        async with conn.begin():
            await conn.run_sync(run)
        if engine.dialect.name == "sqlite":
            # never give a connection without foreign keys back to the pool
            await conn.invalidate()


async def run_upgrade(
    engine: AsyncEngine, revision: str = "head", script_location: Path = MIGRATION_DIR
) -> None:
    """Upgrade to ``revision`` in one transaction."""
    from alembic import command

    await _run_command(engine, script_location, command.upgrade, revision)


async def run_downgrade(
    engine: AsyncEngine, revision: str, script_location: Path = MIGRATION_DIR
) -> None:
    """Downgrade to ``revision`` in one transaction (used by tests and by developers)."""
    from alembic import command

    await _run_command(engine, script_location, command.downgrade, revision)


async def check(engine: AsyncEngine, script_location: Path = MIGRATION_DIR) -> None:
    """Run ``alembic check`` on the engine's database.

    Raises:
        alembic.util.exc.AutogenerateDiffsDetected: the mappings and the schema differ.
    """
    from alembic import command

    cfg = alembic_config(script_location)

    def do_check(sync_conn: Connection) -> None:
        cfg.attributes["connection"] = sync_conn
        command.check(cfg)

    async with engine.connect() as conn:
        await conn.run_sync(do_check)


_REVISION_RE = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN_RE = re.compile(r"^down_revision(?:\s*:[^=]*)?\s*=\s*(.+)$", re.M)


def quick_head(script_location: Path = MIGRATION_DIR) -> str | None:
    """The head revision, read from the revision files without importing Alembic.

    Returns None when it cannot be told simply (a merge, several heads, an unusual file):
    the caller then asks Alembic. A test checks it against Alembic's answer.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        files = list((script_location / "versions").glob("*.py"))
    except OSError:
        return None
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        revision = _REVISION_RE.search(text)
        down = _DOWN_RE.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        value = down.group(1).split("#")[0].strip()
        if value == "None":
            continue
        parent = re.fullmatch(r"[\"']([^\"']+)[\"']", value)
        if parent is None:
            return None  # a merge (tuple) or anything unusual
        parents.add(parent.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def prepare_database(engine: AsyncEngine, script_location: Path = MIGRATION_DIR) -> DbStatus:
    """Bring the database to the head revision (see the module docstring).

    Raises:
        DatabaseCorrupted: unreadable file, or tables that are not Libervia's.
        DatabaseTooNew: the database has a revision this code does not know.
        MigrationFailed: the upgrade failed; nothing was changed.
    """
    url = str(engine.url)
    revision = await read_revision(engine)
    if isinstance(revision, str) and revision == quick_head(script_location):
        # the common case, without importing Alembic (~0.3 s of the daemon's start)
        return DbStatus(DbState.UP_TO_DATE, revision, revision)
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config(script_location))
    head = script.get_current_head()
    assert head is not None
    if revision is None:
        raise DatabaseCorrupted(
            f"the database {engine.url!r} has tables but no Alembic version: it is not a "
            "Libervia database (or was made by a version older than 0.10); it was left untouched."
        )
    if revision is False:
        path = sqlite_path(url) if engine.dialect.name == "sqlite" else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        log.info("creating a new database at revision %s", head)
        await run_upgrade(engine, "head", script_location)
        return DbStatus(DbState.NEW, None, head)
    assert isinstance(revision, str)
    if revision == head:
        return DbStatus(DbState.UP_TO_DATE, revision, head)
    try:
        script.get_revision(revision)
    except CommandError:
        raise DatabaseTooNew(
            f"the database is at revision {revision!r}, which this version of Libervia does not "
            f"know (its newest is {head!r}): it was made by a newer version. Upgrade Libervia, "
            "or restore a backup made before the upgrade."
        ) from None
    backup = None
    if engine.dialect.name == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            try:
                backup = await asyncio.to_thread(backup_sqlite, path, revision)
            except (OSError, sqlite3.Error) as e:
                raise DatabaseError(
                    f"cannot back up {path} before upgrading it ({e}); it was not upgraded. "
                    "Free some disk space or check the directory's permissions."
                ) from e
            log.info("database backed up to %s before upgrading", backup)
    log.info("upgrading the database from revision %s to %s", revision, head)
    try:
        await run_upgrade(engine, "head", script_location)
    except Exception as e:
        raise MigrationFailed(
            f"upgrading the database from {revision} to {head} failed ({e}); it was rolled back "
            f"and the database is unchanged"
            + (f" (a backup is also at {backup})" if backup else "")
        ) from e
    return DbStatus(DbState.BEHIND, revision, head, backup)
