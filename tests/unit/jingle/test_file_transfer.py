"""XEP-0234 file transfer: two hosts wired to each other in-process (a whole offer over
IBB), and one host facing literal XML (hostile or broken peers)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput
from tests.conftest import aio, turns
from tests.unit.core.fakes import FakeStream
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    NS_JINGLE,
    Sent,
    ibb_offer_accepted,
    jingle_host,
    jingle_iq,
    no_text,
    result_to,
    settle,
)

FT = "urn:xmpp:jingle:apps:file-transfer:5"
FT_ERRORS = "urn:xmpp:jingle:apps:file-transfer:errors:0"
HASHES = "urn:xmpp:hashes:2"
IBB = "http://jabber.org/protocol/ibb"
JIBB = "urn:xmpp:jingle:transports:ibb:1"


def emitted(host: Any, signal: str) -> list[tuple[Any, ...]]:
    return [args for name, args in host.bridge.emitted if name == signal]


async def until(condition: Any, what: str, pump: Any = None) -> None:
    """Yield to the loop (and pump the wire) until ``condition()``; no real time passes
    except for the file hashing thread."""
    for _ in turns():
        if pump is not None:
            pump()
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


class Wire:
    """Two fake streams wired to each other, as a server would route (it stamps ``from``)."""

    def __init__(self, a: tuple[str, FakeStream], b: tuple[str, FakeStream]) -> None:
        self.ends = [(a[0], a[1], b[1]), (b[0], b[1], a[1])]
        self.log: list[str] = []

    def pump(self) -> None:
        for jid, source, target in self.ends:
            for element in source.sent():
                if element.getAttribute("to", "").split("/")[0] != element.getAttribute(
                    "to", ""
                ).split("/")[0] or "@" not in element.getAttribute("to", ""):
                    continue  # to the server (pings, discovery): nobody answers
                element["from"] = jid
                xml = element.toXml(defaultUri="jabber:client")
                self.log.append(xml)
                target.receive(xml)


async def two_hosts(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = await jingle_host(tmp_path / "a")
    b = await jingle_host(tmp_path / "b", "bob", BOB)
    return a, b, Wire((ALICE, a[2]), (BOB, b[2]))


def answer(host: Any, data: dict[str, Any], profile: str = "bob") -> dict[str, Any]:
    (action,) = emitted(host, "action_new")
    host.actions.launch(profile, action[1], data)
    return json.loads(action[0])


@aio
async def test_offer_over_ibb_between_two_hosts(tmp_path: Path) -> None:
    """alice offers a file to bob's device; bob is asked (name, size, description in the
    message), accepts into a directory; the bytes cross over IBB; bob checks the sha-256,
    renames the partial file, sends <received/> and terminates with success; both progress
    reports finish."""
    (ha, ca, sa, _), (hb, cb, sb, _), wire = await two_hosts(tmp_path)
    try:
        content = os.urandom(20_000)
        source = tmp_path / "report.pdf"
        source.write_bytes(content)
        downloads = tmp_path / "down"
        task = asyncio.ensure_future(
            ha.plugins["XEP-0234"].file_send(ca, JID(BOB), source, desc="Q3 numbers")
        )
        await until(lambda: emitted(hb, "action_new"), "bob asked", wire.pump)
        result = await task
        offer = wire.log[0]
        digest = b64encode(hashlib.sha256(content).digest()).decode()
        assert "action='session-initiate'" in offer and "senders='initiator'" in offer
        assert (
            f"<description xmlns='{FT}'><file><date>" in offer
            and "<desc>Q3 numbers</desc><media-type>application/pdf</media-type>"
            "<name>report.pdf</name><size>20000</size>"
            f"<hash xmlns='{HASHES}' algo='sha-256'>{digest}</hash></file></description>"
            in offer
        )
        assert f"<transport xmlns='{JIBB}' block-size='4096'" in offer
        data = answer(hb, {"accept": True, "path": str(downloads)})
        assert data["type"] == "file" and data["from_jid"] == ALICE
        assert data["session_id"] == result["session_id"] and data["in_roster"] is False
        assert data["file"]["name"] == "report.pdf" and data["file"]["size"] == 20000
        assert data["file"]["hash_algo"] == "sha-256"
        assert data["message"] == (
            'alice@localhost wants to send you "report.pdf" (20.0 kB): Q3 numbers '
            "(not in your contacts)"
        )
        await until(
            lambda: emitted(ha, "progress_finished") and emitted(hb, "progress_finished"),
            "both finished",
            wire.pump,
        )
        saved = downloads / "report.pdf"
        assert saved.read_bytes() == content
        assert sorted(p.name for p in downloads.iterdir()) == ["report.pdf"]  # no partial
        assert saved.stat().st_mode & 0o777 == 0o600
        ((progress_id, meta, _),) = emitted(hb, "progress_finished")
        meta = json.loads(meta)
        assert progress_id == data["progress_id"]
        assert meta["hash_verified"] is True and meta["hash_algo"] == "sha-256"
        assert meta["size"] == 20000 and meta["path"] == str(saved)
        (started,) = [json.loads(a[1]) for a in emitted(hb, "progress_started")]
        assert started["direction"] == "in" and started["path"] == str(saved)
        ((progress_id, meta, _),) = emitted(ha, "progress_finished")
        assert progress_id == result["progress"]
        assert json.loads(meta)["size"] == 20000
        actions = [x for x in wire.log if "<jingle" in x]
        assert "<received xmlns" in actions[-2] and "<success/>" in actions[-1]
        # a second offer of the same name never overwrites the first file
        task = asyncio.ensure_future(ha.plugins["XEP-0234"].file_send(ca, JID(BOB), source))
        await until(lambda: len(emitted(hb, "action_new")) == 2, "asked again", wire.pump)
        await task
        hb.actions.launch(
            "bob", emitted(hb, "action_new")[1][1], {"accept": True, "path": str(downloads)}
        )
        await until(lambda: len(emitted(hb, "progress_finished")) == 2, "second", wire.pump)
        assert (downloads / "report (1).pdf").read_bytes() == content
        assert saved.read_bytes() == content
    finally:
        await ha.stop()
        await hb.stop()


@aio
async def test_refusal_declines(tmp_path: Path) -> None:
    """bob refuses: the session ends with decline and alice's progress fails."""
    (ha, ca, sa, _), (hb, cb, sb, _), wire = await two_hosts(tmp_path)
    try:
        source = tmp_path / "f.txt"
        source.write_bytes(b"hello")
        task = asyncio.ensure_future(ha.plugins["XEP-0234"].file_send(ca, JID(BOB), source))
        await until(lambda: emitted(hb, "action_new"), "bob asked", wire.pump)
        await task
        answer(hb, {"accept": False})
        await until(lambda: emitted(ha, "progress_error"), "alice told", wire.pump)
        assert "<decline/>" in wire.log[-2] or "<decline/>" in wire.log[-1]
        ((_, error, _),) = emitted(ha, "progress_error")
        assert "decline" in error
        downloads = hb.config.local_dir / "downloads"
        assert not downloads.exists() or not any(downloads.iterdir())
    finally:
        await ha.stop()
        await hb.stop()


