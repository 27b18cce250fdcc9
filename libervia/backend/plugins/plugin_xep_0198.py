"""XEP-0198: Stream Management (acks and resumption).

After resource binding, when the server offers it, stream management is enabled with
resumption (``<enable resume='true'/>``). Both sides then count the stanzas they handle: the
server's ``<r/>`` is answered with ``<a h='received'/>``, and after each stanza we send an
``<r/>`` is asked (at most one outstanding), so that every outgoing stanza stays in a queue
until the server acknowledged it.

When the connection is lost (not asked for, and not closed by the server: a clean close or a
stream error ends the session), the plugin takes the loss over (trigger
``client_lost``) and reconnects the *same* client at once with ``<resume previd h/>`` in place
of resource binding: on ``<resumed h/>``, the stanzas the server did not get are sent again,
and nothing else happens (no roster fetch, no initial presence, no ``disconnected`` signal;
the server re-sends what we missed). While the server cannot be reached, resumption is tried
again (1 s, then doubling up to 15 s) for ``stream_resume_window`` seconds (60, at most the
server's ``max``; option of ``libervia.conf``). When resumption fails (``<failed/>``, e.g. the
server restarted, or the window is over), the loss goes to the host as usual
(``disconnected``, then the ``RECONNECT`` plugin), and the messages the server never
acknowledged are sent again on the next session with their original ids (the receiver can
deduplicate them by ``id`` and ``origin-id``).

Stanzas are counted modulo 2**32 as the XEP says.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import defer, error
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import client as jclient
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import as_future, background
from libervia.backend.core.exceptions import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    LiberviaError,
)
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Stream Management",
    "import_name": "XEP-0198",
    "type": "XEP",
    "protocols": ["XEP-0198"],
    "dependencies": [],
    "main": "XEP_0198",
    "handler": True,
    "description": "Stanza acknowledgements and stream resumption",
}

NS_SM = "urn:xmpp:sm:3"
STANZAS = ("message", "presence", "iq")
#: how long resumption is tried after a loss (at most the server's 'max'), then a fresh session
RESUME_WINDOW = 60.0
#: delays between resumption attempts: 1 s, doubling, at most 15 s
RETRY_FIRST = 1.0
RETRY_MAX = 15.0
MOD = 2**32


def _is_stanza(obj: Any) -> bool:
    return (
        isinstance(obj, domish.Element)
        and obj.name in STANZAS
        and obj.uri in (None, "jabber:client")
    )


class ResumeFailed(ConnectionFailed):
    pass


class SMHandler(XMPPHandler):
    """Stream management of one client (its state survives the client's reconnections)."""

    def __init__(self, plugin: XEP_0198, client: Any) -> None:
        super().__init__()
        self.plugin = plugin
        self.client = client
        self.enabled = False
        self.counting_in = False
        self.session_id: str | None = None
        self.resumable = False
        self.resuming = False
        self.handled_in = 0  # stanzas received since enable (our h)
        self.sent_out = 0  # stanzas sent since enable
        self.unacked: deque[tuple[int, domish.Element]] = deque()
        self.ack_requested = False
        self.resumed_count = 0
        self.resume_h: int | None = None
        self.server_max: float | None = None  # how long the server keeps a lost session
        self.retry: tuple[Any, defer.Deferred[None]] | None = None
        client.authenticator.initializer_hooks.append(self._initializers)

    # --- stream setup ---------------------------------------------------------------------

    def _initializers(self, xs: xmlstream.XmlStream, initializers: list[Any]) -> None:
        if not (self.resuming and self.resumable and self.session_id):
            return
        for index, init in enumerate(initializers):
            if isinstance(init, jclient.BindInitializer):
                initializers.insert(index, ResumeInitializer(xs, self))
                return

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        xs = self.xmlstream
        self._wrap_send(xs)
        xs.addObserver("/*", self._count_in, priority=1000)
        xs.addObserver(f'/r[@xmlns="{NS_SM}"]', self._on_r)
        xs.addObserver(f'/a[@xmlns="{NS_SM}"]', self._on_a)
        xs.addObserver(xmlstream.STREAM_ERROR_EVENT, self._on_stream_error)
        if self.resuming and self.resume_h is not None:
            h, self.resume_h = self.resume_h, None
            self.resuming = False
            self.resumed(h)  # the counts go on
            return
        self.enabled = False
        self.session_id = None
        self.resumable = False
        if (NS_SM, "sm") not in getattr(xs, "features", {}):
            return
        xs.addOnetimeObserver(f'/enabled[@xmlns="{NS_SM}"]', self._on_enabled)
        xs.addOnetimeObserver(f'/failed[@xmlns="{NS_SM}"]', self._on_enable_failed)
        enable = domish.Element((NS_SM, "enable"))
        enable["resume"] = "true"
        xs.send(enable)
        # our sent stanzas are counted from <enable/> on, the received ones from <enabled/>
        # on (XEP-0198 §4)
        self.enabled = True
        self.counting_in = False
        self.handled_in = 0
        self.sent_out = 0
        self.ack_requested = False

    def _wrap_send(self, xs: xmlstream.XmlStream) -> None:
        raw_send = xs.send

        def send(obj: Any) -> None:
            raw_send(obj)
            if self.enabled and _is_stanza(obj) and xs is self.xmlstream:
                self.sent_out = (self.sent_out + 1) % MOD
                self.unacked.append((self.sent_out, obj))
                if not self.ack_requested:
                    self.ack_requested = True
                    raw_send(domish.Element((NS_SM, "r")))

        xs.send = send  # type: ignore[method-assign]

    def _on_enabled(self, element: domish.Element) -> None:
        self.counting_in = True
        self.handled_in = 0
        self.session_id = element.getAttribute("id")
        try:
            self.server_max = float(element.getAttribute("max", "")) or None
        except ValueError:
            self.server_max = None
        self.resumable = element.getAttribute("resume") in ("true", "1") and bool(self.session_id)
        log.info(
            "%s: stream management enabled%s",
            self.client.profile,
            " (resumable)" if self.resumable else "",
        )
        self.plugin.resend_leftovers(self)

    def _on_stream_error(self, reason: Failure) -> None:
        # the server ended the stream on purpose (e.g. system-shutdown, conflict): its session
        # is gone, do not try to resume it
        if self.resumable:
            log.info(
                "%s: stream error (%s): the session will not be resumed",
                self.client.profile,
                getattr(reason.value, "condition", reason.getErrorMessage()),
            )
        self.resumable = False

    def _on_enable_failed(self, element: domish.Element) -> None:
        log.warning("%s: the server refused stream management", self.client.profile)
        self.enabled = False
        self.unacked.clear()  # nothing will acknowledge them

    # --- counting and acks ----------------------------------------------------------------

    def _count_in(self, element: domish.Element) -> None:
        if self.enabled and self.counting_in and _is_stanza(element):
            self.handled_in = (self.handled_in + 1) % MOD

    def _on_r(self, element: domish.Element) -> None:
        element.handled = True
        if self.enabled:
            answer = domish.Element((NS_SM, "a"))
            answer["h"] = str(self.handled_in)
            self.xmlstream.send(answer)

    def _on_a(self, element: domish.Element) -> None:
        element.handled = True
        self.ack_requested = False
        try:
            h = int(element.getAttribute("h", ""))
        except ValueError:
            log.warning("%s: invalid stream management ack %r", self.client.profile, element)
            return
        self.acknowledged(h)
        if self.unacked and self.enabled and self.xmlstream is not None:
            # stanzas sent after the request: ask again
            self.ack_requested = True
            self.xmlstream.send(domish.Element((NS_SM, "r")))

    def acknowledged(self, h: int) -> None:
        """Drop the stanzas the server says it handled (``h`` of ``<a/>`` or ``<resumed/>``)."""
        while self.unacked and (h - self.unacked[0][0]) % MOD < MOD // 2:
            self.unacked.popleft()

    # --- resumption -----------------------------------------------------------------------

    def resumed(self, h: int) -> None:
        """The server resumed our session: send again what it did not get."""
        self.acknowledged(h)
        pending = [element for _, element in self.unacked]
        self.unacked.clear()
        self.sent_out = h
        self.ack_requested = False
        self.resumed_count += 1
        log.info("%s: stream resumed (%d stanza(s) sent again)", self.client.profile, len(pending))
        for element in pending:
            self.xmlstream.send(element)


class ResumeInitializer:
    """Sends ``<resume/>`` instead of binding a resource; removes bind and session on success."""

    def __init__(self, xs: xmlstream.XmlStream, handler: SMHandler) -> None:
        self.xmlstream = xs
        self.handler = handler

    def initialize(self) -> Any:
        xs = self.xmlstream
        if (NS_SM, "sm") not in xs.features:
            raise ResumeFailed("the server no longer offers stream management")
        d: defer.Deferred[None] = defer.Deferred()

        def on_resumed(element: domish.Element) -> None:
            xs.removeObserver(f'/failed[@xmlns="{NS_SM}"]', on_failed)
            try:
                h = int(element.getAttribute("h", ""))
            except ValueError:
                d.errback(ResumeFailed(f"invalid <resumed/>: {element.toXml()}"))
                return
            # no resource binding: the session goes on with its full JID
            xs.initializers[:] = [
                i
                for i in xs.initializers
                if not isinstance(i, jclient.BindInitializer | jclient.SessionInitializer)
            ]
            xs.authenticator.jid = self.handler.client.jid
            self.handler.resume_h = h
            d.callback(None)

        def on_failed(element: domish.Element) -> None:
            xs.removeObserver(f'/resumed[@xmlns="{NS_SM}"]', on_resumed)
            condition = next((c.name for c in element.elements()), "failed")
            d.errback(ResumeFailed(f"the server could not resume the session ({condition})"))

        xs.addOnetimeObserver(f'/resumed[@xmlns="{NS_SM}"]', on_resumed)
        xs.addOnetimeObserver(f'/failed[@xmlns="{NS_SM}"]', on_failed)
        resume = domish.Element((NS_SM, "resume"))
        resume["previd"] = self.handler.session_id or ""
        resume["h"] = str(self.handler.handled_in)
        xs.send(resume)
        return d


class XEP_0198:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.enabled = host.config.get_bool("stream_management", True)
        try:
            self.window = float(host.config.get("stream_resume_window") or RESUME_WINDOW)
        except ValueError:
            raise ConfigError("option stream_resume_window must be a number of seconds") from None
        self.handlers: dict[str, SMHandler] = {}
        # messages a lost session never got acknowledged, resent on the next session
        self.leftovers: dict[str, list[domish.Element]] = {}
        host.trigger.add("client_lost", self._client_lost)

    def get_handler(self, client: Any) -> Any:
        if not self.enabled:
            return None
        handler = SMHandler(self, client)
        self.handlers[client.profile] = handler
        return handler

    def resend_leftovers(self, handler: SMHandler) -> None:
        messages = self.leftovers.pop(handler.client.profile, [])
        if messages:
            log.info(
                "%s: sending again %d message(s) the last session did not get acknowledged",
                handler.client.profile,
                len(messages),
            )
        for element in messages:
            handler.xmlstream.send(element)

    def profile_disconnected(self, client: Any) -> None:
        handler = self.handlers.get(client.profile)
        if handler is None or handler.client is not client:
            return
        if handler.retry is not None:
            # disconnected (by the user, or stopping) between two resumption attempts: wake up
            timer, wakeup = handler.retry
            if timer.active():
                timer.cancel()
                wakeup.callback(None)
        del self.handlers[client.profile]
        if client.close_requested:
            return
        messages = [e for _, e in handler.unacked if e.name == "message"]
        if messages:
            self.leftovers.setdefault(client.profile, []).extend(messages)

    def _client_lost(self, client: Any, reason: Failure) -> bool | None:
        handler = self.handlers.get(client.profile)
        if (
            handler is None
            or handler.client is not client
            or handler.resuming
            or not handler.resumable
            or client.close_requested
            or self.host.is_stopping
        ):
            return None
        if reason.check(error.ConnectionDone):
            # the server closed the stream on purpose (e.g. shutting down): its session ended
            log.info("%s: the server closed the stream: the session is not resumed", client.profile)
            handler.resumable = False
            return None
        handler.resuming = True
        background(self._resume(client, handler, reason), f"resume {client.profile}")
        return False

    async def _resume(self, client: Any, handler: SMHandler, reason: Failure) -> None:
        log.info("%s: connection lost (%s): resuming", client.profile, reason.getErrorMessage())
        clock = client.reactor
        window = min(self.window, handler.server_max or self.window)
        deadline = clock.seconds() + window
        attempt = 0
        while True:
            try:
                await client.connect()
            except Exception as e:
                if client.close_requested or self.host.is_stopping:
                    self._give_up(client, handler, reason, None)
                    return
                delay = min(RETRY_MAX, RETRY_FIRST * 2**attempt)
                retry = isinstance(e, LiberviaError) and not isinstance(
                    e, ResumeFailed | AuthenticationFailed
                )
                if not retry or clock.seconds() + delay > deadline:
                    self._give_up(client, handler, reason, e)
                    return
                log.info(
                    "%s: resumption attempt failed (%s): next one in %g s", client.profile, e, delay
                )
                await self._sleep(handler, delay)
                attempt += 1
                if client.close_requested or self.host.is_stopping:
                    self._give_up(client, handler, reason, None)
                    return
                continue
            return  # resumed (connectionInitialized ended the resumption)

    async def _sleep(self, handler: SMHandler, delay: float) -> None:
        wakeup: defer.Deferred[None] = defer.Deferred()
        handler.retry = (handler.client.reactor.callLater(delay, wakeup.callback, None), wakeup)
        try:
            await as_future(wakeup)
        finally:
            handler.retry = None

    def _give_up(
        self, client: Any, handler: SMHandler, reason: Failure, error: BaseException | None
    ) -> None:
        handler.resuming = False
        handler.resumable = False
        handler.enabled = False
        if error is not None:
            log.info("%s: stream resumption failed: %s", client.profile, error)
        self.host.client_lost(client, reason)
