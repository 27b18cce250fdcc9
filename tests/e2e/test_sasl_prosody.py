"""SASL against a real Prosody: SCRAM with the server's signature checked, over STARTTLS with
a self-signed certificate trusted explicitly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, ssl
from twisted.words.protocols.jabber import client, sasl, xmlstream
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.sasl import SASLInitiatingInitializer, ScramMechanism
from tests.e2e.prosody import DOMAIN, Prosody


class Authenticator(client.XMPPAuthenticator):
    """Twisted's client authenticator with our SASL initializer."""

    sasl_initializer: SASLInitiatingInitializer | None = None

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:  # noqa: N802
        super().associateWithStream(xs)
        self.sasl_initializer = SASLInitiatingInitializer(xs, required=True)
        xs.initializers = [
            self.sasl_initializer if isinstance(init, sasl.SASLInitiatingInitializer) else init
            for init in xs.initializers
        ]


async def login(server: Prosody, jid: str, password: str) -> xmlstream.XmlStream:
    tls = ssl.optionsForClientTLS(
        DOMAIN, trustRoot=ssl.Certificate.loadPEM(server.cert.read_bytes())
    )
    factory = xmlstream.XmlStreamFactory(Authenticator(JID(jid), password, tls))
    done: defer.Deferred[Any] = defer.Deferred()
    factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, done.callback)
    factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, done.errback)
    connector = reactor.connectTCP("127.0.0.1", server.c2s_port, factory)  # type: ignore[attr-defined]
    try:
        return await defer.Deferred.addTimeout(done, 20, reactor)
    except BaseException:
        connector.disconnect()
        raise


def close(xs: xmlstream.XmlStream) -> None:
    xs.sendFooter()
    xs.transport.loseConnection()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_scram_login_verifies_server(prosody: Prosody) -> None:
    """A non-ASCII password logs in with SCRAM over STARTTLS; the server proved it knows the
    password; the stream is bound to our JID."""
    user = f"u{uuid.uuid4().hex[:8]}"
    jid = prosody.adduser(user, "pässwörd ✓")
    xs = await login(prosody, jid, "pässwörd ✓")
    try:
        init = xs.authenticator.sasl_initializer
        assert isinstance(init.mechanism, ScramMechanism)
        assert init.mechanism.name in ("SCRAM-SHA-1", "SCRAM-SHA-256")
        assert init.mechanism.server_verified
        assert xs.authenticator.jid.userhost() == jid
        assert xs.authenticator.jid.resource
        assert xs.transport.TLS
    finally:
        close(xs)


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_wrong_password_is_refused(prosody: Prosody) -> None:
    """A wrong password fails the login with a SASL authentication error."""
    user = f"u{uuid.uuid4().hex[:8]}"
    jid = prosody.adduser(user, "right")
    with pytest.raises(sasl.SASLAuthError):
        await login(prosody, jid, "wrong")