# --- one host, the peer as literal XML ---------------------------------------------------


def offer(
    size: str = "10",
    name: str = "a.txt",
    hash_el: str = "",
    senders: str = "initiator",
    sid: str = "s1",
) -> str:
    size_el = f"<size>{size}</size>" if size else ""
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' initiator='{BOB}' sid='{sid}'>"
        f"<content creator='initiator' name='c' senders='{senders}'>"
        f"<description xmlns='{FT}'><file><name>{name}</name>{size_el}{hash_el}</file>"
        f"</description><transport xmlns='{JIBB}' block-size='4096' sid='ibb1'/></content>"
        "</jingle>"
    )


def sha256_el(data: bytes) -> str:
    digest = b64encode(hashlib.sha256(data).digest()).decode()
    return f"<hash xmlns='{HASHES}' algo='sha-256'>{digest}</hash>"


def ibb(inner: str, stanza_id: str = "b1") -> str:
    return f"<iq type='set' id='{stanza_id}' from='{BOB}' to='{ALICE}'>{inner}</iq>"


async def receiving(tmp_path: Path, offer_xml: str, answer_data: dict[str, Any] | None = None):
    """alice's host gets an offer from the literal bob, accepts it, bob's IBB is opened."""
    host, client, stream, reactor = await jingle_host(tmp_path)
    sent = Sent(stream)
    stream.receive(offer_xml)
    await until(lambda: emitted(host, "action_new"), "asked")
    assert await sent.all() == [result_to()]
    (action,) = emitted(host, "action_new")
    downloads = tmp_path / "down"
    host.actions.launch("alice", action[1], answer_data or {"accept": True, "path": str(downloads)})
    out = await sent.all()
    assert "action='session-accept'" in out[0], out
    sent.ack()
    await settle()
    stream.receive(ibb(f"<open xmlns='{IBB}' block-size='4096' sid='ibb1'/>"))
    assert await sent.all() == [result_to()]
    return host, client, stream, reactor, sent, downloads


