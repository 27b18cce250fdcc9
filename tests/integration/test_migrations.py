"""Migrations: schema/mapping agreement, both directions, upgrades keeping data, and every state
``Storage.initialise`` must recognise (new, behind, up to date, ahead, corrupted, failing)."""

from __future__ import annotations

import shutil
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import (
    DatabaseCorrupted,
    DatabaseError,
    DatabaseTooNew,
    MigrationFailed,
)
from libervia.backend.memory import schema
from libervia.backend.memory.engine import create_engine
from libervia.backend.memory.sqla import HistoryMessage, Storage
from libervia.backend.memory.sqla_mapping import Base
from libervia.backend.tools.xml import parse
from tests.conftest import aio

FIRST_REVISION = "0001"


async def assert_schema_matches(url: str) -> None:
    """Run ``alembic check`` (through the real env.py): mappings and schema must not differ."""
    engine = create_engine(url)
    try:
        await schema.check(engine)
    finally:
        await engine.dispose()


async def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every mapped table, sorted, for before/after comparisons."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            result = {}
            for table in Base.metadata.sorted_tables:
                # raw values, compared as the driver returns them (no type processing)
                columns = ", ".join(f'"{c.name}"' for c in table.columns)
                rows = (await conn.execute(sa.text(f"SELECT {columns} FROM {table.name}"))).all()
                result[table.name] = sorted(tuple(map(repr, r)) for r in rows)
            return result
    finally:
        await engine.dispose()


async def revision_of(url: str) -> Any:
    engine = create_engine(url)
    try:
        return await schema.read_revision(engine)
    finally:
        await engine.dispose()


async def fill(storage: Storage) -> None:
    """Put data in every table."""
    await storage.create_profile("alice")
    await storage.create_profile("component", component_ep="file_sharing")
    await storage.add_to_history(
        [
            HistoryMessage(
                source=JID("alice@example.org/laptop"),
                dest=JID("bob@example.org"),
                timestamp=1_700_000_000.0 + i,
                message={"": f"hello {i}", "fr": f"salut {i}"},
                subject={"": "greetings"} if i == 0 else {},
                stanza_id=f"sid-{i}",
                origin_id=f"oid-{i}",
                thread="thread-1" if i % 2 else None,
                extra={"n": i},
            )
            for i in range(5)
        ],
        "alice",
    )
    await storage.set_gen_param("General", "lang", "fr")
    await storage.set_ind_param("Connection", "JabberID", "alice@example.org", "alice")
    await storage.set_private_value("ns", "key", {"a": [1, 2]})
    await storage.set_private_value("ns", "key", {"b": True}, profile="alice")
    await storage.set_private_value("ns", "bin", b"\x00\xff", binary=True)
    await storage.set_private_value("ns", "bin", b"\x01", binary=True, profile="alice")
    await storage.set_file("alice", "photo.jpg", size=42, owner=JID("alice@example.org"))
    node = await storage.set_pubsub_node(
        "alice", JID("pubsub.example.org"), "blog", analyser="blog", type_="blog"
    )
    await storage.cache_pubsub_items(
        node, [parse('<item id="1"><p xmlns="urn:x">été</p></item>')], [{"title": "été"}]
    )


@aio
async def test_migrations_match_mappings(empty_db_url: str) -> None:
    """After upgrading to head, the schema is exactly what the mappings describe."""
    storage = Storage(empty_db_url)
    await storage.initialise()
    await storage.close()
    await assert_schema_matches(empty_db_url)


@aio
async def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    """Upgrade to head, downgrade to base (nothing left), and upgrade again."""
    engine = create_engine(empty_db_url)
    try:
        await schema.run_upgrade(engine, "head")
        await schema.run_downgrade(engine, "base")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await schema.run_upgrade(engine, "head")
    finally:
        await engine.dispose()
    await assert_schema_matches(empty_db_url)


@aio
async def test_new_database_created_at_head(empty_db_url: str) -> None:
    """A missing database is created at head; the second start finds it up to date."""
    storage = Storage(empty_db_url)
    status = await storage.initialise()
    assert status.state is schema.DbState.NEW
    await storage.close()
    storage = Storage(empty_db_url)
    status = await storage.initialise()
    assert status.state is schema.DbState.UP_TO_DATE
    assert status.revision == status.head
    await storage.close()


