"""XEP-0260 Jingle SOCKS5 transport on a fake stream: literal XML of candidates,
candidate-used / candidate-error, activation, nomination and the fallback; SOCKS5
connections are faked (the real ones are in tests/integration/test_socks5.py)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface.verify import verifyObject

from libervia.backend.plugins import plugin_xep_0260
from libervia.backend.plugins.plugin_xep_0065 import Socks5Error, Socks5Server, Socks5Stream
from libervia.backend.plugins.plugin_xep_0065 import StreamHost as ProxyHost
from libervia.backend.plugins.plugin_xep_0166 import Role, Senders, State
from libervia.backend.plugins.plugin_xep_0166.errors import JingleError
from libervia.backend.plugins.plugin_xep_0166.interfaces import IJingleTransport
from libervia.backend.plugins.plugin_xep_0166.stream import MemorySink
from libervia.backend.plugins.plugin_xep_0260 import (
    NS_S5B,
    Candidate,
    CandidateType,
    candidate_priority,
    nominate,
)
from libervia.backend.tools import xml as xml_tools
from tests.conftest import aio
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    NS_APP,
    NS_JINGLE,
    App,
    Sent,
    iq_id,
    jingle_host,
    jingle_iq,
    normalised,
    result_to,
    settle,
)

PROXY = "proxy.localhost"
NS_IBB = "urn:xmpp:jingle:transports:ibb:1"
DIRECT_PRIO = 126 * 65536 + 65535  # 8323071
PROXY_PRIO = 10 * 65536 + 65535  # 720895
OUR_HOST = ("192.168.1.5", 5086)
PROXY_ADDR = ("127.0.0.1", 7777)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class FakeWriter:
    """What a transport writes on a fake SOCKS5 connection."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.data += data

    async def drain(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


def fake_stream(address: tuple[str, int], incoming: bytes | None = None) -> Socks5Stream:
    """A connection whose reader holds ``incoming`` then EOF (None: nothing yet)."""
    reader = asyncio.StreamReader()
    if incoming is not None:
        reader.feed_data(incoming)
        reader.feed_eof()
    return Socks5Stream(reader, FakeWriter(), address)  # type: ignore[arg-type]


class Network:
    """The fake network of the transport: which candidate answers, with which stream."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, int], Socks5Stream | asyncio.Future[Socks5Stream]] = {}
        self.calls: list[tuple[str, int, str]] = []

    async def connect(self, client: Any, candidate: Candidate, address: str) -> Socks5Stream:
        self.calls.append((candidate.host, candidate.port, address))
        result = self.streams.get(candidate.address)
        if result is None:
            raise Socks5Error(f"cannot connect to {candidate.host}:{candidate.port}")
        if isinstance(result, asyncio.Future):
            return await result
        return result


async def s5b_host(tmp_path: Path, proxy: bool = True):
    """A host whose SOCKS5 server 'listens' on OUR_HOST (no socket) and whose server
    offers a proxy at PROXY_ADDR; candidate ids are c1, c2... and stream sids s5b1..."""
    host, client, stream, reactor = await jingle_host(tmp_path, transports=(NS_S5B, NS_IBB))
    jingle = host.plugins["XEP-0166"]
    s5b = host.plugins["XEP-0260"]
    s5 = host.plugins["XEP-0065"]
    server = Socks5Server()
    server.addresses = [OUR_HOST]

    async def get_server(clock: Any = None) -> Socks5Server:
        return server

    async def get_proxy(client: Any) -> ProxyHost | None:
        return ProxyHost(JID(PROXY), *PROXY_ADDR) if proxy else None

    s5.get_server = get_server
    s5.get_proxy = get_proxy
    network = Network()
    s5b.connect = network.connect
    s5b.stagger = s5b.proxy_delay = 0
    app = App()
    jingle.register_application(app)
    return host, client, stream, reactor, jingle, s5b, server, network, app


def fix_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidate ids and stream sids are c1, c2..."""
    counter = itertools.count(1)
    monkeypatch.setattr(plugin_xep_0260, "new_id", lambda: f"c{next(counter)}")


@pytest.fixture(autouse=True)
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    fix_ids(monkeypatch)


def candidate(cid: str, host: str, port: int, jid: str, priority: int, type_: str) -> str:
    return (
        f"<candidate cid='{cid}' host='{host}' jid='{jid}' port='{port}' "
        f"priority='{priority}' type='{type_}'/>"
    )


OUR_CANDIDATES = candidate("c1", *OUR_HOST, ALICE, DIRECT_PRIO, "direct") + candidate(
    "c2", *PROXY_ADDR, PROXY, PROXY_PRIO, "proxy"
)
BOB_DIRECT = ("10.0.0.2", 6000)
BOB_CANDIDATES = candidate("b1", *BOB_DIRECT, BOB, DIRECT_PRIO, "direct") + candidate(
    "b2", *PROXY_ADDR, PROXY, PROXY_PRIO, "proxy"
)


def bob_initiate(candidates: str = BOB_CANDIDATES, sid: str = "vj3") -> str:
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' initiator='{BOB}' sid='s1'>"
        "<content creator='initiator' name='f' senders='initiator'>"
        f"<description xmlns='{NS_APP}'/>"
        f"<transport xmlns='{NS_S5B}' sid='{sid}'>{candidates}</transport>"
        "</content></jingle>"
    )