def data_iq(seq: int, payload: bytes) -> str:
    return ibb(f"<data xmlns='{IBB}' seq='{seq}' sid='ibb1'>{b64encode(payload).decode()}</data>")


@aio
async def test_peer_sending_more_than_announced_is_cut_off(tmp_path: Path) -> None:
    """10 bytes announced, 12 sent: the data is refused, the bytestream closed, the session
    terminated with media-error + file-too-large, nothing kept on disk."""
    host, client, stream, reactor, sent, downloads = await receiving(tmp_path, offer())
    try:
        stream.receive(data_iq(0, b"0123456789ab"))
        out = [no_text(x) for x in await sent.all()]
        assert "type='error'" in out[0] and "<not-acceptable" in out[0]
        terminate = next(x for x in out if "session-terminate" in x)
        assert (
            "<reason><media-error/><text>more than the 10 bytes announced or allowed</text>"
            f"<file-too-large xmlns='{FT_ERRORS}'/></reason>" in terminate
        )
        assert any(f"<close xmlns='{IBB}' sid='ibb1'/>" in x for x in out)
        assert list(downloads.iterdir()) == []
        assert emitted(host, "progress_error")
    finally:
        await host.stop()


@aio
async def test_wrong_hash_removes_the_file(tmp_path: Path) -> None:
    """The data does not match the announced sha-256: the session ends with an error and
    neither the partial file nor the reserved name are kept."""
    host, client, stream, reactor, sent, downloads = await receiving(
        tmp_path, offer(hash_el=sha256_el(b"other data"))
    )
    try:
        stream.receive(data_iq(0, b"0123456789"))
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='ibb1'/>", "b2"))
        out = await sent.all()
        assert out[:2] == [result_to(), result_to()]
        assert (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='s1'><reason><media-error/>"
            "<text>the sha-256 hash of the file is wrong</text></reason></jingle></iq>"
        ) == out[2]
        assert list(downloads.iterdir()) == []
        ((_, error, _),) = emitted(host, "progress_error")
        assert "hash" in error
    finally:
        await host.stop()


