"""Helpers of the Jingle tests: a logged-in profile, a test application and transports,
and literal XML with our random stanza ids replaced by ``ID``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from twisted.words.xish import domish

from libervia.backend.plugins.plugin_xep_0166 import (
    BaseApplicationHandler,
    BaseTransportHandler,
    Content,
    Reason,
    Session,
    TransportFailed,
)
from libervia.backend.plugins.plugin_xep_0166.stream import MemorySink, MemorySource
from tests.unit.core.fakes import FakeReactor, FakeStream, logged_in, started_host

ALICE = "alice@localhost/pc"
BOB = "bob@localhost/phone"
CAROL = "carol@localhost/evil"
NS_JINGLE = "urn:xmpp:jingle:1"
NS_ERRORS = "urn:xmpp:jingle:errors:1"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_APP = "urn:test:app"
NS_TR = "urn:test:transport"
NS_TR2 = "urn:test:transport2"

_ID = re.compile(r" id='[^']*'")


async def settle(rounds: int = 50) -> None:
    """Let background tasks run (no real time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def normalised(xml: str) -> str:
    return _ID.sub(" id='ID'", xml)


def no_text(xml: str) -> str:
    """Without the human-readable ``<text/>`` of errors."""
    return re.sub(r"<text [^>]*>[^<]*</text>", "", xml)


def iq_id(xml: str) -> str:
    return xml.split(" id='")[1].split("'")[0]


class Sent:
    """Reads what a stream sent: literal XML, our ids replaced by ``ID``."""

    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream
        self.raw: list[str] = []

    async def all(self) -> list[str]:
        await settle()
        # requests to the server (keepalive pings, proxy discovery...) are not ours to check
        self.raw = [x for x in self.stream.sent_xml() if " to='localhost'" not in x]
        return [normalised(x) for x in self.raw]

    async def one(self) -> str:
        sent = await self.all()
        assert len(sent) == 1, sent
        return sent[0]

    def ack(self, index: int = 0, sender: str = BOB) -> None:
        """Acknowledge the index-th stanza read last (an empty result from ``sender``)."""
        self.stream.receive(
            f"<iq type='result' id='{iq_id(self.raw[index])}' from='{sender}' to='{ALICE}'/>"
        )


def jingle_iq(inner: str, sender: str = BOB, stanza_id: str = "j1") -> str:
    return f"<iq type='set' id='{stanza_id}' from='{sender}' to='{ALICE}'>{inner}</iq>"


def session_terminate(sid: str, reason: str = "success", sender: str = BOB) -> str:
    """The peer's session-terminate of session ``sid`` (a literal iq)."""
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='{sid}'>"
        f"<reason><{reason}/></reason></jingle>",
        sender,
        stanza_id="t1",
    )


def result_to(sender: str = BOB) -> str:
    """Our ack of a request (ids are normalised to ``ID``)."""
    return f"<iq to='{sender}' from='{ALICE}' id='ID' type='result'/>"


CODES = {
    "item-not-found": "404",
    "unexpected-request": "400",
    "bad-request": "400",
    "conflict": "409",
    "feature-not-implemented": "501",
    "not-acceptable": "406",
    "resource-constraint": "500",
}


def error_to(condition: str, jingle: str | None, type_: str, sender: str = BOB) -> str:
    """Our error answer to a request, with the Jingle condition when given."""
    app = f"<{jingle} xmlns='{NS_ERRORS}'/>" if jingle else ""
    return (
        f"<iq to='{sender}' from='{ALICE}' id='ID' type='error'>"
        f"<error type='{type_}' code='{CODES[condition]}'>"
        f"<{condition} xmlns='{STANZAS}'/>{app}</error></iq>"
    )