def transport_info(inner: str, sid: str = "vj3", name: str = "f", to: str = BOB) -> str:
    """A transport-info about content ``name`` (sent by us to ``to``, ids normalised)."""
    return (
        f"<iq type='set' to='{to}' id='ID'><jingle xmlns='{NS_JINGLE}' "
        f"action='transport-info' sid='s1'><content creator='initiator' name='{name}'>"
        f"<transport xmlns='{NS_S5B}' sid='{sid}'>{inner}</transport></content></jingle></iq>"
    )


def bob_transport_info(inner: str, sid: str = "vj3", name: str = "f", jingle_sid: str = "s1"):
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='transport-info' sid='{jingle_sid}'>"
        f"<content creator='initiator' name='{name}'>"
        f"<transport xmlns='{NS_S5B}' sid='{sid}'>{inner}</transport></content></jingle>",
        stanza_id="ti",
    )


async def accepted_by_us(tmp_path: Path, candidates: str = BOB_CANDIDATES):
    """BOB proposes a file (he sends) with his candidates; we accept with ours."""
    env = await s5b_host(tmp_path)
    host, client, stream, reactor, jingle, s5b, server, network, app = env
    sent = Sent(stream)
    stream.receive(bob_initiate(candidates))
    out = await sent.all()
    assert out[0] == result_to()
    assert out[1] == (
        f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
        f"action='session-accept' responder='{ALICE}' sid='s1'>"
        "<content creator='initiator' name='f' senders='initiator'>"
        f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_S5B}' sid='vj3' "
        f"dstaddr='{sha1('vj3' + ALICE + BOB)}'>{OUR_CANDIDATES}</transport></content>"
        "</jingle></iq>"
    )
    return env, sent


# --- pure parts -------------------------------------------------------------------------------


def test_priorities_and_nomination() -> None:
    """priority = 65536 × type preference + local preference; nomination: one used wins
    over an error, the higher priority wins, the initiator's choice on a tie."""
    assert candidate_priority(CandidateType.DIRECT) == DIRECT_PRIO
    assert candidate_priority(CandidateType.PROXY, 0) == 655360
    assert candidate_priority(CandidateType.ASSISTED, 1) == 120 * 65536 + 1
    with pytest.raises(ValueError):
        candidate_priority(CandidateType.DIRECT, 65536)
    high = Candidate("h", "h", 1, JID(BOB), DIRECT_PRIO)
    low = Candidate("l", "l", 1, JID(PROXY), PROXY_PRIO, CandidateType.PROXY)
    same = Candidate("s", "s", 1, JID(ALICE), DIRECT_PRIO)
    for role in Role:
        assert nominate(role, None, None) is None
        assert nominate(role, low, None) is low
        assert nominate(role, None, low) is low
        assert nominate(role, high, low) is high
        assert nominate(role, low, high) is high
    assert nominate(Role.INITIATOR, high, same) is high
    assert nominate(Role.RESPONDER, high, same) is same


