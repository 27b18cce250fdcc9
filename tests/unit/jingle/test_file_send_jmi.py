"""``file_send`` with Jingle Message Initiation: the file is proposed to the peer's bare JID,
the session goes to the device that proceeds (sid = the proposal id); a rejection fails the
progress. The real XEP-0234, XEP-0353 and IBB plugins on a fake stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID

from libervia.backend.plugins.plugin_xep_0353 import NS_JMI
from tests.conftest import aio
from tests.unit.jingle.helpers import ALICE, jingle_host, settle

BOB_BARE = "bob@localhost"
BOB_PHONE = "bob@localhost/phone"
NS_FT = "urn:xmpp:jingle:apps:file-transfer:5"


async def sent_until(stream, predicate, rounds: int = 100_000) -> list[str]:
    """What was sent, once something matching ``predicate`` was (hashing runs in a thread)."""
    got: list[str] = []
    for _ in range(rounds):
        got += stream.sent_xml()
        if any(predicate(x) for x in got):
            return got
        await asyncio.sleep(0)
    raise AssertionError(f"never sent; got {got}")


def answer(stream, sender: str, name: str, sid: str, inner: str = "") -> None:
    stream.receive(
        f"<message from='{sender}' to='{ALICE}' type='chat'>"
        f"<{name} xmlns='{NS_JMI}' id='{sid}'>{inner}</{name}></message>"
    )


@aio
async def test_proposed_then_sent_to_the_device_that_proceeds(tmp_path: Path) -> None:
    host, client, stream, reactor = await jingle_host(tmp_path)
    ft = host.plugins["XEP-0234"]
    data = tmp_path / "report.txt"
    data.write_bytes(b"quarterly numbers\n" * 100)
    try:
        task = asyncio.ensure_future(
            ft.file_send(client, JID(BOB_BARE), data, None, "Q3", "ibb", jmi=True)
        )
        got = await sent_until(stream, lambda x: "<propose " in x)
        result = await task
        (propose,) = [x for x in got if "<propose " in x]
        sid = result["session_id"]
        assert f"to='{BOB_BARE}'" in propose and f"id='{sid}'" in propose
        assert f"<description xmlns='{NS_FT}'><file>" in propose and "report.txt" in propose
        started = [a for s, a in host.bridge.emitted if s == "progress_started"]
        assert started[-1][0] == result["progress"]
        assert json.loads(started[-1][1])["peer"] == BOB_BARE
        answer(stream, BOB_PHONE, "proceed", sid)
        got = await sent_until(stream, lambda x: "session-initiate" in x)
        (initiate,) = [x for x in got if "session-initiate" in x]
        assert f"to='{BOB_PHONE}'" in initiate and f"sid='{sid}'" in initiate
    finally:
        await host.stop()


@aio
async def test_rejected_proposal_fails_the_progress(tmp_path: Path) -> None:
    host, client, stream, reactor = await jingle_host(tmp_path)
    ft = host.plugins["XEP-0234"]
    data = tmp_path / "report.txt"
    data.write_bytes(b"x" * 10)
    try:
        task = asyncio.ensure_future(
            ft.file_send(client, JID(BOB_BARE), data, None, "", "auto", jmi=True)
        )
        await sent_until(stream, lambda x: "<propose " in x)
        result = await task
        answer(
            stream,
            BOB_PHONE,
            "reject",
            result["session_id"],
            "<reason xmlns='urn:xmpp:jingle:1'><busy/></reason>",
        )
        await settle()
        errors = [a for s, a in host.bridge.emitted if s == "progress_error"]
        assert [e[0] for e in errors] == [result["progress"]]
        assert "did not take the file" in errors[0][1]
        assert not [x for x in stream.sent_xml() if "session-initiate" in x]
    finally:
        await host.stop()
