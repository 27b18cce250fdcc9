"""XEP-0234 ranged transfers (§ "Ranged Transfers"): a receiver that already holds the start
of a file accepts our offer with ``<range offset='N'/>``; we send the bytes from N only."""

from __future__ import annotations

import asyncio
import json
from base64 import b64encode
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID

from tests.conftest import aio, turns
from tests.unit.jingle.helpers import BOB, NS_JINGLE, Sent, jingle_host, jingle_iq, settle

IBB = "http://jabber.org/protocol/ibb"
JIBB = "urn:xmpp:jingle:transports:ibb:1"


async def offer_accepted_with(tmp_path: Path, range_el: str, content: bytes) -> tuple:
    """We offer ``content`` over IBB; the literal peer accepts with ``range_el`` in its
    file description. Returns (host, stream, sent, Jingle sid, IBB sid, what we sent next)."""
    host, client, stream, reactor = await jingle_host(tmp_path)
    sent = Sent(stream)
    source = tmp_path / "f.bin"
    source.write_bytes(content)
    task = asyncio.ensure_future(
        host.plugins["XEP-0234"].file_send(client, JID(BOB), source, transport="ibb")
    )
    for _ in turns():
        if stream.transport.value():
            break
        await asyncio.sleep(0)
    out = await sent.one()
    sid = out.split(" sid='")[1].split("'")[0]
    ibb_sid = out.split(f"<transport xmlns='{JIBB}' block-size='4096' sid='")[1][:32]
    description = out.split("<description")[1].split("</description>")[0]
    description = description.replace("</file>", f"{range_el}</file>")
    sent.ack()
    await task
    stream.receive(
        jingle_iq(
            f"<jingle xmlns='{NS_JINGLE}' action='session-accept' sid='{sid}'>"
            f"<content creator='initiator' name='0' senders='initiator'><description"
            f"{description}</description><transport xmlns='{JIBB}' block-size='4' "
            f"sid='{ibb_sid}'/></content></jingle>"
        )
    )
    return host, stream, sent, sid, ibb_sid, await sent.all()


@aio
async def test_range_offset_sends_the_rest_only(tmp_path: Path) -> None:
    """The peer has the first 4 bytes: only "ef" crosses, the progress counts from 4."""
    host, stream, sent, sid, ibb_sid, out = await offer_accepted_with(
        tmp_path, "<range offset='4'/>", b"abcdef"
    )
    try:
        assert out[1] == (
            f"<iq type='set' to='{BOB}' id='ID'><open xmlns='{IBB}' block-size='4' "
            f"sid='{ibb_sid}' stanza='iq'/></iq>"
        )
        sent.ack(1)
        data = await sent.one()
        assert f">{b64encode(b'ef').decode()}</data>" in data and "seq='0'" in data
        sent.ack()
        assert "<close xmlns" in await sent.one()
        sent.ack()
        await settle()
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='{sid}'>"
                "<reason><success/></reason></jingle>",
                stanza_id="t1",
            )
        )
        await settle()
        progress = [a for name, a in host.bridge.emitted if name == "progress_finished"]
        ((_, meta, _),) = progress
        assert json.loads(meta)["size"] == 6
    finally:
        await host.stop()


@aio
async def test_range_beyond_the_end_is_refused(tmp_path: Path) -> None:
    """An offset past the file's size is a bad request: nothing is sent."""
    host, stream, sent, sid, ibb_sid, out = await offer_accepted_with(
        tmp_path, "<range offset='7'/>", b"abcdef"
    )
    try:
        assert "<bad-request" in out[0] and "type='error'" in out[0]
        assert not any("<open xmlns" in x or "<data xmlns" in x for x in out)
    finally:
        await host.stop()
