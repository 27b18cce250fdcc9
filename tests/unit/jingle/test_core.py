"""XEP-0166 core on a fake stream: literal XML in and out, the clock driven by hand."""

from __future__ import annotations

from pathlib import Path

from zope.interface.verify import verifyObject

from libervia.backend.plugins.plugin_xep_0166 import Reason, Role, Senders, State
from libervia.backend.plugins.plugin_xep_0166.interfaces import (
    IJingleApplication,
    IJingleTransport,
)
from tests.conftest import aio
from tests.unit.jingle.helpers import (
    ALICE,
    BOB,
    CAROL,
    NS_APP,
    NS_JINGLE,
    NS_TR,
    NS_TR2,
    App,
    Sent,
    Transport,
    error_to,
    jingle_host,
    jingle_iq,
    no_text,
    result_to,
    settle,
)

INITIATE = (
    f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' initiator='{BOB}' sid='s1'>"
    f"<content creator='initiator' name='c' senders='initiator'>"
    f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content></jingle>"
)


async def setup(tmp_path: Path):
    host, client, stream, reactor = await jingle_host(tmp_path, transports=())
    jingle = host.plugins["XEP-0166"]
    app, transport = App(), Transport()
    jingle.register_application(app)
    jingle.register_transport(transport)
    return host, client, stream, reactor, jingle, app, transport


ACCEPT_OUT = (
    f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' action='session-accept' "
    f"responder='{ALICE}' sid='s1'><content creator='initiator' name='c' senders='initiator'>"
    f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content></jingle></iq>"
)


def terminate(sid: str = "s1", reason: str = "success", sender: str = BOB) -> str:
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='{sid}'>"
        f"<reason><{reason}/></reason></jingle>",
        sender,
    )


def action(name: str, inner: str = "", sid: str = "s1", sender: str = BOB) -> str:
    return jingle_iq(
        f"<jingle xmlns='{NS_JINGLE}' action='{name}' sid='{sid}'>{inner}</jingle>", sender
    )


async def accepted_incoming(tmp_path: Path):
    """A session proposed by BOB and accepted by us (the session-accept acked)."""
    env = await setup(tmp_path)
    host, client, stream, reactor, jingle, app, transport = env
    sent = Sent(stream)
    stream.receive(jingle_iq(INITIATE))
    assert await sent.all() == [result_to(), ACCEPT_OUT]
    sent.ack(1)
    await settle()
    return env, sent


async def outgoing(jingle, client, app, sent, peer: str = BOB, sid: str = "o1"):
    """A session we propose to ``peer`` (one content, senders initiator); not acked yet."""
    from twisted.words.protocols.jabber.jid import JID
    from twisted.words.xish import domish

    session = jingle.create_session(client, JID(peer), sid)
    jingle.add_content(
        session, app, domish.Element((NS_APP, "description")), senders=Senders.INITIATOR
    )
    import asyncio

    task = asyncio.ensure_future(jingle.initiate(client, session))
    out = await sent.one()
    return session, task, out


@aio
async def test_incoming_session_accepted_then_terminated_by_peer(tmp_path: Path) -> None:
    """A proposed session is acked at once, accepted by the application with a literal
    session-accept, its transport started; the peer's terminate ends it and is acked."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        assert app.events == [("initiate", "s1", ["c"])]
        assert transport.events == [("start", "c")]
        session = app.sessions[0]
        assert session.state is State.ACTIVE and session.role is Role.RESPONDER
        stream.receive(terminate())
        assert await sent.all() == [result_to()]
        assert session.state is State.ENDED
        assert app.events[-1] == ("ended", "s1", "success")
        assert ("stop", "c") in transport.events
        # the session is gone: a new request about it is an unknown session
        stream.receive(terminate())
        assert await sent.all() == [error_to("item-not-found", "unknown-session", "cancel")]
    finally:
        await host.stop()


@aio
async def test_outgoing_session_initiate_accept_and_terminate(tmp_path: Path) -> None:
    """initiate sends a literal session-initiate with the best transport; the peer's
    session-accept activates the session and starts the transport; our terminate is sent once
    (idempotent) and later requests get unknown-session."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    low = Transport(NS_TR2, priority=0)
    jingle.register_transport(low)
    try:
        sent = Sent(stream)
        session, task, out = await outgoing(jingle, client, app, sent)
        assert out == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            f"action='session-initiate' initiator='{ALICE}' sid='o1'>"
            "<content creator='initiator' name='0' senders='initiator'>"
            f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content>"
            "</jingle></iq>"
        )
        sent.ack()
        await task
        assert session.state is State.PENDING
        stream.receive(
            action(
                "session-accept",
                "<content creator='initiator' name='0' senders='initiator'>"
                f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content>",
                sid="o1",
            )
        )
        assert await sent.all() == [result_to()]
        assert session.state is State.ACTIVE
        assert app.events == [("accepted", "0")]
        assert transport.events == [("start", "0")] and low.events == []
        import asyncio

        ending = asyncio.ensure_future(jingle.terminate(client, session, Reason.SUCCESS))
        await settle()
        await jingle.terminate(client, session, Reason.CANCEL)  # already ended: nothing
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='o1'><reason><success/></reason></jingle></iq>"
        ]
        sent.ack()
        await ending
        assert app.events[-1] == ("ended", "o1", "success")
        # both terminated at once: the peer's terminate finds no session
        stream.receive(terminate("o1"))
        assert await sent.all() == [error_to("item-not-found", "unknown-session", "cancel")]
    finally:
        await host.stop()


