"""Ping (XEP-0199), software version (XEP-0092) and unhandled requests, on a fake stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import XMPPError
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

BOB = "bob@localhost/phone"


async def turn() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@aio
async def test_answers_ping_version_and_refuses_unknown_requests(tmp_path: Path) -> None:
    host = await started_host(tmp_path)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        stream.sent()
        stream.receive("<iq type='get' id='p1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        stream.receive(
            "<iq type='get' id='v1' from='alice@localhost/pc'>"
            "<query xmlns='jabber:iq:version'/></iq>"
        )
        stream.receive(
            "<iq type='set' id='u1' from='alice@localhost/pc'><unknown xmlns='urn:x:nothing'/></iq>"
        )
        stream.receive("<iq type='result' id='stray' from='localhost'/>")  # no answer to results
        await turn()
        sent = stream.sent_xml()
        assert sent[0] == "<iq to='localhost' id='p1' type='result'/>"
        assert sent[1] == (
            "<iq to='alice@localhost/pc' id='v1' type='result'><query xmlns='jabber:iq:version'>"
            f"<name>Libervia</name><version>{host.version}</version></query></iq>"
        )
        assert "id='u1' type='error'" in sent[2] and "service-unavailable" in sent[2]
        assert len(sent) == 3
    finally:
        await host.stop()


@aio
async def test_ping_and_version_requests(tmp_path: Path) -> None:
    reactor = FakeReactor()
    host = await started_host(tmp_path, reactor)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        stream.sent()
        pending = asyncio.ensure_future(host.plugins["XEP-0199"].ping(client))
        await turn()
        (request,) = stream.sent()
        assert request["to"] == "localhost" and request.firstChildElement().name == "ping"
        reactor.advance(0.25)
        stream.receive(f"<iq type='result' id='{request['id']}' from='localhost'/>")
        assert await pending == pytest.approx(0.25)

        pending = asyncio.ensure_future(
            host.plugins["XEP-0092"].get_version(client, JID("localhost"))
        )
        await turn()
        (request,) = stream.sent()
        stream.receive(
            f"<iq type='result' id='{request['id']}' from='localhost'>"
            "<query xmlns='jabber:iq:version'><name>Prosody</name><version>0.12.3</version>"
            "</query></iq>"
        )
        assert await pending == ("Prosody", "0.12.3", "")

        pending = asyncio.ensure_future(host.plugins["XEP-0199"].ping(client, JID("x@nowhere")))
        await turn()
        (request,) = stream.sent()
        stream.receive(
            f"<iq type='error' id='{request['id']}' from='x@nowhere'><error type='cancel'>"
            "<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        with pytest.raises(XMPPError, match="remote-server-not-found"):
            await pending
    finally:
        await host.stop()