@aio
async def test_right_hash_and_hostile_name(tmp_path: Path) -> None:
    """A name with path tricks is saved under a safe name inside the chosen directory; the
    hash matches: <received/> then success."""
    content = b"0123456789"
    host, client, stream, reactor, sent, downloads = await receiving(
        tmp_path, offer(name="../../.bashrc", hash_el=sha256_el(content))
    )
    try:
        stream.receive(data_iq(0, content))
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='ibb1'/>", "b2"))
        out = await sent.all()
        assert out[2] == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            f"action='session-info' sid='s1'><received xmlns='{FT}' creator='initiator' "
            "name='c'/></jingle></iq>"
        )
        sent.ack(2)
        out = await sent.all()
        assert out == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='s1'><reason><success/></reason></jingle></iq>"
        ]
        (saved,) = list(downloads.iterdir())
        assert saved.parent == downloads and not saved.name.startswith(".")
        assert "/" not in saved.name and saved.read_bytes() == content
        assert not (tmp_path / ".bashrc").exists()
    finally:
        await host.stop()


@aio
async def test_checksum_after_hash_used(tmp_path: Path) -> None:
    """An offer with <hash-used/>: the file is checked when the sender's checksum
    session-info arrives."""
    content = b"0123456789"
    host, client, stream, reactor, sent, downloads = await receiving(
        tmp_path, offer(hash_el=f"<hash-used xmlns='{HASHES}' algo='sha-256'/>")
    )
    try:
        stream.receive(data_iq(0, content))
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='ibb1'/>", "b2"))
        assert await sent.all() == [result_to(), result_to()]
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-info' sid='s1'>"
                f"<checksum xmlns='{FT}' creator='initiator' name='c'><file>"
                f"{sha256_el(content)}</file></checksum></jingle>",
                stanza_id="j2",
            )
        )
        out = await sent.all()
        assert out[0] == result_to() and "<received xmlns" in out[1]
        ((_, meta, _),) = emitted(host, "progress_finished")
        assert json.loads(meta)["hash_verified"] is True
    finally:
        await host.stop()


@aio
async def test_short_file_is_an_error(tmp_path: Path) -> None:
    """The bytestream closes before the announced size: error, nothing kept."""
    host, client, stream, reactor, sent, downloads = await receiving(tmp_path, offer())
    try:
        stream.receive(data_iq(0, b"01234"))
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='ibb1'/>", "b2"))
        out = await sent.all()
        assert "<media-error/><text>received 5 of 10 bytes</text>" in out[2]
        assert list(downloads.iterdir()) == []
    finally:
        await host.stop()


@aio
async def test_bad_offers_are_refused(tmp_path: Path) -> None:
    """Negative, absurd or missing sizes are bad requests; a request for one of our files
    is answered failed-application + file-not-available."""
    host, client, stream, reactor = await jingle_host(tmp_path)
    sent = Sent(stream)
    try:
        for size in ("-1", "1e9", str(1 << 41), "", "99999999999999999999999"):
            stream.receive(offer(size=size))
            out = [no_text(x) for x in await sent.all()]
            assert len(out) == 1 and "<bad-request" in out[0], (size, out)
        stream.receive(offer(senders="responder", size=""))
        out = await sent.all()
        assert out[0] == result_to()
        assert (
            "<reason><failed-application/>"
            f"<file-not-available xmlns='{FT_ERRORS}'/></reason>" in out[1]
        )
        assert emitted(host, "action_new") == []
    finally:
        await host.stop()


@aio
async def test_unanswered_offer_times_out_and_cancels_the_question(tmp_path: Path) -> None:
    """Nobody answers: the session ends with timeout and the pending question is
    cancelled (action_update)."""
    host, client, stream, reactor = await jingle_host(tmp_path)
    host.plugins["XEP-0166"].pending_timeout = 30
    sent = Sent(stream)
    try:
        stream.receive(offer())
        await until(lambda: emitted(host, "action_new"), "asked")
        await sent.all()
        reactor.advance(30)  # the pending timer of the session
        out = await sent.all()
        assert "<reason><timeout/></reason>" in out[0]
        (update,) = emitted(host, "action_update")
        assert json.loads(update[1])["status"] == "cancelled"
        # the peer cancelling works the same
        stream.receive(offer(sid="s2"))
        await until(lambda: len(emitted(host, "action_new")) == 2, "asked again")
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='s2'>"
                "<reason><cancel/></reason></jingle>",
                stanza_id="j3",
            )
        )
        await settle()
        assert len(emitted(host, "action_update")) == 2
    finally:
        await host.stop()