@aio
async def test_unknown_session_and_third_party(tmp_path: Path) -> None:
    """Requests about an unknown sid, or from anybody but the session's peer (same sid,
    other JID, even another resource of the peer), get item-not-found + unknown-session and
    change nothing."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        session = app.sessions[0]
        for request in (
            terminate("nope"),
            terminate(sender=CAROL),
            terminate(sender="bob@localhost/other"),
            action("session-info", sender=CAROL),
            action(
                "transport-info",
                f"<content creator='initiator' name='c'><transport xmlns='{NS_TR}'/></content>",
                sender=CAROL,
            ),
        ):
            stream.receive(request)
            sender = CAROL if CAROL in request else BOB
            if "bob@localhost/other" in request:
                sender = "bob@localhost/other"
            assert await sent.all() == [
                error_to("item-not-found", "unknown-session", "cancel", sender)
            ]
        assert session.state is State.ACTIVE
        assert [e for e in app.events if e[0] == "ended"] == []
    finally:
        await host.stop()


@aio
async def test_out_of_order_and_duplicate_initiate(tmp_path: Path) -> None:
    """session-accept sent to the responder, a second session-initiate with the same sid, a
    content-accept or transport-accept nobody asked for: unexpected-request + out-of-order."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        content = (
            "<content creator='initiator' name='c'>"
            f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content>"
        )
        out_of_order = error_to("unexpected-request", "out-of-order", "wait")
        for request in (
            action("session-accept", content),
            jingle_iq(INITIATE),
            action("content-accept", content),
            action("transport-accept", content),
            action("transport-reject", content),
        ):
            stream.receive(request)
            assert [no_text(x) for x in await sent.all()] == [out_of_order], request
        assert app.sessions[0].state is State.ACTIVE
    finally:
        await host.stop()


@aio
async def test_malformed_requests_are_bad_requests(tmp_path: Path) -> None:
    """No sid, an unknown action, no content, a content without transport, an invalid
    senders value, a description the application refuses: bad-request, no session."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    try:
        sent = Sent(stream)
        desc, tr = f"<description xmlns='{NS_APP}'/>", f"<transport xmlns='{NS_TR}'/>"
        bad = error_to("bad-request", None, "modify")
        for inner in (
            f"<jingle xmlns='{NS_JINGLE}' action='session-initiate'/>",
            f"<jingle xmlns='{NS_JINGLE}' action='session-dance' sid='x'/>",
            f"<jingle xmlns='{NS_JINGLE}' sid='x'/>",
            f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='x'/>",
            f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='x'>"
            f"<content creator='initiator' name='a'>{desc}</content></jingle>",
            f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='x'>"
            f"<content creator='initiator' name='a' senders='all'>{desc}{tr}</content></jingle>",
            f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='x'>"
            f"<content creator='initiator' name='a'><description xmlns='{NS_APP}' bad='1'/>"
            f"{tr}</content></jingle>",
        ):
            stream.receive(jingle_iq(inner))
            out = await sent.all()
            assert len(out) == 1 and out[0].startswith(bad[: bad.index("<bad-request")]), out
        assert jingle.sessions(client) == {}
        # unsupported actions
        stream.receive(jingle_iq(f"<jingle xmlns='{NS_JINGLE}' action='content-modify' sid='x'/>"))
        assert "<feature-not-implemented" in (await sent.all())[0]
    finally:
        await host.stop()


@aio
async def test_unsupported_application_or_transport_terminates(tmp_path: Path) -> None:
    """A session-initiate with an unknown application (or transport) is acked, then
    terminated with unsupported-applications (unsupported-transports)."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    try:
        sent = Sent(stream)
        for desc_ns, tr_ns, reason in (
            ("urn:unknown:app", NS_TR, "unsupported-applications"),
            (NS_APP, "urn:unknown:tr", "unsupported-transports"),
        ):
            stream.receive(
                jingle_iq(
                    f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='u'>"
                    f"<content creator='initiator' name='a'><description xmlns='{desc_ns}'/>"
                    f"<transport xmlns='{tr_ns}'/></content></jingle>"
                )
            )
            assert await sent.all() == [
                result_to(),
                f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
                f"action='session-terminate' sid='u'><reason><{reason}/></reason></jingle></iq>",
            ]
            sent.ack(1)
        assert app.events == []
    finally:
        await host.stop()


