"""XEP-0234 ranged transfers (§ "Ranged Transfers"): a receiver that already holds the start
of a file accepts our offer with ``<range offset='N'/>``; we send the bytes from N only."""

from __future__ import annotations

import json
from base64 import b64encode
from pathlib import Path

from tests.conftest import aio
from tests.unit.jingle.helpers import BOB, ibb_offer_accepted, session_terminate, settle

IBB = "http://jabber.org/protocol/ibb"


@aio
async def test_range_offset_sends_the_rest_only(tmp_path: Path) -> None:
    """The peer has the first 4 bytes: only "ef" crosses, the progress counts from 4."""
    host, stream, _, sent, sid, ibb_sid, out = await ibb_offer_accepted(
        tmp_path, b"abcdef", "<range offset='4'/>"
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
        stream.receive(session_terminate(sid))
        await settle()
        progress = [a for name, a in host.bridge.emitted if name == "progress_finished"]
        ((_, meta, _),) = progress
        assert json.loads(meta)["size"] == 6
    finally:
        await host.stop()


@aio
async def test_range_beyond_the_end_is_refused(tmp_path: Path) -> None:
    """An offset past the file's size is a bad request: nothing is sent."""
    host, stream, _, sent, sid, ibb_sid, out = await ibb_offer_accepted(
        tmp_path, b"abcdef", "<range offset='7'/>"
    )
    try:
        assert "<bad-request" in out[0] and "type='error'" in out[0]
        assert not any("<open xmlns" in x or "<data xmlns" in x for x in out)
    finally:
        await host.stop()