def extra_revision(tmp_path: Path, body: str, revision: str = "9999") -> Path:
    """A copy of the migration scripts with one more revision on top of head."""
    scripts = tmp_path / "migration"
    shutil.copytree(schema.MIGRATION_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = ScriptDirectory.from_config(schema.alembic_config()).get_current_head()
    (scripts / "versions" / f"{revision}_test.py").write_text(
        textwrap.dedent(
            f'''\
            import sqlalchemy as sa
            from alembic import op

            revision = "{revision}"
            down_revision = "{head}"
            branch_labels = None
            depends_on = None


            def upgrade():
            '''
        )
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "\n\ndef downgrade():\n    pass\n"
    )
    return scripts


@aio
async def test_first_revision_data_survives_upgrade(empty_db_url: str, tmp_path: Path) -> None:
    """A database at the first revision, full of data, is upgraded to head with every row.

    The upgrade includes a revision that recreates ``history`` (batch "move and copy" on SQLite),
    a table referenced by foreign keys from the message, subject and thread tables.
    """
    engine = create_engine(empty_db_url)
    await schema.run_upgrade(engine, FIRST_REVISION)
    await engine.dispose()
    storage = Storage(empty_db_url)
    # initialise() would upgrade: fill the database at the first revision instead
    storage.status = schema.DbStatus(schema.DbState.UP_TO_DATE, FIRST_REVISION, FIRST_REVISION)
    await storage.profiles.load()
    await fill(storage)
    await storage.close()
    before = await dump(empty_db_url)
    assert all(before[t] for t in ("history", "message", "thread", "pubsub_items", "files"))

    scripts = extra_revision(
        tmp_path,
        """\
        with op.batch_alter_table("history") as batch:
            batch.add_column(sa.Column("test_column", sa.Text(), nullable=True))
            # SQLite cannot ALTER a column: this makes the batch recreate the table
            batch.alter_column("test_column", existing_type=sa.Text(), server_default="x")
        """,
    )
    storage = Storage(empty_db_url, script_location=scripts)
    status = await storage.initialise()
    assert status.state is schema.DbState.BEHIND
    assert (status.revision, status.head) == (FIRST_REVISION, "9999")
    # the full-text index still works after the upgrade
    found = await storage.history_get("alice", search="salut 3")
    assert [m.stanza_id for m in found] == ["sid-3"]
    await storage.close()
    after = await dump(empty_db_url)
    assert after == before
    if empty_db_url.startswith("sqlite"):
        assert status.backup is not None and status.backup.exists()
        conn = sqlite3.connect(empty_db_url.removeprefix("sqlite+aiosqlite:///"))
        (history_sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'history'"
        ).fetchone()
        conn.close()
        # the default is only there if the table was recreated ("move and copy")
        assert "DEFAULT 'x'" in history_sql
        backup_url = f"sqlite+aiosqlite:///{status.backup}"
        assert await dump(backup_url) == before
        assert await revision_of(backup_url) == FIRST_REVISION


@aio
async def test_failed_upgrade_leaves_database_intact(empty_db_url: str, tmp_path: Path) -> None:
    """A revision failing half-way rolls everything back: same revision, same data."""
    storage = Storage(empty_db_url)
    await storage.initialise()
    await fill(storage)
    await storage.close()
    before = await dump(empty_db_url)
    scripts = extra_revision(
        tmp_path,
        """\
        op.add_column("profiles", sa.Column("half_done", sa.Text(), nullable=True))
        op.execute("DELETE FROM message")
        op.execute("SELECT * FROM this_table_does_not_exist")
        """,
    )
    storage = Storage(empty_db_url, script_location=scripts)
    with pytest.raises(MigrationFailed, match="unchanged"):
        await storage.initialise()
    await storage.close()
    assert await dump(empty_db_url) == before
    assert await revision_of(empty_db_url) == FIRST_REVISION
    await assert_schema_matches(empty_db_url)
    # and the code of this version still opens it normally
    storage = Storage(empty_db_url)
    assert (await storage.initialise()).state is schema.DbState.UP_TO_DATE
    assert storage.get_profiles_list() == ["alice", "component"]
    await storage.close()


@aio
async def test_database_newer_than_code_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    """A database at a revision unknown to this code is refused, naming both revisions."""
    scripts = extra_revision(tmp_path, "pass", revision="f00dcafe")
    storage = Storage(empty_db_url, script_location=scripts)
    await storage.initialise()
    await fill(storage)
    await storage.close()
    before = await dump(empty_db_url)
    storage = Storage(empty_db_url)
    with pytest.raises(DatabaseTooNew) as error:
        await storage.initialise()
    await storage.close()
    assert "f00dcafe" in str(error.value) and FIRST_REVISION in str(error.value)
    assert await dump(empty_db_url) == before


@aio
async def test_foreign_database_is_refused(empty_db_url: str) -> None:
    """Tables without an Alembic version: not ours, refused and left alone."""
    engine = create_engine(empty_db_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE someone_elses (x INTEGER)"))
        await conn.execute(sa.text("INSERT INTO someone_elses VALUES (1)"))
    await engine.dispose()
    storage = Storage(empty_db_url)
    with pytest.raises(DatabaseCorrupted, match="not a Libervia database"):
        await storage.initialise()
    await storage.close()
    engine = create_engine(empty_db_url)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT x FROM someone_elses"))).scalar() == 1
    await engine.dispose()


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database at all\n" * 100,
        b"SQLite format 3\x00" + b"\xff" * 4080,
    ],
    ids=["text-file", "damaged-sqlite"],
)
@aio
async def test_corrupted_sqlite_file_is_left_untouched(tmp_path: Path, content: bytes) -> None:
    """An unreadable file gives a clear error and is not modified (no WAL created either)."""
    path = tmp_path / "libervia.db"
    path.write_bytes(content)
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    with pytest.raises(DatabaseCorrupted, match="left untouched"):
        await storage.initialise()
    await storage.close()
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["libervia.db"]