class App(BaseApplicationHandler):
    """A test application recording what the core calls."""

    namespace = NS_APP

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.auto_accept = True
        self.accept_contents = True
        self.sessions: list[Session] = []

    def parse_description(self, client, session, content, description) -> None:  # type: ignore[no-untyped-def]
        if description.getAttribute("bad"):
            from libervia.backend.plugins.plugin_xep_0166.errors import bad_request

            raise bad_request("bad description")

    def _endpoints(self, session: Session, content: Content) -> None:
        if content.we_send(session):
            content.source = MemorySource(b"data")
        if content.peer_sends(session):
            content.sink = MemorySink()

    async def on_session_initiate(self, client, session, contents) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("initiate", session.sid, [c.name for c in contents]))
        self.sessions.append(session)
        if self.auto_accept:
            for content in contents:
                self._endpoints(session, content)
            await self.jingle.accept(client, session)
        else:
            await self.jingle.terminate(client, session, Reason.DECLINE)

    async def on_accepted(self, client, session, content) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("accepted", content.name))
        self._endpoints(session, content)

    async def on_content_add(self, client, session, content) -> bool:  # type: ignore[no-untyped-def]
        self.events.append(("content-add", content.name))
        if self.accept_contents:
            self._endpoints(session, content)
        return self.accept_contents

    def session_info_supported(self, payload: domish.Element) -> bool:
        return payload.uri == NS_APP and payload.name == "ringing"

    async def on_session_info(self, client, session, payload) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("info", payload.name))

    async def on_description_info(self, client, session, content, description) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("description-info", content.name, description.getAttribute("v")))

    def on_content_removed(self, client, session, content, reason) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("removed", content.name, reason.condition if reason else None))

    def on_session_ended(self, client, session, reason) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("ended", session.sid, reason.condition.value))


class Transport(BaseTransportHandler):
    """A test transport: an empty ``<transport/>``; ``fail`` makes ``start`` fail."""

    namespace = NS_TR
    priority = 10

    def __init__(self, namespace: str = NS_TR, priority: int = 10) -> None:
        self.namespace = namespace  # type: ignore[misc]
        self.priority = priority  # type: ignore[misc]
        self.fail = False
        self.usable = True
        self.events: list[tuple[Any, ...]] = []

    def is_usable(self, client, content) -> bool:  # type: ignore[no-untyped-def]
        return self.usable

    def _element(self) -> domish.Element:
        return domish.Element((self.namespace, "transport"))

    async def offer(self, client, session, content) -> domish.Element:  # type: ignore[no-untyped-def]
        return self._element()

    async def accept(self, client, session, content) -> domish.Element:  # type: ignore[no-untyped-def]
        return self._element()

    async def start(self, client, session, content) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("start", content.name))
        if self.fail:
            raise TransportFailed("cannot connect")

    async def on_transport_info(self, client, session, content, element) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("info", content.name, element.getAttribute("v")))

    def stop(self, client, session, content) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("stop", content.name))


async def jingle_host(
    tmp_path: Path,
    profile: str = "alice",
    jid: str = ALICE,
    transports: tuple[str, ...] = ("urn:xmpp:jingle:transports:ibb:1",),
) -> Any:
    """A started host with a logged-in profile (the initial presence read); only the
    Jingle ``transports`` given stay registered (the tests choose which compete)."""
    reactor = FakeReactor()
    host = await started_host(tmp_path, reactor)
    jingle = host.plugins["XEP-0166"]
    for namespace in list(jingle.transports):
        if namespace not in transports:
            del jingle.transports[namespace]
    client, stream = await logged_in(host, profile, jid)
    await settle()
    stream.sent()  # the initial presence, other plugins' discovery
    return host, client, stream, reactor


JIBB = "urn:xmpp:jingle:transports:ibb:1"


async def ibb_offer_accepted(
    tmp_path: Path, content: bytes, file_extra: str = ""
) -> tuple[Any, Any, Any, Sent, str, str, list[str]]:
    """We (alice) offer ``content`` to bob over IBB; the literal peer accepts with a block
    size of 4 and ``file_extra`` added to the file's description (e.g. a ``<range/>``).

    Returns (host, stream, reactor, sent, Jingle sid, IBB sid, what we sent after the
    accept).
    """
    from twisted.words.protocols.jabber.jid import JID

    from tests.conftest import turns

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
    description = description.replace("</file>", f"{file_extra}</file>")
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
    return host, stream, reactor, sent, sid, ibb_sid, await sent.all()