def test_candidate_elements() -> None:
    """Candidates round-trip; port defaults to 1080 and type to direct; invalid ones are
    refused with ValueError."""
    element = xml_tools.parse(
        f"<candidate xmlns='{NS_S5B}' cid='1e2' host='::1' jid='{BOB}' priority='5'/>"
    )
    parsed = Candidate.from_element(element)
    assert parsed == Candidate("1e2", "::1", 1080, JID(BOB), 5, CandidateType.DIRECT)
    again = Candidate.from_element(parsed.to_element())
    assert again == parsed
    no_jid = xml_tools.parse(f"<candidate xmlns='{NS_S5B}' cid='n' host='h' priority='5'/>")
    assert Candidate.from_element(no_jid, JID(BOB)).jid == JID(BOB)  # tolerated for the peer's
    with pytest.raises(ValueError):
        Candidate.from_element(no_jid)
    for bad in (
        f"cid='x' host='h' jid='{BOB}'",  # no priority
        f"cid='x' host='h' jid='{BOB}' priority='-1'",
        f"cid='x' host='h' jid='{BOB}' priority='1' port='70000'",
        f"cid='x' host='h' jid='{BOB}' priority='1' type='carrier-pigeon'",
        "cid='x' host='h' jid='@@' priority='1'",
    ):
        with pytest.raises(ValueError):
            Candidate.from_element(xml_tools.parse(f"<candidate xmlns='{NS_S5B}' {bad}/>"))


@aio
async def test_interface_and_disco(tmp_path: Path) -> None:
    """The transport is registered with the core, above the fallback, and announced."""
    host, client, stream, reactor = await jingle_host(tmp_path, transports=(NS_S5B, NS_IBB))
    try:
        s5b = host.plugins["XEP-0260"]
        verifyObject(IJingleTransport, s5b)
        assert host.plugins["XEP-0166"].transports[NS_S5B] is s5b
        assert NS_S5B in host.plugins["XEP-0030"].features
        assert s5b.priority > 0
    finally:
        await host.stop()


# --- offers -----------------------------------------------------------------------------------


@aio
async def test_initiator_offer(tmp_path: Path) -> None:
    """Our session-initiate carries our direct candidate (our JID, type direct, priority
    126×65536+65535) and the proxy (its JID, priority 10×65536+65535) and the dstaddr
    SHA-1(sid + initiator + responder); nothing is connected before the answer."""
    host, client, stream, reactor, jingle, s5b, server, network, app = await s5b_host(tmp_path)
    try:
        sent = Sent(stream)
        session = jingle.create_session(client, JID(BOB), "o1")
        jingle.add_content(
            session,
            app,
            domish.Element((NS_APP, "description")),
            senders=Senders.INITIATOR,
            transport=NS_S5B,
        )
        task = asyncio.ensure_future(jingle.initiate(client, session))
        assert await sent.one() == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            f"action='session-initiate' initiator='{ALICE}' sid='o1'>"
            "<content creator='initiator' name='0' senders='initiator'>"
            f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_S5B}' sid='c1' "
            f"dstaddr='{sha1('c1' + ALICE + BOB)}'>"
            + candidate("c2", *OUR_HOST, ALICE, DIRECT_PRIO, "direct")
            + candidate("c3", *PROXY_ADDR, PROXY, PROXY_PRIO, "proxy")
            + "</transport></content></jingle></iq>"
        )
        sent.ack()
        await task
        assert server.registrations == 1 and network.calls == []
    finally:
        await host.stop()


@aio
async def test_offer_without_proxy_has_no_dstaddr(tmp_path: Path) -> None:
    """Without a proxy candidate, the dstaddr attribute is left out (XEP-0260 §2.2)."""
    host, client, stream, reactor, jingle, s5b, server, network, app = await s5b_host(
        tmp_path, proxy=False
    )
    try:
        sent = Sent(stream)
        stream.receive(bob_initiate())
        out = await sent.all()
        assert (
            f"<transport xmlns='{NS_S5B}' sid='vj3'>"
            + candidate("c1", *OUR_HOST, ALICE, DIRECT_PRIO, "direct")
            + "</transport>"
        ) in out[1]
        sent.ack(1)
        await settle()
    finally:
        await host.stop()


@aio
async def test_bad_offers_refused(tmp_path: Path) -> None:
    """An offer without sid, in udp mode or with duplicate candidate ids is a bad request
    (no session); invalid candidates alone are ignored."""
    host, client, stream, reactor, jingle, s5b, server, network, app = await s5b_host(tmp_path)
    try:
        sent = Sent(stream)
        dup = candidate("d", "h", 1, BOB, 5, "direct") * 2
        for transport in (
            f"<transport xmlns='{NS_S5B}'/>",
            f"<transport xmlns='{NS_S5B}' sid='x' mode='udp'/>",
            f"<transport xmlns='{NS_S5B}' sid='x'>{dup}</transport>",
        ):
            stream.receive(
                jingle_iq(
                    f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='s9'>"
                    f"<content creator='initiator' name='f' senders='initiator'>"
                    f"<description xmlns='{NS_APP}'/>{transport}</content></jingle>"
                )
            )
            (answer,) = await sent.all()
            assert "type='error'" in answer and "bad-request" in answer
        assert jingle.sessions(client) == {}
        element = xml_tools.parse(
            f"<transport xmlns='{NS_S5B}' sid='x'>"
            + candidate("ok", "h", 1, BOB, 5, "direct")
            + "<candidate cid='bad' host='h'/></transport>"
        )
        assert [c.cid for c in s5b._parse_candidates(element, JID(BOB))] == ["ok"]
        with pytest.raises(JingleError):
            s5b._parse_candidates(
                xml_tools.parse(f"<transport xmlns='{NS_S5B}'>{dup}</transport>"), JID(BOB)
            )
    finally:
        await host.stop()


