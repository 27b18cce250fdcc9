"""XEP-0261 Jingle IBB transport on a fake stream: negotiation, the initiator's open,
data both ways, fallback from a failing transport."""

from __future__ import annotations

import asyncio
import re
from base64 import b64encode
from pathlib import Path

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.plugins.plugin_xep_0166 import Role, Senders
from tests.conftest import aio
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    NS_APP,
    NS_JINGLE,
    NS_TR,
    App,
    Sent,
    Transport,
    jingle_host,
    jingle_iq,
    no_text,
    result_to,
    settle,
)

IBB = "http://jabber.org/protocol/ibb"
JIBB = "urn:xmpp:jingle:transports:ibb:1"


def initiate(senders: str, block_size: int = 4096) -> str:
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' initiator='{BOB}' sid='s1'>"
        f"<content creator='initiator' name='c' senders='{senders}'>"
        f"<description xmlns='{NS_APP}'/>"
        f"<transport xmlns='{JIBB}' block-size='{block_size}' sid='ibb1'/></content></jingle>"
    )


def ibb(inner: str, stanza_id: str = "b1") -> str:
    return f"<iq type='set' id='{stanza_id}' from='{BOB}' to='{ALICE}'>{inner}</iq>"


async def setup(tmp_path: Path):
    host, client, stream, reactor = await jingle_host(tmp_path)
    jingle = host.plugins["XEP-0166"]
    app = App()
    jingle.register_application(app)
    return host, client, stream, jingle, app, Sent(stream)


@aio
async def test_responder_receives_over_ibb(tmp_path: Path) -> None:
    """As responder we lower an excessive block size to 8192 in session-accept, accept the
    initiator's open with that size, and the received bytes reach the content's sink."""
    host, client, stream, jingle, app, sent = await setup(tmp_path)
    try:
        stream.receive(initiate("initiator", 65535))
        assert await sent.all() == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            f"action='session-accept' responder='{ALICE}' sid='s1'>"
            "<content creator='initiator' name='c' senders='initiator'>"
            f"<description xmlns='{NS_APP}'/><transport xmlns='{JIBB}' block-size='8192' "
            "sid='ibb1'/></content></jingle></iq>",
        ]
        sent.ack(1)
        await settle()
        # the initiator opens with more than negotiated: refused, then with the right size
        stream.receive(ibb(f"<open xmlns='{IBB}' block-size='65535' sid='ibb1'/>"))
        assert "<resource-constraint" in (await sent.all())[0]
        stream.receive(ibb(f"<open xmlns='{IBB}' block-size='8192' sid='ibb1'/>"))
        stream.receive(
            ibb(f"<data xmlns='{IBB}' seq='0' sid='ibb1'>{b64encode(b'payload').decode()}</data>")
        )
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='ibb1'/>"))
        assert await sent.all() == [result_to()] * 3
        sink = app.sessions[0].content(Role.INITIATOR, "c").sink
        assert bytes(sink.data) == b"payload" and sink.closed == (None,)
    finally:
        await host.stop()


@aio
async def test_responder_sends_after_initiator_open(tmp_path: Path) -> None:
    """A request (senders=responder): the initiator opens, we send the data and close."""
    host, client, stream, jingle, app, sent = await setup(tmp_path)
    try:
        stream.receive(initiate("responder"))
        out = await sent.all()
        assert "block-size='4096' sid='ibb1'" in out[1]
        sent.ack(1)
        await settle()
        stream.receive(ibb(f"<open xmlns='{IBB}' block-size='4096' sid='ibb1'/>"))
        out = await sent.all()
        assert out == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><data xmlns='{IBB}' seq='0' sid='ibb1'>"
            f"{b64encode(b'data').decode()}</data></iq>",
        ]
        sent.ack(1)
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><close xmlns='{IBB}' sid='ibb1'/></iq>"
        ]
        sent.ack()
        await settle()
        source = app.sessions[0].content(Role.INITIATOR, "c").source
        assert source.closed == (None,)
    finally:
        await host.stop()