@aio
async def test_tie_break(tmp_path: Path) -> None:
    """Both sides propose at once: the peer's initiate with a higher sid loses (conflict +
    tie-break); one with a lower sid wins and is handled normally."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    try:
        sent = Sent(stream)
        app.auto_accept = False
        session, task, _ = await outgoing(jingle, client, app, sent, sid="m")
        sent.ack()
        await task

        def initiate(sid: str) -> str:
            return jingle_iq(INITIATE.replace("sid='s1'", f"sid='{sid}'"))

        stream.receive(initiate("z"))
        assert await sent.all() == [error_to("conflict", "tie-break", "cancel")]
        assert jingle.get_session(client, session.peer, "z") is None
        stream.receive(initiate("a"))
        out = await sent.all()
        assert out[0] == result_to()
        assert app.events[0] == ("initiate", "a", ["c"])
        assert session.state is State.PENDING
    finally:
        await host.stop()


@aio
async def test_session_info(tmp_path: Path) -> None:
    """An empty session-info is a ping (result); a payload the application supports is
    acked and given to it; an unknown payload is feature-not-implemented + unsupported-info."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        stream.receive(action("session-info"))
        assert await sent.all() == [result_to()]
        stream.receive(action("session-info", f"<ringing xmlns='{NS_APP}'/>"))
        assert await sent.all() == [result_to()]
        assert app.events[-1] == ("info", "ringing")
        stream.receive(action("session-info", "<mute xmlns='urn:other'/>"))
        assert await sent.all() == [
            error_to("feature-not-implemented", "unsupported-info", "cancel")
        ]
    finally:
        await host.stop()


@aio
async def test_pending_sessions_time_out(tmp_path: Path) -> None:
    """A session nobody accepts ends with timeout when the clock passes the pending delay,
    ours (session-terminate sent) as well as the peer's (the application never answered)."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    jingle.pending_timeout = 30  # (option jingle_pending_timeout) shorter than keepalive
    try:
        sent = Sent(stream)
        session, task, _ = await outgoing(jingle, client, app, sent)
        sent.ack()
        await task
        reactor.advance(29)  # not yet the pending timer
        assert await sent.all() == []
        reactor.advance(1)  # the pending timer of session o1
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='o1'><reason><timeout/></reason></jingle></iq>"
        ]
        assert session.state is State.ENDED and app.events[-1] == ("ended", "o1", "timeout")
        # the peer's proposal, never answered by the application
        app.on_session_initiate = lambda *a: settle()  # type: ignore[method-assign]
        stream.receive(jingle_iq(INITIATE))
        assert await sent.all() == [result_to()]
        reactor.advance(30)  # the pending timer of session s1
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='s1'><reason><timeout/></reason></jingle></iq>"
        ]
    finally:
        await host.stop()


@aio
async def test_content_name_defaults_to_index(tmp_path: Path) -> None:
    """Contents without a name are named after their index, and answered so."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    try:
        sent = Sent(stream)
        content = f"<content creator='initiator'><description xmlns='{NS_APP}'/>" + (
            f"<transport xmlns='{NS_TR}'/></content>"
        )
        stream.receive(
            jingle_iq(
                f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='n'>"
                f"{content}{content}</jingle>"
            )
        )
        out = await sent.all()
        assert app.events == [("initiate", "n", ["0", "1"])]
        assert "name='0'" in out[1] and "name='1'" in out[1]
    finally:
        await host.stop()


