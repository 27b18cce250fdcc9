"""The SQLite fast path of add_to_history (DBAPI cursor) stores exactly what the Core path
stores: same rows in every history table, same duplicates skipped."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.memory.sqla import HistoryMessage, Storage
from libervia.backend.memory.sqla_mapping import MessageType
from libervia.backend.memory.storage.history import HistoryStore
from tests.conftest import aio

TABLES = {
    "history": "uid, stanza_id, origin_id, update_uid, profile_id, source, source_res, dest, "
    "dest_res, timestamp, received_timestamp, type, extra",
    "message": "history_uid, message, language",
    "subject": "history_uid, subject, language",
    "thread": "history_uid, thread_id, parent_id",
}


def batch() -> list[HistoryMessage]:
    a, b = JID("alice@example.org/pc"), JID("bob@example.org")
    return [
        HistoryMessage(
            a,
            b,
            1.5,
            MessageType.CHAT,
            {"": "hello", "fr": "salut ✓"},
            {"en": "subject"},
            uid="u1",
            origin_id="o1",
            thread="t1",
            thread_parent="p0",
            extra={"k": [1, "é", None], "n": 2.5},
            received_timestamp=2.0,
        ),
        HistoryMessage(b, a, 3.0, MessageType.HEADLINE, {"": "x"}, uid="u2", stanza_id="s2"),
        HistoryMessage(a, b, 4.0, MessageType.NORMAL, {}, {"": "only a subject"}, uid="u3"),
        # duplicates: same uid, and same stanza id between the same entities
        HistoryMessage(a, b, 1.5, MessageType.CHAT, {"": "again"}, uid="u1"),
        HistoryMessage(b, a, 9.0, MessageType.HEADLINE, {"": "dup"}, uid="u4", stanza_id="s2"),
    ]


async def dump(storage: Storage) -> dict[str, list[tuple]]:
    async with storage.db.engine.connect() as conn:
        return {
            table: sorted(
                tuple(r) for r in await conn.execute(sa.text(f"SELECT {cols} FROM {table}"))
            )
            for table, cols in TABLES.items()
        }


@aio
async def test_fast_path_stores_what_core_stores(tmp_path: Path, monkeypatch) -> None:
    results = {}
    for path in ("sqlite", "core"):
        storage = Storage(f"sqlite+aiosqlite:///{tmp_path / path}.db")
        await storage.initialise()
        await storage.create_profile("alice")
        if path == "core":
            monkeypatch.setattr(
                HistoryStore,
                "_insert_sqlite",
                lambda self, conn, batch, rows: HistoryStore._insert_core(self, conn, batch, rows),
            )
        first = await storage.add_to_history(batch(), "alice")
        again = await storage.add_to_history(batch(), "alice")
        results[path] = (first, again, await dump(storage))
        await storage.close()
    assert results["sqlite"] == results["core"]
    first, again, tables = results["sqlite"]
    assert first == ["u1", "u2", "u3"] and again == []
    assert len(tables["message"]) == 3 and len(tables["thread"]) == 1