# --- negotiation as responder -----------------------------------------------------------------


@aio
async def test_responder_uses_peer_direct_candidate(tmp_path: Path) -> None:
    """We connect to BOB's best candidate with DST.ADDR SHA-1(sid + BOB + us), send
    candidate-used; BOB's candidate-error nominates it; the file's bytes arrive."""
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path
    )
    try:
        connection = fake_stream(BOB_DIRECT, b"file content")
        network.streams[BOB_DIRECT] = connection
        sent.ack(1)
        assert await sent.all() == [transport_info("<candidate-used cid='b1'/>")]
        # every attempt at once here (no stagger in these tests), the best one first
        assert network.calls[0] == (*BOB_DIRECT, sha1("vj3" + BOB + ALICE))
        sent.ack()
        stream.receive(bob_transport_info("<candidate-error/>"))
        assert await sent.all() == [result_to()]
        await settle()
        content = app.sessions[0].contents[(Role.INITIATOR, "f")]
        assert isinstance(content.sink, MemorySink)
        assert bytes(content.sink.data) == b"file content"
        assert content.sink.closed == (None,)
        assert connection.writer.closed  # type: ignore[attr-defined]
        assert server.registrations == 0  # no more connection expected
    finally:
        await host.stop()


@aio
async def test_both_used_tie_initiator_choice(tmp_path: Path) -> None:
    """Both sides used a candidate of the same priority: the initiator's choice (our
    direct candidate, which BOB used) is nominated; BOB's connection to it carries the data
    and our own connection to BOB is closed."""
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path
    )
    try:
        ours_to_bob = fake_stream(BOB_DIRECT)
        network.streams[BOB_DIRECT] = ours_to_bob
        sent.ack(1)
        assert await sent.all() == [transport_info("<candidate-used cid='b1'/>")]
        sent.ack()
        (registration,) = server._registrations.values()
        assert registration.dstaddr == sha1("vj3" + ALICE + BOB)
        bobs = fake_stream(OUR_HOST, b"via our server")
        registration.arrived(bobs)
        stream.receive(bob_transport_info("<candidate-used cid='c1'/>"))
        assert await sent.all() == [result_to()]
        await settle()
        content = app.sessions[0].contents[(Role.INITIATOR, "f")]
        assert bytes(content.sink.data) == b"via our server"  # type: ignore[union-attr]
        assert ours_to_bob.writer.closed  # type: ignore[attr-defined]
    finally:
        await host.stop()


@aio
async def test_peer_choice_beats_remaining_candidates(tmp_path: Path) -> None:
    """While our attempt on BOB's proxy (lower priority) is pending, BOB's candidate-used
    of our direct candidate arrives: we stop trying, send candidate-error, and BOB's
    connection is used."""
    proxy_only = candidate("b2", *PROXY_ADDR, PROXY, PROXY_PRIO, "proxy")
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path, proxy_only
    )
    try:
        never: asyncio.Future[Socks5Stream] = asyncio.get_running_loop().create_future()
        network.streams[PROXY_ADDR] = never
        sent.ack(1)
        assert await sent.all() == []
        (registration,) = server._registrations.values()
        registration.arrived(fake_stream(OUR_HOST, b"direct"))
        stream.receive(bob_transport_info("<candidate-used cid='c1'/>"))
        assert await sent.all() == [result_to(), transport_info("<candidate-error/>")]
        sent.ack(1)
        await settle()
        content = app.sessions[0].contents[(Role.INITIATOR, "f")]
        assert bytes(content.sink.data) == b"direct"  # type: ignore[union-attr]
        assert never.cancelled()
    finally:
        await host.stop()