@aio
async def test_content_add_accept_reject_remove(tmp_path: Path) -> None:
    """The peer adds contents (accepted with content-accept, or rejected with content-reject
    by the application; unknown application rejected), removes one; removing the last
    content terminates the session."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        session = app.sessions[0]

        def content(name: str, ns: str = NS_APP, creator: str = "initiator") -> str:
            return (
                f"<content creator='{creator}' name='{name}' senders='initiator'>"
                f"<description xmlns='{ns}'/><transport xmlns='{NS_TR}'/></content>"
            )

        stream.receive(action("content-add", content("d")))
        out = await sent.all()
        assert out == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='content-accept' sid='s1'><content creator='initiator' name='d' "
            f"senders='initiator'><description xmlns='{NS_APP}'/>"
            f"<transport xmlns='{NS_TR}'/></content></jingle></iq>",
        ]
        sent.ack(1)
        await settle()
        assert ("start", "d") in transport.events
        app.accept_contents = False
        stream.receive(action("content-add", content("e")))
        out = await sent.all()
        assert out[1] == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='content-reject' sid='s1'><content creator='initiator' name='e'/>"
            "<reason><decline/></reason></jingle></iq>"
        )
        sent.ack(1)
        stream.receive(action("content-add", content("f", "urn:unknown")))
        out = await sent.all()
        assert "action='content-reject'" in out[1] and "<unsupported-applications/>" in out[1]
        sent.ack(1)
        # a content created by us cannot be added by the peer; an existing name neither
        stream.receive(action("content-add", content("g", creator="responder")))
        assert "<bad-request" in (await sent.all())[0]
        stream.receive(action("content-add", content("d")))
        assert "<bad-request" in (await sent.all())[0]
        # removal
        stream.receive(action("content-remove", "<content creator='initiator' name='d'/>"))
        assert await sent.all() == [result_to()]
        assert ("removed", "d", None) in app.events
        assert set(session.contents) == {(Role.INITIATOR, "c")}
        stream.receive(
            action(
                "content-remove",
                "<content creator='initiator' name='c'/><reason><cancel/></reason>",
            )
        )
        out = await sent.all()
        assert out == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='s1'><reason><cancel/></reason></jingle></iq>",
        ]
        assert session.state is State.ENDED
    finally:
        await host.stop()


@aio
async def test_our_content_add_accepted_and_rejected(tmp_path: Path) -> None:
    """Contents we add to a live session are started on content-accept and dropped on
    content-reject."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    try:
        from twisted.words.xish import domish

        sent = Sent(stream)
        session, task, _ = await outgoing(jingle, client, app, sent)
        sent.ack()
        await task
        stream.receive(
            action(
                "session-accept",
                "<content creator='initiator' name='0'>"
                f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content>",
                sid="o1",
            )
        )
        await sent.all()
        for name in ("x", "y"):
            content = jingle.add_content(
                session, app, domish.Element((NS_APP, "description")), Senders.INITIATOR, name
            )
            import asyncio

            task = asyncio.ensure_future(jingle.content_add(client, session, content))
            assert await sent.all() == [
                f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
                f"action='content-add' sid='o1'><content creator='initiator' name='{name}' "
                f"senders='initiator'><description xmlns='{NS_APP}'/>"
                f"<transport xmlns='{NS_TR}'/></content></jingle></iq>"
            ]
            sent.ack()
            await task
        stream.receive(
            action(
                "content-accept",
                "<content creator='initiator' name='x'>"
                f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content>",
                sid="o1",
            )
        )
        assert await sent.all() == [result_to()]
        assert ("accepted", "x") in app.events and ("start", "x") in transport.events
        stream.receive(
            action("content-reject", "<content creator='initiator' name='y'/>", sid="o1")
        )
        assert await sent.all() == [result_to()]
        assert (Role.INITIATOR, "y") not in session.contents
        assert ("removed", "y", None) in app.events
    finally:
        await host.stop()