@aio
async def test_bridge_methods(tmp_path: Path) -> None:
    """file_send and file_jingle_request check their arguments; file_send returns the
    progress and session ids."""
    host, client, stream, reactor = await jingle_host(tmp_path)
    methods = host.bridge.methods
    try:
        with pytest.raises(InvalidInput):
            await methods["file_send"](BOB, str(tmp_path), "", "", '{"transport": "x"}', "alice")
        with pytest.raises(InvalidInput):
            await methods["file_send"](BOB, str(tmp_path), "", "", '{"foo": 1}', "alice")
        with pytest.raises(InvalidInput):
            await methods["file_send"](BOB, str(tmp_path), "", "", "", "alice")  # a directory
        with pytest.raises(InvalidInput, match="name or a hash"):
            await methods["file_jingle_request"](BOB, str(tmp_path), "", "", "", "", "alice")
        with pytest.raises(InvalidInput, match="base64"):
            await methods["file_jingle_request"](BOB, str(tmp_path), "", "!!", "", "", "alice")
        source = tmp_path / "f.bin"
        source.write_bytes(b"x")
        sent = Sent(stream)
        task = asyncio.ensure_future(
            methods["file_send"](
                BOB, str(source), "renamed.bin", "d", '{"transport": "ibb"}', "alice"
            )
        )
        await until(lambda: stream.transport.value(), "offer sent")
        out = await sent.one()
        assert "<name>renamed.bin</name>" in out and "<desc>d</desc>" in out
        sent.ack()
        result = json.loads(await task)
        assert set(result) == {"progress", "session_id", "transport"}
        assert result["transport"] == "urn:xmpp:jingle:transports:ibb:1"
    finally:
        await host.stop()


@aio
async def test_request_pulls_a_file(tmp_path: Path) -> None:
    """file_jingle_request sends a request (senders='responder', the file selected by name
    and hash); the peer accepts with the size, we open the bytestream (initiator), it sends,
    we check the hash and keep the file."""
    host, client, stream, reactor = await jingle_host(tmp_path)
    sent = Sent(stream)
    content = b"requested!"
    digest = b64encode(hashlib.sha256(content).digest()).decode()
    downloads = tmp_path / "down"
    downloads.mkdir()
    try:
        task = asyncio.ensure_future(
            host.plugins["XEP-0234"].file_jingle_request(
                client, JID(BOB), downloads, "wanted.txt", digest, "sha-256"
            )
        )
        out = await sent.one()
        sid = out.split("sid='")[1].split("'")[0]
        ibb_sid = out.split(f"<transport xmlns='{JIBB}' block-size='4096' sid='")[1][:32]
        assert out == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            f"action='session-initiate' initiator='{ALICE}' sid='{sid}'>"
            "<content creator='initiator' name='0' senders='responder'>"
            f"<description xmlns='{FT}'><file><desc/>"
            "<media-type>application/octet-stream</media-type><name>wanted.txt</name>"
            f"<hash xmlns='{HASHES}' algo='sha-256'>{digest}</hash></file></description>"
            f"<transport xmlns='{JIBB}' block-size='4096' sid='{ibb_sid}'/></content>"
            "</jingle></iq>"
        )
        sent.ack()
        result = await task
        assert result["session_id"] == sid
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-accept' sid='{sid}'>"
                "<content creator='initiator' name='0' senders='responder'>"
                f"<description xmlns='{FT}'><file><name>wanted.txt</name><size>10</size>"
                f"{sha256_el(content)}</file></description>"
                f"<transport xmlns='{JIBB}' block-size='4096' sid='{ibb_sid}'/></content>"
                "</jingle>"
            )
        )
        out = await sent.all()
        assert out == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><open xmlns='{IBB}' block-size='4096' "
            f"sid='{ibb_sid}' stanza='iq'/></iq>",
        ]
        sent.ack(1)
        await settle()
        stream.receive(
            ibb(f"<data xmlns='{IBB}' seq='0' sid='{ibb_sid}'>{b64encode(content).decode()}</data>")
        )
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='{ibb_sid}'/>", "b2"))
        out = await sent.all()
        assert out[:2] == [result_to(), result_to()] and "<received xmlns" in out[2]
        assert (downloads / "wanted.txt").read_bytes() == content
        ((_, meta, _),) = emitted(host, "progress_finished")
        assert json.loads(meta)["hash_verified"] is True
    finally:
        await host.stop()


