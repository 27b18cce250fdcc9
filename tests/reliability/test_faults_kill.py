"""Faults: the daemon killed (SIGKILL) while 5,000 messages flow in.

A raw XMPP client sends 5,000 numbered messages as fast as it can to a profile of the daemon;
the daemon is killed once part of them is stored; the rest is archived by the server
meanwhile. After a restart, the archive catch-up (XEP-0313) fills the gap: every message is
in the history exactly once (bodies, uids and archive ids checked through ``history_get``)
and the database passes ``PRAGMA integrity_check`` right after the kill and at the end.

The server keeps its archive in memory here: with Prosody's default file storage each archive
page query re-reads the whole archive (~0.5 s per page of 100 at 5,000 messages, 12 to 90 s
for the catch-up depending on the machine's load), which measured Prosody, not the daemon.
The pages are of 50 messages (Prosody's maximum), 80 queries for the whole archive.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, make_account, unique
from tests.e2e.prosody import Prosody
from tests.e2e.test_carbons_mam import RawClient
from tests.reliability.conftest import count_rows, db_file, integrity, kill_daemon, until

pytestmark = pytest.mark.timeout(150)

TOTAL = 5000


@pytest.fixture
def server() -> Iterator[Prosody]:
    # (the memory store keeps 1,000 items by default and drops the oldest beyond that)
    with Prosody(
        'storage = { archive = "memory" }\nstorage_archive_item_limit = 100000'
    ) as prosody:
        yield prosody


@aio
async def test_daemon_killed_while_messages_flow_in(
    server: Prosody, bus: DBusDaemon, tmp_path: Path
) -> None:
    prosody = server
    (tmp_path / "daemon").mkdir()
    daemon = Daemon(tmp_path / "daemon", bus.address)
    daemon.start()
    raw: RawClient | None = None
    try:
        bridge = await daemon.bridge()
        bob = unique("bob")
        alice = unique("alice")
        bob_jid = await make_account(bridge, prosody, bob, bob)
        alice_jid = prosody.adduser(alice, "xmpp-pass")
        await bridge.connect(bob, "", {})
        await bridge.close()
        raw = await RawClient.login(prosody, alice_jid, "xmpp-pass", "flood")
        database = db_file(daemon)

        started = time.monotonic()
        for i in range(TOTAL):
            raw.message(bob_jid, f"m{i:05d}")
            if i % 250 == 0:
                await asyncio.sleep(0)
        # kill once a good part is stored, while the rest still flows
        await until(lambda: count_rows(database) >= 1000, 60, "1000 messages stored")
        kill_daemon(daemon)
        killed_at = count_rows(database)
        killed = time.monotonic() - started
        assert integrity(database) == "ok"

        daemon.start()
        restarted = time.monotonic()
        bridge = await daemon.bridge()
        await bridge.connect(bob, "", {})
        await until(lambda: count_rows(database) >= TOTAL, 90, f"{TOTAL} messages stored")
        complete = time.monotonic() - restarted
        await asyncio.sleep(1)  # anything duplicated would be in by now
        rows = await bridge.history_get("", "", -1, True, {}, bob)
        await bridge.close()
        bodies = [r[4].get("") for r in rows]
        assert len(rows) == TOTAL, (len(rows), daemon.logs())
        assert sorted(bodies) == [f"m{i:05d}" for i in range(TOTAL)]
        assert len({r[0] for r in rows}) == TOTAL  # uids
        stanza_ids = [json.loads(r[7]).get("stanza_id") for r in rows]
        assert None not in stanza_ids and len(set(stanza_ids)) == TOTAL
        assert daemon.stop() == 0, daemon.logs()
        assert integrity(database) == "ok"
        print(
            f"\n{TOTAL} messages; daemon killed after {killed:.2f} s with {killed_at} stored; "
            f"all {TOTAL} in history {complete:.2f} s after the restart, once each"
        )
    finally:
        if raw is not None:
            raw.close()
        if daemon.process is not None:
            daemon.stop()
