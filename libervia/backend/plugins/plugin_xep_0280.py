"""XEP-0280: Message Carbons.

Carbons are enabled at each connection when our server supports them: the messages that our
other devices send or receive then come to us too, wrapped in ``<sent/>`` or ``<received/>``
(with a XEP-0297 ``<forwarded/>``). The forwarded message goes through the normal
``message_received`` flow (ids, delay...) and is stored with its own direction (a sent carbon:
from our other resource to the peer), then ``message_new`` is emitted; the stanza/origin ids
make sure a message already known (sent by us, received twice, or caught up from the archive)
is not stored again.

Only our own server may send carbons: the wrapper must come from our bare JID. Anyone else can
send a message looking like a carbon (to make us store a message "sent" by us, or "received"
from a third party); such forged carbons are ignored and logged.
"""

from __future__ import annotations

from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import LiberviaError, NotConnected
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import make_iq

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Message Carbons",
    "import_name": "XEP-0280",
    "type": "XEP",
    "protocols": ["XEP-0280"],
    "dependencies": ["XEP-0030", "XEP-0297"],
    "recommendations": ["XEP-0359"],
    "main": "XEP_0280",
    "handler": False,
    "description": "Messages sent and received by the other devices of the account",
}

NS_CARBONS = "urn:xmpp:carbons:2"
#: before the XEP-0359 (100) and XEP-0203 (90) callbacks: the wrapper is consumed here
TRIGGER_PRIORITY = 900
#: client.extra key: True when carbons are enabled for the session
ENABLED_KEY = "XEP-0280_enabled"
#: client.extra key: the task enabling carbons at connection
TASK_KEY = "XEP-0280_start"


class XEP_0280:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        host.plugins["XEP-0030"].add_feature(NS_CARBONS)
        host.trigger.add("message_received", self._on_received, priority=TRIGGER_PRIORITY)

    def profile_connected(self, client: Any) -> None:
        # in the background: the connection is not delayed by the server's answers
        client.extra[ENABLED_KEY] = False
        client.extra[TASK_KEY] = background(self.start(client), f"carbons {client.profile}")

    async def start(self, client: Any) -> None:
        """Enable carbons if our server has them (never raises: failures are logged)."""
        try:
            if not await self.host.plugins["XEP-0030"].has_feature(client, NS_CARBONS):
                log.info("%s: the server does not support carbons", client.profile)
                return
            await self.enable(client)
        except NotConnected as e:
            log.info("%s: carbons not enabled: %s", client.profile, e)
        except LiberviaError as e:
            log.warning("%s: carbons not enabled: %s", client.profile, e)

    async def enable(self, client: Any) -> None:
        """Ask our server for carbons (raises XMPPError, OperationTimeout, NotConnected)."""
        iq = make_iq("set")
        iq.addElement((NS_CARBONS, "enable"))
        await client.send_iq(iq)
        client.extra[ENABLED_KEY] = True
        log.debug("%s: carbons enabled", client.profile)

    async def _on_received(self, client: Any, element: domish.Element, message: Any) -> bool:
        wrapper = next(
            (
                c
                for c in element.elements()
                if c.uri == NS_CARBONS and c.name in ("sent", "received")
            ),
            None,
        )
        if wrapper is None:
            return True
        # from here on the stanza is a carbon (real or not): never a message of its own
        own = client.jid.userhost()
        sender = element.getAttribute("from")
        if element.parent is not None:
            log.warning("%s: ignoring a carbon inside a forwarded message", client.profile)
            return False
        # no 'from' is from our account (RFC 6120 §8.1.2.1): only the server can send that
        if sender is not None and sender != own:
            log.warning("%s: ignoring a forged carbon from %s", client.profile, sender)
            return False
        inner = self.host.plugins["XEP-0297"].forwarded_message(wrapper)
        if inner is None:
            log.warning("%s: ignoring a carbon without forwarded message", client.profile)
            return False
        await self.handle_carbon(client, wrapper.name, inner)
        return False

    async def handle_carbon(self, client: Any, kind: str, inner: domish.Element) -> bool:
        """Store a carbon's forwarded message (``kind``: "sent" or "received"); True if new."""
        own = client.jid.userhost()
        # the account side of the forwarded message must be ours
        side = "from" if kind == "sent" else "to"
        value = inner.getAttribute(side)
        if value is not None:
            try:
                ours = JID(value).userhost() == own
            except Exception:
                ours = False
            if not ours:
                log.warning(
                    "%s: ignoring a %s carbon whose %r is %s", client.profile, kind, side, value
                )
                return False
        msg = await self.host.messages.process(client, inner)
        if msg is None or str(msg.type) == "error" or (not msg.message and not msg.subject):
            return False
        msg.extra["carbon"] = kind
        try:
            return bool(await self.host.messages.store_and_signal(client, msg))
        except Exception:
            log.exception("%s: a carbon could not be stored", client.profile)
            return False