@aio
async def test_our_proxy_activated(tmp_path: Path) -> None:
    """No candidate of BOB works (candidate-error); BOB used our proxy: we connect to it
    with our dstaddr, activate the bytestream (XEP-0065 <activate/> with BOB's JID, the
    stream sid), then send <activated cid/>; the bytes arrive through the proxy."""
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path, candidate("b1", *BOB_DIRECT, BOB, DIRECT_PRIO, "direct")
    )
    try:
        sent.ack(1)
        assert await sent.all() == [transport_info("<candidate-error/>")]
        sent.ack()
        relay = fake_stream(PROXY_ADDR, b"relayed")
        network.streams[PROXY_ADDR] = relay
        stream.receive(bob_transport_info("<candidate-used cid='c2'/>"))
        assert await sent.all() == [
            result_to(),
            f"<iq type='set' to='{PROXY}' id='ID'><query "
            "xmlns='http://jabber.org/protocol/bytestreams' sid='vj3'>"
            f"<activate>{BOB}</activate></query></iq>",
        ]
        assert network.calls[-1] == (*PROXY_ADDR, sha1("vj3" + ALICE + BOB))
        sent.ack(1, sender=PROXY)
        assert await sent.all() == [transport_info("<activated cid='c2'/>")]
        sent.ack()
        await settle()
        content = app.sessions[0].contents[(Role.INITIATOR, "f")]
        assert bytes(content.sink.data) == b"relayed"  # type: ignore[union-attr]
    finally:
        await host.stop()


@aio
async def test_our_proxy_refuses_activation(tmp_path: Path) -> None:
    """The proxy refuses to activate: we send <proxy-error/>; the transport failed (as
    responder we wait for the initiator's transport-replace); no data is delivered."""
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path, candidate("b1", *BOB_DIRECT, BOB, DIRECT_PRIO, "direct")
    )
    try:
        sent.ack(1)
        await sent.all()
        sent.ack()
        relay = fake_stream(PROXY_ADDR)
        network.streams[PROXY_ADDR] = relay
        stream.receive(bob_transport_info("<candidate-used cid='c2'/>"))
        out = await sent.all()
        assert "<activate>" in out[1]
        stream.receive(
            f"<iq type='error' id='{iq_id(sent.raw[1])}'"
            f" from='{PROXY}' to='{ALICE}'><error type='cancel'>"
            "<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        assert await sent.all() == [transport_info("<proxy-error/>")]
        sent.ack()
        await settle()
        session = app.sessions[0]
        assert session.state is State.ACTIVE
        assert session.contents[(Role.INITIATOR, "f")].sink.closed is None  # type: ignore[union-attr]
        assert relay.writer.closed  # type: ignore[attr-defined]
    finally:
        await host.stop()


@aio
async def test_peer_proxy_activation_and_proxy_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """We used BOB's proxy and BOB sent candidate-error: we wait for BOB's <activated/>
    before any byte moves; a <proxy-error/> instead makes the transport fail."""
    proxy_only = candidate("b2", *PROXY_ADDR, PROXY, PROXY_PRIO, "proxy")
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path, proxy_only
    )
    try:
        relay = fake_stream(PROXY_ADDR)
        network.streams[PROXY_ADDR] = relay
        sent.ack(1)
        assert await sent.all() == [transport_info("<candidate-used cid='b2'/>")]
        assert network.calls == [(*PROXY_ADDR, sha1("vj3" + BOB + ALICE))]
        sent.ack()
        stream.receive(bob_transport_info("<candidate-error/>"))
        await sent.all()
        relay.reader.feed_data(b"after activation")
        relay.reader.feed_eof()
        content = app.sessions[0].contents[(Role.INITIATOR, "f")]
        await settle()
        assert content.sink.data == b""  # type: ignore[union-attr]
        stream.receive(bob_transport_info("<activated cid='b2'/>"))
        await sent.all()
        await settle()
        assert bytes(content.sink.data) == b"after activation"  # type: ignore[union-attr]
    finally:
        await host.stop()
    # the same with a proxy-error
    second = tmp_path / "2"
    second.mkdir()
    fix_ids(monkeypatch)
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        second, proxy_only
    )
    try:
        relay = fake_stream(PROXY_ADDR)
        network.streams[PROXY_ADDR] = relay
        sent.ack(1)
        await sent.all()
        sent.ack()
        stream.receive(bob_transport_info("<candidate-error/>"))
        stream.receive(bob_transport_info("<proxy-error/>"))
        assert await sent.all() == [result_to(), result_to()]
        await settle()
        assert relay.writer.closed  # type: ignore[attr-defined]
        assert app.sessions[0].contents[(Role.INITIATOR, "f")].sink.closed is None  # type: ignore[union-attr]
    finally:
        await host.stop()