@aio
async def test_sender_terminating_before_close_keeps_complete_file(tmp_path: Path) -> None:
    """A sender ending the session with success before its bytestream close reached us:
    the data is complete, so it is checked and kept."""
    content = b"0123456789"
    host, client, stream, reactor, sent, downloads = await receiving(
        tmp_path, offer(hash_el=sha256_el(content))
    )
    try:
        stream.receive(data_iq(0, content))
        assert await sent.all() == [result_to()]  # the sender got its ack, and ends
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='s1'>"
                "<reason><success/></reason></jingle>",
                stanza_id="j9",
            )
        )
        await settle()
        assert (downloads / "a.txt").read_bytes() == content
        ((_, meta, _),) = emitted(host, "progress_finished")
        assert json.loads(meta)["hash_verified"] is True
    finally:
        await host.stop()


@aio
async def test_offer_accepted_during_jingle_message_initiation(tmp_path: Path) -> None:
    """When the user already accepted the proposal (XEP-0353 take_accepted), the offer is
    not asked again and the announced progress id is used."""
    from types import SimpleNamespace

    host, client, stream, reactor = await jingle_host(tmp_path)
    downloads = tmp_path / "down"
    taken = []

    class JMI:
        def take_accepted(self, client: Any, session: Any) -> Any:
            """Like XEP_0353.take_accepted: the answer given during the proposal."""
            taken.append(session.sid)
            answer = {"accept": True, "path": str(downloads)}
            return SimpleNamespace(answer=answer, progress_id="jmi-progress", action_id="a1")

    real = host.plugins.instances.get("XEP-0353")
    host.plugins.instances["XEP-0353"] = JMI()
    sent = Sent(stream)
    try:
        stream.receive(offer())
        out = await sent.all()
        assert out[0] == result_to() and "action='session-accept'" in out[1]
        assert taken == ["s1"] and emitted(host, "action_new") == []
        (started,) = emitted(host, "progress_started")
        assert started[0] == "jmi-progress"
    finally:
        if real is not None:
            host.plugins.instances["XEP-0353"] = real
        await host.stop()


@aio
async def test_bare_jid_goes_to_the_best_device(tmp_path: Path) -> None:
    """A bare JID is sent to its available resource of highest priority; without any
    known device it is refused."""
    from libervia.backend.core.exceptions import NotFound

    host, client, stream, reactor = await jingle_host(tmp_path)
    plugin = host.plugins["XEP-0234"]
    try:
        with pytest.raises(NotFound):
            plugin.jingle.resolve_peer(client, JID("bob@localhost"))
        stream.receive(f"<presence from='{BOB}' to='{ALICE}'><priority>5</priority></presence>")
        stream.receive(
            f"<presence from='bob@localhost/pc' to='{ALICE}'><priority>1</priority></presence>"
        )
        await settle()
        assert plugin.jingle.resolve_peer(client, JID("bob@localhost")) == JID(BOB)
        assert plugin.jingle.resolve_peer(client, JID("bob@localhost/pc")) == JID(
            "bob@localhost/pc"
        )
    finally:
        await host.stop()


