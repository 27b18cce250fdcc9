"""Faults: the daemon killed (SIGKILL) halfway through the upgrade of a database with data.

The database is made at the current head with data in it (20,000 messages and more), then the
daemon is started with the migration scripts plus one test revision that recreates
``history`` (SQLite batch "move and copy", the heaviest kind of migration) and then pauses,
so that the kill lands inside the upgrade's transaction, after its writes. The test revision
and the switch of the scripts' directory exist only in this test (a wrapper sets
``schema.MIGRATION_DIR`` before the daemon's modules load): production code is unchanged.

After the kill: the file passes ``PRAGMA integrity_check`` and is still at the old revision
with every row (the upgrade is one transaction: it never committed), and the backup made
before the upgrade is beside it with every row. The next start upgrades it completely and
serves every message.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.memory import schema
from libervia.backend.memory.sqla import HistoryMessage, Storage
from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon
from tests.integration.test_migrations import extra_revision
from tests.reliability.conftest import integrity, kill_daemon, until

pytestmark = pytest.mark.timeout(120)

MESSAGES = 20_000
MARKER_ENV = "LIBERVIA_TEST_MIGRATION_MARKER"
WRAPPER = textwrap.dedent(
    """\
    import sys
    from pathlib import Path
    from libervia.backend.memory import schema
    schema.MIGRATION_DIR = Path(sys.argv[1])  # before the storage module binds it
    from libervia.backend.__main__ import main
    sys.exit(main(sys.argv[2:]))
    """
)
SLOW_REVISION = """\
with op.batch_alter_table("history") as batch:
    batch.add_column(sa.Column("test_column", sa.Text(), nullable=True))
    # SQLite cannot ALTER a column: this makes the batch recreate (copy) the table
    batch.alter_column("test_column", existing_type=sa.Text(), server_default="x")
import os, pathlib, time
marker = os.environ.get("LIBERVIA_TEST_MIGRATION_MARKER")
if marker:
    # halfway: the table is copied inside the transaction; wait here to be killed
    pathlib.Path(marker).write_text("halfway")
    time.sleep(60)
"""


class PatchedDaemon(Daemon):
    """The daemon run with another migration scripts' directory (and a test environment)."""

    def __init__(self, directory: Path, bus_address: str, scripts: Path) -> None:
        super().__init__(directory, bus_address)
        self.scripts = scripts
        self.env: dict[str, str] = {}

    def start(self) -> float:
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.bus_address, **self.env}
        env.pop("LIBERVIA_CONFIG", None)
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WRAPPER, str(self.scripts), "-c", str(self.config), "fg"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        return started


def rows_and_revision(path: Path) -> tuple[int, int, str]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        history = conn.execute("SELECT count(*) FROM history").fetchone()[0]
        bodies = conn.execute("SELECT count(*) FROM message").fetchone()[0]
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        return history, bodies, revision
    finally:
        conn.close()


async def make_database(path: Path) -> None:
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    await storage.initialise()
    await storage.create_profile("alice")
    await storage.set_private_value("ns", "key", {"a": [1, 2]}, profile="alice")
    for start in range(0, MESSAGES, 5000):
        await storage.add_to_history(
            [
                HistoryMessage(
                    source=JID("bob@example.org/pc"),
                    dest=JID("alice@example.org"),
                    timestamp=1_700_000_000.0 + i,
                    message={"": f"message {i}"},
                    stanza_id=f"sid-{i}",
                )
                for i in range(start, start + 5000)
            ],
            "alice",
        )
    await storage.close()


@aio
async def test_migration_killed_halfway(bus: DBusDaemon, tmp_path: Path) -> None:
    directory = tmp_path / "daemon"
    local = directory / "local"
    local.mkdir(parents=True)
    database = local / "libervia.db"
    await make_database(database)
    before = rows_and_revision(database)
    assert before[:2] == (MESSAGES, MESSAGES)
    old_revision = before[2]
    scripts = extra_revision(tmp_path, SLOW_REVISION)

    daemon = PatchedDaemon(directory, bus.address, scripts)
    marker = tmp_path / "halfway"
    daemon.env[MARKER_ENV] = str(marker)
    daemon.start()
    try:
        await until(marker.exists, 60, f"the upgrade halfway: {daemon.logs()}")
        assert daemon.process is not None and daemon.process.poll() is None
        kill_daemon(daemon)
        assert "database backed up to" in daemon.logs()

        # the interrupted transaction never committed: the old database, whole
        assert integrity(database) == "ok"
        assert rows_and_revision(database) == (MESSAGES, MESSAGES, old_revision)
        (backup,) = local.glob(f"libervia.backup-*-rev{old_revision}.db")
        assert rows_and_revision(backup) == (MESSAGES, MESSAGES, old_revision)
        assert integrity(backup) == "ok"

        # the next start upgrades it for good, every row kept
        daemon.env.clear()
        started = time.monotonic()
        daemon.start()
        bridge = await daemon.bridge(timeout=60)
        upgraded = time.monotonic() - started
        rows = await bridge.history_get("", "", -1, True, {}, "alice")
        await bridge.close()
        assert sorted(r[4][""] for r in rows) == sorted(f"message {i}" for i in range(MESSAGES))
        assert daemon.stop() == 0, daemon.logs()
        assert rows_and_revision(database) == (MESSAGES, MESSAGES, "9999")
        assert integrity(database) == "ok"
        assert schema.quick_head(scripts) == "9999"
        print(
            f"\nupgrade of a {MESSAGES}-message database killed halfway: old revision and "
            f"every row intact, backup beside it; next start upgraded and ready in "
            f"{upgraded:.2f} s"
        )
    finally:
        if daemon.process is not None:
            daemon.stop()
