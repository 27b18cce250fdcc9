"""The pubsub cache plugin on SQLite and on a real PostgreSQL: synchronisation, reads with
paging, notifications and search (FTS5/JSON1 vs full-text/JSONB), with the fake pubsub service
of the unit tests answering on a fake stream."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.config import Config
from libervia.backend.core.main import LiberviaBackend, NullBridge
from libervia.backend.plugins.plugin_xep_0059 import RSMRequest
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in
from tests.unit.core.test_pubsub_cache import (
    ALICE,
    NS_NOTE,
    FakePubsub,
    event,
    ids,
    parse_note,
    run,
    settle,
)

SERVICE = JID("pubsub.localhost")


@aio
async def test_cache_on_both_engines(empty_db_url: str, tmp_path: Path) -> None:
    conf = tmp_path / "libervia.conf"
    conf.write_text(f"[DEFAULT]\nlocal_dir = {tmp_path}\ndb_url = {empty_db_url}\n")
    host = LiberviaBackend(Config.load(conf), reactor=FakeReactor())
    bridge = NullBridge()
    bridge.keep = True
    host.bridge = bridge
    await host.start()
    try:
        client, stream = await logged_in(host, "alice", ALICE)
        stream.sent()
        cache = host.plugins["PUBSUB_CACHE"]
        cache.register_analyser(
            {"name": "notes", "type": "note", "namespace": NS_NOTE, "to_sync": True,
             "parser": parse_note}
        )  # fmt: skip
        service = FakePubsub(stream)
        for n in range(60):
            service.publish("notes", f"n{n:02}", f"note number {n}" + (" zebra" if n == 42 else ""))
        await run(service, cache.synchronise(client, SERVICE, "notes"))
        ps = host.plugins["XEP-0060"]
        for rsm in (RSMRequest(10), RSMRequest(10, after="n25"), RSMRequest(5, before="")):
            local = await ps.get_items(client, SERVICE, "notes", rsm=rsm)
            remote = await run(service, ps.get_items(client, SERVICE, "notes", rsm=rsm,
                                                     use_cache=False))  # fmt: skip
            assert local.cached and ids(local) == ids(remote) and local.rsm == remote.rsm
        event(service, "<items node='notes'><retract id='n00'/></items>")
        event(service, f"<items node='notes'><item id='n60'><note xmlns='{NS_NOTE}'>last zebra"
                       "</note></item></items>")  # fmt: skip
        await settle(service, cache, client)
        page = await ps.get_items(client, SERVICE, "notes", 2)
        assert ids(page) == ["n59", "n60"] and page.rsm.count == 60
        search = host.bridge.methods["ps_cache_search"]
        zebras = json.loads(await search(json.dumps({"fts": "zebra", "order-by": [
            {"order": "item_id", "direction": "asc"}]})))  # fmt: skip
        assert [z["item_id"] for z in zebras] == ["n42", "n60"]
        long_ones = json.loads(await search(json.dumps({
            "parsed": [{"path": "length", "op": "gt", "value": 13}],
            "order-by": [{"path": "length", "direction": "desc"},
                         {"order": "item_id", "direction": "asc"}],
            "limit": 3})))  # fmt: skip
        assert [(z["item_id"], z["parsed"]["length"]) for z in long_ones] == [
            ("n42", 20),
            ("n10", 14),
            ("n11", 14),
        ]
    finally:
        await host.stop()