@aio
async def test_sender_ends_when_receiver_stays_silent(tmp_path: Path) -> None:
    """We offer; the literal peer accepts (lowering the block size), we open IBB and send
    everything; the receiver never ends the session: 60 s later we end it with success,
    the progress finishes without claiming the hash was checked."""
    host, stream, reactor, sent, sid, ibb_sid, out = await ibb_offer_accepted(tmp_path, b"abcdef")
    try:
        assert out[1] == (
            f"<iq type='set' to='{BOB}' id='ID'><open xmlns='{IBB}' block-size='4' "
            f"sid='{ibb_sid}' stanza='iq'/></iq>"
        )
        sent.ack(1)
        for chunk in (b"abcd", b"ef"):
            assert b64encode(chunk).decode() in await sent.one()
            sent.ack()
        assert "<close xmlns" in await sent.one()
        sent.ack()
        await settle()
        reactor.advance(59)  # not yet the wait for the receiver
        assert await sent.all() == []
        reactor.advance(1)  # the receiver stayed silent
        assert "<reason><success/></reason>" in await sent.one()
        ((_, meta, _),) = emitted(host, "progress_finished")
        meta = json.loads(meta)
        assert meta["size"] == 6 and meta["hash_verified"] is False
    finally:
        await host.stop()


@aio
async def test_overwrite_only_when_asked_and_only_on_success(tmp_path: Path) -> None:
    """With overwrite the existing file is replaced once the new one is complete and
    verified; a failed transfer leaves it untouched."""
    content = b"0123456789"
    downloads = tmp_path / "down"
    downloads.mkdir()
    existing = downloads / "a.txt"
    existing.write_bytes(b"old")
    choice = {"accept": True, "path": str(downloads), "overwrite": True}
    (tmp_path / "1").mkdir()
    host, client, stream, reactor, sent, _ = await receiving(
        tmp_path / "1", offer(hash_el=sha256_el(b"something else")), choice
    )
    try:
        stream.receive(data_iq(0, content))
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='ibb1'/>", "b2"))
        await sent.all()
        assert sorted(p.name for p in downloads.iterdir()) == ["a.txt"]
        assert existing.read_bytes() == b"old"
    finally:
        await host.stop()
    (tmp_path / "2").mkdir()
    host, client, stream, reactor, sent, _ = await receiving(
        tmp_path / "2", offer(hash_el=sha256_el(content)), choice
    )
    try:
        stream.receive(data_iq(0, content))
        stream.receive(ibb(f"<close xmlns='{IBB}' sid='ibb1'/>", "b2"))
        await sent.all()
        assert sorted(p.name for p in downloads.iterdir()) == ["a.txt"]
        assert existing.read_bytes() == content
    finally:
        await host.stop()


@aio
async def test_no_room_on_the_disk_refuses_before_any_byte(tmp_path: Path, monkeypatch) -> None:
    """The announced size cannot be reserved on the disk (posix_fallocate: ENOSPC): the
    progress fails saying so, the session is terminated (failed-application) instead of
    accepted, and neither the partial file nor the reserved name are left."""

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    host, client, stream, reactor = await jingle_host(tmp_path)
    try:
        sent = Sent(stream)
        stream.receive(offer(size="123456"))
        await until(lambda: emitted(host, "action_new"), "asked")
        assert await sent.all() == [result_to()]
        (action,) = emitted(host, "action_new")
        downloads = tmp_path / "down"
        host.actions.launch("alice", action[1], {"accept": True, "path": str(downloads)})
        out = await sent.all()
        assert len(out) == 1 and "session-accept" not in out[0]
        assert (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='s1'><reason><failed-application/>"
            "<text>cannot store the file (123.5 kB): No space left on device</text>"
            "</reason></jingle></iq>"
        ) == out[0]
        ((_, error, _),) = emitted(host, "progress_error")
        assert "No space left on device" in error
        assert list(downloads.iterdir()) == []
    finally:
        await host.stop()
