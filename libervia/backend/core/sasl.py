"""SASL SCRAM (RFC 5802, RFC 7677) for Twisted's XMPP client, and mechanism selection.

Twisted offers PLAIN, DIGEST-MD5 and ANONYMOUS only. :class:`ScramMechanism` implements
SCRAM-SHA-1 and SCRAM-SHA-256 (no channel binding: ``n,,``) with the ``ISASLMechanism``
interface, and checks the server's signature, so that a server which does not know the password
cannot pretend to. :func:`choose_mechanism` prefers SCRAM-SHA-256, then SCRAM-SHA-1, and allows
PLAIN only over TLS. :class:`SASLInitiatingInitializer` plugs both into Twisted's stream
initialisation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

from twisted.internet.interfaces import ISSLTransport
from twisted.words.protocols.jabber import sasl
from twisted.words.protocols.jabber.sasl_mechanisms import ISASLMechanism, Plain
from twisted.words.xish import domish
from zope.interface import implementer

from libervia.backend.core.exceptions import LiberviaError

#: refuse absurd iteration counts from a server (CPU exhaustion)
MAX_ITERATIONS = 1_000_000
MIN_ITERATIONS = 4096
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")


class SASLError(LiberviaError):
    """The SASL exchange failed or the server misbehaved."""


class NoAcceptableMechanism(SASLError):
    pass


def saslprep(text: str) -> str:
    """SASLprep (RFC 4013) of a user name or password.

    Raises:
        SASLError: prohibited characters or bidirectional rule violation.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    normalised = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for c in normalised:
        if any(check(c) for check in prohibited):
            raise SASLError(f"prohibited character {c!r} in credentials")
    if any(stringprep.in_table_d1(c) for c in normalised):
        if any(stringprep.in_table_d2(c) for c in normalised) or not (
            stringprep.in_table_d1(normalised[0]) and stringprep.in_table_d1(normalised[-1])
        ):
            raise SASLError("credentials break the bidirectional text rules")
    return normalised


def _attributes(message: bytes) -> dict[str, str]:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLError("SCRAM message is not UTF-8") from None
    attributes = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise SASLError(f"malformed SCRAM message: {text!r}")
        attributes[key] = value
    return attributes


@implementer(ISASLMechanism)
class ScramMechanism:
    """SCRAM-SHA-1 or SCRAM-SHA-256, client side, without channel binding."""

    def __init__(self, name: str, username: str, password: str, nonce: str | None = None) -> None:
        if name not in HASHES:
            raise SASLError(f"unknown SCRAM mechanism {name!r}")
        self.name = name
        self._hash = HASHES[name]
        self._username = saslprep(username).replace("=", "=3D").replace(",", "=2C")
        self._password = saslprep(password).encode("utf-8")
        self._nonce = nonce or base64.b64encode(os.urandom(24)).decode("ascii")
        self._client_first_bare = f"n={self._username},r={self._nonce}"
        self._server_signature: bytes | None = None
        self.server_verified = False

    def getInitialResponse(self) -> bytes:
        return f"n,,{self._client_first_bare}".encode()

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self._hash).digest()

    def getResponse(self, challenge: bytes) -> bytes:
        """Answer the server-first message; a second call checks the server-final one."""
        if self._server_signature is not None:
            self.verify_server_final(challenge)
            return b""
        attributes = _attributes(challenge)
        if "m" in attributes:
            raise SASLError("unsupported mandatory SCRAM extension")
        try:
            nonce, salt, iterations = attributes["r"], attributes["s"], int(attributes["i"])
            salt_bytes = base64.b64decode(salt, validate=True)
        except (KeyError, ValueError):
            raise SASLError(f"malformed SCRAM server-first message: {challenge!r}") from None
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SASLError("the server's SCRAM nonce does not extend ours")
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise SASLError(f"refusing SCRAM iteration count {iterations}")
        salted = hashlib.pbkdf2_hmac(self._hash, self._password, salt_bytes, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = (
            f"{self._client_first_bare},{challenge.decode('utf-8')},{without_proof}".encode()
        )
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = self._hmac(salted, b"Server Key")
        self._server_signature = self._hmac(server_key, auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode('ascii')}".encode()

    def verify_server_final(self, message: bytes) -> None:
        """Check the server's signature (sent in ``<success/>`` or a last challenge).

        Raises:
            SASLError: an error from the server, or a wrong signature (the server does not
                know the password: it may be an impostor).
        """
        if self._server_signature is None:
            raise SASLError("SCRAM server-final message before the exchange")
        attributes = _attributes(message)
        if "e" in attributes:
            raise SASLError(f"SCRAM authentication failed: {attributes['e']}")
        try:
            signature = base64.b64decode(attributes["v"], validate=True)
        except (KeyError, ValueError):
            raise SASLError("malformed SCRAM server-final message") from None
        if not hmac.compare_digest(signature, self._server_signature):
            raise SASLError("the server's SCRAM signature is wrong: it does not know the password")
        self.server_verified = True


def choose_mechanism(
    offered: list[str], username: str, password: str, tls: bool
) -> ScramMechanism | Plain:
    """The best mechanism the server offers: SCRAM-SHA-256, SCRAM-SHA-1, then PLAIN (TLS only).

    Raises:
        NoAcceptableMechanism: nothing acceptable (PLAIN without TLS is never used).
    """
    for name in PREFERENCE:
        if name not in offered:
            continue
        if name == "PLAIN":
            if tls:
                return Plain(None, saslprep(username), saslprep(password))
            continue
        return ScramMechanism(name, username, password)
    raise NoAcceptableMechanism(
        f"no acceptable SASL mechanism among {offered}"
        + ("" if tls else " (PLAIN is refused without TLS)")
    )


class SASLInitiatingInitializer(sasl.SASLInitiatingInitializer):
    """Twisted's SASL initializer with our mechanism choice and the SCRAM server check."""

    def setMechanism(self) -> None:  # noqa: N802 - Twisted's name
        authenticator = self.xmlstream.authenticator
        tls = ISSLTransport.providedBy(self.xmlstream.transport)
        self.mechanism = choose_mechanism(
            list(sasl.get_mechanisms(self.xmlstream)),
            authenticator.jid.user or "",
            authenticator.password,
            tls,
        )

    def onSuccess(self, success: domish.Element) -> None:  # noqa: N802 - Twisted's name
        if isinstance(self.mechanism, ScramMechanism) and not self.mechanism.server_verified:
            try:
                data = str(success).strip()
                if not data:
                    raise SASLError("the server did not prove that it knows the password")
                self.mechanism.verify_server_final(sasl.fromBase64(data))
            except (SASLError, sasl.SASLIncorrectEncodingError) as e:
                self.xmlstream.removeObserver("/challenge", self.onChallenge)
                self.xmlstream.removeObserver("/failure", self.onFailure)
                self._deferred.errback(e if isinstance(e, SASLError) else SASLError(str(e)))
                return
        super().onSuccess(success)