@aio
async def test_transport_and_description_info(tmp_path: Path) -> None:
    """transport-info goes to the content's transport, description-info to its application;
    a transport-info about another transport is a bad request."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        stream.receive(
            action(
                "transport-info",
                f"<content creator='initiator' name='c'><transport xmlns='{NS_TR}' v='1'/>"
                "</content>",
            )
        )
        assert await sent.all() == [result_to()]
        assert transport.events[-1] == ("info", "c", "1")
        stream.receive(
            action(
                "description-info",
                f"<content creator='initiator' name='c'><description xmlns='{NS_APP}' v='2'/>"
                "</content>",
            )
        )
        assert await sent.all() == [result_to()]
        assert app.events[-1] == ("description-info", "c", "2")
        stream.receive(
            action(
                "transport-info",
                "<content creator='initiator' name='c'><transport xmlns='urn:x'/></content>",
            )
        )
        assert "<bad-request" in (await sent.all())[0]
        stream.receive(
            action(
                "transport-info",
                f"<content creator='initiator' name='zz'><transport xmlns='{NS_TR}'/></content>",
            )
        )
        assert "<bad-request" in (await sent.all())[0]
    finally:
        await host.stop()


@aio
async def test_fallback_with_transport_replace(tmp_path: Path) -> None:
    """The best transport fails to connect: the initiator replaces it with the next usable
    one (transport-replace), starts it on transport-accept; when the last one is rejected,
    the session ends with failed-transport."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    fallback = Transport(NS_TR2, priority=0)
    jingle.register_transport(fallback)
    transport.fail = True
    try:
        sent = Sent(stream)
        session, task, _ = await outgoing(jingle, client, app, sent)
        sent.ack()
        await task
        stream.receive(
            action(
                "session-accept",
                "<content creator='initiator' name='0'>"
                f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR}'/></content>",
                sid="o1",
            )
        )
        out = await sent.all()
        assert out == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='transport-replace' sid='o1'><content creator='initiator' name='0'>"
            f"<transport xmlns='{NS_TR2}'/></content></jingle></iq>",
        ]
        sent.ack(1)
        stream.receive(
            action(
                "transport-accept",
                f"<content creator='initiator' name='0'><transport xmlns='{NS_TR2}'/></content>",
                sid="o1",
            )
        )
        assert await sent.all() == [result_to()]
        assert fallback.events == [("start", "0")]
        content = session.content(Role.INITIATOR, "0")
        assert content is not None and content.transport is fallback
        # the fallback fails too: nothing left to try
        jingle.transport_failed(client, session, content, RuntimeError("broken"))
        out = await sent.all()
        assert out == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='o1'><reason><failed-transport/>"
            "<text>broken</text></reason></jingle></iq>"
        ]
    finally:
        await host.stop()


@aio
async def test_transport_reject_and_unusable_transports(tmp_path: Path) -> None:
    """An unusable transport is never offered; a rejected replacement with nothing left
    ends the session with failed-transport."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    fallback = Transport(NS_TR2, priority=0)
    jingle.register_transport(fallback)
    transport.usable = False
    try:
        sent = Sent(stream)
        session, task, out = await outgoing(jingle, client, app, sent)
        assert f"<transport xmlns='{NS_TR2}'/>" in out
        sent.ack()
        await task
        stream.receive(
            action(
                "session-accept",
                "<content creator='initiator' name='0'>"
                f"<description xmlns='{NS_APP}'/><transport xmlns='{NS_TR2}'/></content>",
                sid="o1",
            )
        )
        await sent.all()
        content = session.content(Role.INITIATOR, "0")
        transport.usable = True  # usable now, but a replacement is never the one tried
        jingle.transport_failed(client, session, content, RuntimeError("x"))
        out = await sent.all()
        assert "action='transport-replace'" in out[0] and f"xmlns='{NS_TR}'" in out[0]
        sent.ack()
        stream.receive(
            action(
                "transport-reject",
                f"<content creator='initiator' name='0'><transport xmlns='{NS_TR}'/></content>",
                sid="o1",
            )
        )
        out = await sent.all()
        assert out[0] == result_to()
        assert "action='session-terminate'" in out[1] and "<failed-transport/>" in out[1]
    finally:
        await host.stop()


@aio
async def test_incoming_transport_replace(tmp_path: Path) -> None:
    """The initiator replaces the transport: we answer transport-accept and start the new
    one; an unknown transport is answered transport-reject. Our own pending replace loses
    against the initiator's."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    other = Transport(NS_TR2, priority=0)
    jingle.register_transport(other)
    try:
        stream.receive(
            action(
                "transport-replace",
                f"<content creator='initiator' name='c'><transport xmlns='{NS_TR2}'/></content>",
            )
        )
        assert await sent.all() == [
            result_to(),
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='transport-accept' sid='s1'><content creator='initiator' name='c'>"
            f"<transport xmlns='{NS_TR2}'/></content></jingle></iq>",
        ]
        sent.ack(1)
        await settle()
        assert other.events == [("start", "c")] and ("stop", "c") in transport.events
        stream.receive(
            action(
                "transport-replace",
                "<content creator='initiator' name='c'><transport xmlns='urn:x'/></content>",
            )
        )
        out = await sent.all()
        assert out[1] == (
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='transport-reject' sid='s1'><content creator='initiator' name='c'>"
            "<transport xmlns='urn:x'/></content></jingle></iq>"
        )
    finally:
        await host.stop()


