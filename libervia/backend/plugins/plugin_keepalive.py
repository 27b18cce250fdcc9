"""Keepalive: a server that stops answering without closing the connection is detected.

When nothing came from the server for ``keepalive_interval`` seconds, the server is pinged
(XEP-0199); without an answer within ``keepalive_timeout`` seconds the connection is dropped,
which the ``RECONNECT`` plugin sees as a loss: the profile reconnects. A stall is thus detected
within ``keepalive_interval + keepalive_timeout`` seconds. Any stanza received counts as
activity, so a busy stream is never pinged; an error answer also proves the server alive.

Options (``libervia.conf``, section ``[DEFAULT]``): ``keepalive_interval`` (60 s; 0 disables)
and ``keepalive_timeout`` (30 s). Time comes from the host's clock.
"""

from __future__ import annotations

from typing import Any

from wokkel.subprotocols import XMPPHandler

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import (
    NotConnected,
    OperationTimeout,
    XMPPError,
)
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Keepalive",
    "import_name": "KEEPALIVE",
    "type": "misc",
    "protocols": [],
    "dependencies": ["XEP-0199"],
    "main": "Keepalive",
    "handler": True,
    "description": "Ping the server when the stream is idle; drop a dead connection",
}

INTERVAL = 60.0
TIMEOUT = 30.0


class Keepalive:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.interval = host.config.get_float("keepalive_interval", INTERVAL, minimum=0)
        self.timeout = host.config.get_float("keepalive_timeout", TIMEOUT, minimum=0) or TIMEOUT

    def get_handler(self, client: Any) -> Any:
        if not self.interval:
            return None
        return KeepaliveHandler(self, client)


class KeepaliveHandler(XMPPHandler):
    """Watches one client's stream."""

    def __init__(self, plugin: Keepalive, client: Any) -> None:
        super().__init__()
        self.plugin = plugin
        self.client = client
        self.last_activity = 0.0
        self._timer: Any = None
        self.pings = 0

    @property
    def _clock(self) -> Any:
        return self.client.reactor

    def connectionInitialized(self) -> None:  # noqa: N802 - wokkel's name
        self.last_activity = self._clock.seconds()
        self.xmlstream.addObserver("/*", self._activity, priority=1000)
        self._schedule(self.plugin.interval)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - wokkel's name
        self._cancel()
        super().connectionLost(reason)

    def _activity(self, _element: Any) -> None:
        self.last_activity = self._clock.seconds()

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self, delay: float) -> None:
        self._cancel()
        self._timer = self._clock.callLater(delay, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self.client.is_connected():
            return
        idle = self._clock.seconds() - self.last_activity
        if idle < self.plugin.interval:
            self._schedule(self.plugin.interval - idle)
            return
        background(self._ping(), f"keepalive {self.client.profile}")

    async def _ping(self) -> None:
        self.pings += 1
        ping = self.plugin.host.plugins["XEP-0199"]
        try:
            await ping.ping(self.client, None, self.plugin.timeout)
        except OperationTimeout:
            log.warning(
                "%s: the server did not answer a ping within %g s: dropping the connection",
                self.client.profile,
                self.plugin.timeout,
            )
            self.client.drop_connection()
            return
        except NotConnected:
            return
        except XMPPError as e:
            log.debug("%s: keepalive ping answered %s (alive)", self.client.profile, e)
        if self.client.is_connected() and self.xmlstream is not None:
            self._schedule(self.plugin.interval)