@aio
async def test_transport_info_for_other_stream_ignored(tmp_path: Path) -> None:
    """A transport-info with another stream sid is acked and changes nothing."""
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path
    )
    try:
        network.streams[BOB_DIRECT] = fake_stream(BOB_DIRECT)
        sent.ack(1)
        await sent.all()
        sent.ack()
        stream.receive(bob_transport_info("<candidate-error/>", sid="other"))
        assert await sent.all() == [result_to()]
        data = app.sessions[0].contents[(Role.INITIATOR, "f")].transport_data
        assert not data.peer_choice.done()
    finally:
        await host.stop()


# --- as initiator: fallback -------------------------------------------------------------------


@aio
async def test_initiator_falls_back_with_transport_replace(tmp_path: Path) -> None:
    """Both sides sent candidate-error: the initiator's core replaces the SOCKS5 transport
    with the next one, IBB, through transport-replace."""
    host, client, stream, reactor, jingle, s5b, server, network, app = await s5b_host(tmp_path)
    try:
        sent = Sent(stream)
        session = jingle.create_session(client, JID(BOB), "o1")
        jingle.add_content(
            session, app, domish.Element((NS_APP, "description")), senders=Senders.INITIATOR
        )
        task = asyncio.ensure_future(jingle.initiate(client, session))
        out = await sent.one()
        assert f"<transport xmlns='{NS_S5B}' sid='c1'" in out  # the best usable transport
        sent.ack()
        await task
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-accept' sid='o1'>"
                "<content creator='initiator' name='0' senders='initiator'>"
                f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_S5B}' sid='c1'>"
                f"{BOB_CANDIDATES}</transport></content></jingle>"
            )
        )
        assert await sent.all() == [
            result_to(),
            transport_info("<candidate-error/>", sid="c1", name="0").replace("'s1'", "'o1'"),
        ]
        sent.ack(1)
        stream.receive(
            bob_transport_info("<candidate-error/>", sid="c1", name="0", jingle_sid="o1")
        )
        out = await sent.all()
        assert out[0] == result_to()
        assert out[1].startswith(
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='transport-replace' sid='o1'><content creator='initiator' name='0'>"
            f"<transport xmlns='{NS_IBB}' block-size="
        )
        sent.ack(1)
        await settle()
        assert server.registrations == 0
    finally:
        await host.stop()


@aio
async def test_session_end_releases_everything(tmp_path: Path) -> None:
    """The peer terminates during the negotiation: pending attempts are cancelled,
    connections closed, the dstaddr no longer expected."""
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path
    )
    try:
        pending: asyncio.Future[Socks5Stream] = asyncio.get_running_loop().create_future()
        network.streams[BOB_DIRECT] = pending
        sent.ack(1)
        await sent.all()
        (registration,) = server._registrations.values()
        early = fake_stream(OUR_HOST)
        registration.arrived(early)
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='s1'>"
                "<reason><cancel/></reason></jingle>"
            )
        )
        assert await sent.all() == [result_to()]
        assert pending.cancelled()
        assert early.writer.closed  # type: ignore[attr-defined]
        assert server.registrations == 0
    finally:
        await host.stop()


# --- proxy discovery --------------------------------------------------------------------------