@aio
async def test_initiator_offers_ibb_opens_with_negotiated_size_and_sends(tmp_path: Path) -> None:
    """As initiator we offer block-size 4096; the responder lowers it to 2; we open with 2
    and send the source in 2-byte blocks, then close."""
    host, client, stream, jingle, app, sent = await setup(tmp_path)
    try:
        session = jingle.create_session(client, JID(BOB), "o1")
        jingle.add_content(
            session, app, domish.Element((NS_APP, "description")), senders=Senders.INITIATOR
        )
        task = asyncio.ensure_future(jingle.initiate(client, session))
        out = await sent.one()
        sid = re.search(f"<transport xmlns='{JIBB}' block-size='4096' sid='([^']+)'/>", out)[1]
        sent.ack()
        await task
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-accept' sid='o1'>"
                "<content creator='initiator' name='0' senders='initiator'>"
                f"<description xmlns='{NS_APP}'/><transport xmlns='{JIBB}' block-size='2' "
                f"sid='{sid}'/></content></jingle>"
            )
        )
        assert await sent.all() == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><open xmlns='{IBB}' block-size='2' "
            f"sid='{sid}' stanza='iq'/></iq>",
        ]
        sent.ack(1)
        for seq, chunk in enumerate((b"da", b"ta")):
            assert await sent.all() == [
                f"<iq type='set' to='{BOB}' id='ID'><data xmlns='{IBB}' seq='{seq}' "
                f"sid='{sid}'>{b64encode(chunk).decode()}</data></iq>"
            ]
            sent.ack()
        assert "<close xmlns" in (await sent.one())
    finally:
        await host.stop()


@aio
async def test_responder_may_not_raise_block_size(tmp_path: Path) -> None:
    """A session-accept with a larger block size than offered is a bad request."""
    host, client, stream, jingle, app, sent = await setup(tmp_path)
    try:
        session = jingle.create_session(client, JID(BOB), "o1")
        jingle.add_content(session, app, domish.Element((NS_APP, "description")))
        task = asyncio.ensure_future(jingle.initiate(client, session))
        out = await sent.one()
        sid = re.search("sid='([0-9a-f]{32})'", out)[1]
        sent.ack()
        await task
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-accept' sid='o1'>"
                f"<content creator='initiator' name='0'><description xmlns='{NS_APP}'/>"
                f"<transport xmlns='{JIBB}' block-size='9000' sid='{sid}'/></content></jingle>"
            )
        )
        assert "<bad-request" in no_text((await sent.all())[0])
    finally:
        await host.stop()


@aio
async def test_fallback_to_ibb(tmp_path: Path) -> None:
    """A better transport fails to connect: transport-replace offers IBB (lowest priority),
    and after transport-accept the initiator opens the bytestream."""
    host, client, stream, jingle, app, sent = await setup(tmp_path)
    broken = Transport(NS_TR, priority=100)
    broken.fail = True
    jingle.register_transport(broken)
    try:
        session = jingle.create_session(client, JID(BOB), "o1")
        jingle.add_content(
            session, app, domish.Element((NS_APP, "description")), senders=Senders.INITIATOR
        )
        task = asyncio.ensure_future(jingle.initiate(client, session))
        assert f"<transport xmlns='{NS_TR}'/>" in await sent.one()
        sent.ack()
        await task
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-accept' sid='o1'>"
                f"<content creator='initiator' name='0'><description xmlns='{NS_APP}'/>"
                f"<transport xmlns='{NS_TR}'/></content></jingle>"
            )
        )
        out = await sent.all()
        sid = re.search("sid='([0-9a-f]{32})'", out[1])[1]
        assert out[1] == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='transport-replace' sid='o1'><content creator='initiator' name='0'>"
            f"<transport xmlns='{JIBB}' block-size='4096' sid='{sid}'/></content></jingle></iq>"
        )
        sent.ack(1)
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='transport-accept' sid='o1'>"
                f"<content creator='initiator' name='0'><transport xmlns='{JIBB}' "
                f"block-size='4096' sid='{sid}'/></content></jingle>"
            )
        )
        assert await sent.all() == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><open xmlns='{IBB}' block-size='4096' "
            f"sid='{sid}' stanza='iq'/></iq>",
        ]
    finally:
        await host.stop()