@aio
async def test_replace_tie_break_initiator_wins(tmp_path: Path) -> None:
    """Both sides send transport-replace at once: as initiator we answer the responder's
    with conflict + tie-break."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    other = Transport(NS_TR2, priority=0)
    jingle.register_transport(other)
    try:
        sent = Sent(stream)
        session, task, _ = await outgoing(jingle, client, app, sent)
        sent.ack()
        await task
        content = session.content(Role.INITIATOR, "0")
        import asyncio

        replace = asyncio.ensure_future(jingle.replace_transport(client, session, content, other))
        await sent.all()
        stream.receive(
            action(
                "transport-replace",
                f"<content creator='initiator' name='0'><transport xmlns='{NS_TR}'/></content>",
                sid="o1",
            )
        )
        assert await sent.all() == [error_to("conflict", "tie-break", "cancel")]
        sent.raw = []
        replace.cancel()
    finally:
        await host.stop()


@aio
async def test_error_answer_ends_session_locally(tmp_path: Path) -> None:
    """An error answer to our session-initiate ends the session locally (no terminate sent)
    and is raised to the caller."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    try:
        sent = Sent(stream)
        session, task, _ = await outgoing(jingle, client, app, sent)
        from tests.unit.jingle.helpers import iq_id

        stream.receive(
            f"<iq type='error' id='{iq_id(sent.raw[0])}' from='{BOB}'><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        from libervia.backend.core.exceptions import XMPPError

        try:
            await task
        except XMPPError:
            pass
        else:
            raise AssertionError("no error")
        assert session.state is State.ENDED
        assert app.events[-1] == ("ended", "o1", "connectivity-error")
        assert await sent.all() == []
    finally:
        await host.stop()


@aio
async def test_disco_and_interfaces(tmp_path: Path) -> None:
    """Jingle and every registered namespace are announced; the base classes provide the
    documented interfaces."""
    host, client, stream, reactor, jingle, app, transport = await setup(tmp_path)
    try:
        features = host.plugins["XEP-0030"].own_infos()[1]
        assert {NS_JINGLE, NS_APP, NS_TR} <= set(features)
        assert verifyObject(IJingleApplication, app)
        assert verifyObject(IJingleTransport, transport)
    finally:
        await host.stop()


@aio
async def test_peer_going_offline_ends_its_sessions(tmp_path: Path) -> None:
    """The peer's device goes unavailable: 10 s later, with nothing heard from it since,
    its sessions end (gone); a request heard in between keeps the session."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        session = app.sessions[0]
        unavailable = f"<presence type='unavailable' from='{BOB}' to='{ALICE}'/>"
        stream.receive(unavailable)
        reactor.advance(5)
        stream.receive(action("session-info"))  # heard again: still there
        assert await sent.all() == [result_to()]
        reactor.advance(5)  # the first gone timer
        assert await sent.all() == [] and session.state is State.ACTIVE
        stream.receive(unavailable)
        reactor.advance(10)  # the second gone timer
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='s1'><reason><gone/>"
            "<text>the peer went offline</text></reason></jingle></iq>"
        ]
        assert session.state is State.ENDED
    finally:
        await host.stop()


@aio
async def test_disconnecting_tells_the_peers(tmp_path: Path) -> None:
    """The user disconnects the profile: each live session ends with a session-terminate
    (gone) sent before the stream closes, so a peer receiving in-band does not wait forever."""
    (host, client, stream, reactor, jingle, app, transport), sent = await accepted_incoming(
        tmp_path
    )
    try:
        session = app.sessions[0]
        assert host.trigger.point("disconnect_requested", "alice")
        assert await sent.all() == [
            f"<iq type='set' to='{BOB}' id='ID'><jingle xmlns='{NS_JINGLE}' "
            "action='session-terminate' sid='s1'><reason><gone/>"
            "<text>disconnected</text></reason></jingle></iq>"
        ]
        assert session.state is State.ENDED
        assert app.events[-1] == ("ended", "s1", "gone")
        # once ended, nothing more is sent for it
        assert host.trigger.point("disconnect_requested", "alice")
        assert await sent.all() == []
    finally:
        await host.stop()