class ServerSide:
    """Reads what the profile sent to the server and its components (the Jingle helper's
    reader leaves those out), with our ids replaced by ``ID``."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.raw: list[str] = []

    async def all(self) -> list[str]:
        await settle()
        self.raw = self.stream.sent_xml()
        return [normalised(x) for x in self.raw]

    def answer(self, sender: str, inner: str, type_: str = "result") -> None:
        (request,) = self.raw
        self.stream.receive(
            f"<iq type='{type_}' id='{iq_id(request)}' from='{sender}' to='{ALICE}'>{inner}</iq>"
        )


DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
BYTESTREAMS = "http://jabber.org/protocol/bytestreams"


@aio
async def test_proxy_discovery(tmp_path: Path) -> None:
    """disco#items of our server, disco#info of each item (identity proxy/bytestreams), then
    the bytestreams streamhost query; the answer is cached for the profile's session."""
    host, client, stream, reactor = await jingle_host(tmp_path, transports=(NS_S5B, NS_IBB))
    try:
        s5 = host.plugins["XEP-0065"]
        server = ServerSide(stream)
        finding = asyncio.ensure_future(s5.get_proxy(client))
        assert await server.all() == [
            f"<iq type='get' to='localhost' id='ID'><query xmlns='{DISCO_ITEMS}'/></iq>"
        ]
        server.answer(
            "localhost",
            f"<query xmlns='{DISCO_ITEMS}'><item jid='pubsub.localhost'/>"
            f"<item jid='{PROXY}'/></query>",
        )
        assert await server.all() == [
            f"<iq type='get' to='pubsub.localhost' id='ID'><query xmlns='{DISCO_INFO}'/></iq>"
        ]
        server.answer(
            "pubsub.localhost",
            f"<query xmlns='{DISCO_INFO}'><identity category='pubsub' type='service'/></query>",
        )
        assert await server.all() == [
            f"<iq type='get' to='{PROXY}' id='ID'><query xmlns='{DISCO_INFO}'/></iq>"
        ]
        server.answer(
            PROXY,
            f"<query xmlns='{DISCO_INFO}'><identity category='proxy' type='bytestreams'/></query>",
        )
        assert await server.all() == [
            f"<iq type='get' to='{PROXY}' id='ID'><query xmlns='{BYTESTREAMS}'/></iq>"
        ]
        server.answer(
            PROXY,
            f"<query xmlns='{BYTESTREAMS}'>"
            f"<streamhost jid='{PROXY}' host='127.0.0.1' port='7777'/></query>",
        )
        assert await finding == ProxyHost(JID(PROXY), "127.0.0.1", 7777)
        assert await s5.get_proxy(client) == ProxyHost(JID(PROXY), "127.0.0.1", 7777)
        assert await server.all() == []  # cached
    finally:
        await host.stop()


@aio
async def test_no_proxy_on_server(tmp_path: Path) -> None:
    """A server refusing disco#items, or whose proxy gives no valid streamhost: no proxy
    candidate, no error."""
    host, client, stream, reactor = await jingle_host(tmp_path, transports=(NS_S5B, NS_IBB))
    try:
        s5 = host.plugins["XEP-0065"]
        server = ServerSide(stream)
        finding = asyncio.ensure_future(s5.get_proxy(client))
        await server.all()
        server.answer(
            "localhost",
            "<error type='cancel'><service-unavailable "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            "error",
        )
        assert await finding is None
        client.extra.pop("XEP-0065_proxy")
        finding = asyncio.ensure_future(s5.get_proxy(client))
        await server.all()
        server.answer("localhost", f"<query xmlns='{DISCO_ITEMS}'><item jid='{PROXY}'/></query>")
        await server.all()
        server.answer(
            PROXY,
            f"<query xmlns='{DISCO_INFO}'><identity category='proxy' type='bytestreams'/></query>",
        )
        await server.all()
        server.answer(PROXY, f"<query xmlns='{BYTESTREAMS}'><streamhost jid='{PROXY}'/></query>")
        assert await finding is None
    finally:
        await host.stop()


@aio
async def test_session_end_during_transfer(tmp_path: Path) -> None:
    """The session ends while bytes are still coming: the transfer stops, the sink is
    closed with an error (never as a complete reception) and the connection is closed."""
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path
    )
    try:
        connection = fake_stream(BOB_DIRECT)
        network.streams[BOB_DIRECT] = connection
        sent.ack(1)
        await sent.all()
        sent.ack()
        stream.receive(bob_transport_info("<candidate-error/>"))
        await sent.all()
        connection.reader.feed_data(b"part of the file")
        await settle()
        content = app.sessions[0].contents[(Role.INITIATOR, "f")]
        assert bytes(content.sink.data) == b"part of the file"  # type: ignore[union-attr]
        assert content.sink.closed is None  # type: ignore[union-attr]
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='s1'>"
                "<reason><cancel/></reason></jingle>"
            )
        )
        await sent.all()
        (error,) = content.sink.closed  # type: ignore[union-attr,misc]
        assert error is not None
        assert connection.writer.closed  # type: ignore[attr-defined]
    finally:
        await host.stop()