@aio
async def test_damaged_pages_are_detected(tmp_path: Path) -> None:
    """A real database with overwritten pages is reported as corrupted, not half-opened."""
    path = tmp_path / "libervia.db"
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    await storage.initialise()
    await fill(storage)
    await storage.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for page in range(1, len(data) // page_size):
        start = page * page_size
        data[start + 8 : start + page_size] = b"\xa5" * (page_size - 8)
    path.write_bytes(bytes(data))
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    with pytest.raises(DatabaseCorrupted):
        await storage.initialise()
    await storage.close()
    assert path.read_bytes() == bytes(data)


@aio
async def test_empty_sqlite_file_is_a_new_database(tmp_path: Path) -> None:
    """A zero-length file (e.g. touched by a user) is treated as a new database."""
    path = tmp_path / "libervia.db"
    path.touch()
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    assert (await storage.initialise()).state is schema.DbState.NEW
    await storage.close()


@aio
async def test_missing_directory_is_created(tmp_path: Path) -> None:
    """The SQLite file's directory is created when missing (first start)."""
    path = tmp_path / "a" / "b" / "libervia.db"
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    await storage.initialise()
    await storage.close()
    assert path.exists()


@aio
async def test_unreadable_path_is_a_clear_error(tmp_path: Path) -> None:
    """A directory where the database file should be gives a DatabaseError, not a traceback."""
    path = tmp_path / "libervia.db"
    path.mkdir()
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    with pytest.raises(DatabaseError, match="cannot read the database file"):
        await storage.initialise()
    await storage.close()
    assert path.is_dir() and not any(path.iterdir())


@aio
async def test_failed_backup_means_no_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the backup before an upgrade cannot be written, nothing is upgraded and the error
    says why."""
    path = tmp_path / "libervia.db"
    url = f"sqlite+aiosqlite:///{path}"
    storage = Storage(url)
    await storage.initialise()
    await fill(storage)
    await storage.close()
    before = await dump(url)

    def no_space(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(schema, "backup_sqlite", no_space)
    storage = Storage(url, script_location=extra_revision(tmp_path, "op.drop_table('files')"))
    with pytest.raises(DatabaseError, match="not upgraded"):
        await storage.initialise()
    await storage.close()
    assert await dump(url) == before
    assert await revision_of(url) == FIRST_REVISION