@aio
async def test_attempts_are_staggered_on_the_clock(tmp_path: Path) -> None:
    """Candidates are tried best first, 200 ms apart on the profile's clock, proxies 500 ms
    later still; the best one that works is used even when a lower one answered first."""
    bob_low = ("10.0.0.3", 6001)
    candidates = (
        candidate("b1", *BOB_DIRECT, BOB, DIRECT_PRIO, "direct")
        + candidate("b3", *bob_low, BOB, DIRECT_PRIO - 1, "direct")
        + candidate("b2", *PROXY_ADDR, PROXY, PROXY_PRIO, "proxy")
    )
    (host, client, stream, reactor, jingle, s5b, server, network, app), sent = await accepted_by_us(
        tmp_path, candidates
    )
    try:
        s5b.stagger, s5b.proxy_delay = 0.2, 0.5
        best: asyncio.Future[Socks5Stream] = asyncio.get_running_loop().create_future()
        network.streams[BOB_DIRECT] = best
        network.streams[bob_low] = fake_stream(bob_low)
        network.streams[PROXY_ADDR] = fake_stream(PROXY_ADDR)
        sent.ack(1)
        await settle()
        assert [call[:2] for call in network.calls] == [BOB_DIRECT]
        reactor.advance(0.2)  # the second attempt's stagger delay
        await settle()
        assert [call[:2] for call in network.calls] == [BOB_DIRECT, bob_low]
        reactor.advance(0.2)
        await settle()
        assert len(network.calls) == 2  # the proxy waits longer
        reactor.advance(0.5)  # the proxy's extra delay
        await settle()
        assert [call[:2] for call in network.calls] == [BOB_DIRECT, bob_low, PROXY_ADDR]
        assert await sent.all() == []  # the best candidate is still being tried
        best.set_result(fake_stream(BOB_DIRECT))
        assert await sent.all() == [transport_info("<candidate-used cid='b1'/>")]
        sent.ack()
    finally:
        await host.stop()


@aio
async def test_not_usable_when_the_peer_is_known_to_lack_s5b(tmp_path: Path) -> None:
    """A peer whose features are known without SOCKS5 bytestreams gets IBB at once; an unknown
    peer is offered SOCKS5 (IBB remains the fallback)."""
    from wokkel.disco import DiscoFeature, DiscoInfo

    host, client, stream, reactor = await jingle_host(tmp_path, transports=(NS_S5B, NS_IBB))
    try:
        jingle = host.plugins["XEP-0166"]
        app = App()
        jingle.register_application(app)

        def chosen(peer: str) -> str:
            session = jingle.create_session(client, JID(peer))
            content = jingle.add_content(session, app, None, senders=Senders.INITIATOR)
            transport = jingle.select_transport(client, content)
            assert transport is not None
            return str(transport.namespace)

        assert chosen(BOB) == NS_S5B  # nothing known about bob
        known = DiscoInfo()
        known.append(DiscoFeature(NS_IBB))
        host.plugins["XEP-0030"].cache_infos(client, JID("carol@localhost/pc"), known)
        assert chosen("carol@localhost/pc") == NS_IBB
        known.append(DiscoFeature(NS_S5B))
        assert chosen("carol@localhost/pc") == NS_S5B
    finally:
        await host.stop()


@aio
async def test_received_into_the_sinks_buffers() -> None:
    """A sink that lends receive buffers (``receive_buffer``) gets the bytes in them: the
    ByteStream receives into its buffers (views of them come back to ``write``), in order;
    a sink without the hook gets chunks of the stream's own buffers (MemorySink)."""
    from types import SimpleNamespace

    from libervia.backend.tools.bytestream import ByteStream
    from tests.unit.tools.test_bytestream import FakeTransport, feed

    class LendingSink(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.lent: list[bytearray] = []
            self.in_place = 0

        def receive_buffer(self, size: int) -> memoryview:
            self.lent.append(bytearray(size))
            return memoryview(self.lent[-1])

        async def write(self, data: bytes) -> None:
            if isinstance(data, memoryview) and any(data.obj is b for b in self.lent):
                self.in_place += len(data)
            await super().write(data)

    data = bytes(range(256)) * 40
    for sink in (LendingSink(), MemorySink()):
        reader = ByteStream(chunk_size=1024)
        reader.connection_made(FakeTransport())
        stream = Socks5Stream(reader, FakeWriter(), ("127.0.0.1", 1))  # type: ignore[arg-type]
        receiving = asyncio.ensure_future(
            plugin_xep_0260.XEP_0260._receive(SimpleNamespace(sink=sink), stream)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0)  # the transport installs the sink's buffers before reading
        feed(reader, data, step=700)
        reader.eof_received()
        await receiving
        assert bytes(sink.data) == data and sink.closed == (None,)
        if isinstance(sink, LendingSink):
            # the first KiB went to the stream's own buffer, the rest to the sink's
            assert sink.in_place == len(data) - 1024 and len(sink.lent) >= 9
