"""core.sasl: SCRAM against the RFC test vectors, hostile servers, mechanism choice."""

from __future__ import annotations

import pytest
from twisted.words.protocols.jabber.sasl_mechanisms import ISASLMechanism, Plain
from zope.interface.verify import verifyObject

from libervia.backend.core.sasl import (
    NoAcceptableMechanism,
    SASLError,
    ScramMechanism,
    choose_mechanism,
    saslprep,
)

VECTORS = [
    # RFC 5802 section 5
    (
        "SCRAM-SHA-1",
        "fyko+d2lbbFgONRv9qkxdawL",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    ),
    # RFC 7677 section 3
    (
        "SCRAM-SHA-256",
        "rOprNGfwEbeRWgbNEkqO",
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
]


@pytest.mark.parametrize("name,nonce,server_first,client_final,server_final", VECTORS)
def test_rfc_vectors(
    name: str, nonce: str, server_first: bytes, client_final: bytes, server_final: bytes
) -> None:
    """The exchange reproduces the RFC examples byte for byte and verifies the server."""
    mechanism = ScramMechanism(name, "user", "pencil", nonce=nonce)
    assert verifyObject(ISASLMechanism, mechanism)
    assert mechanism.getInitialResponse() == f"n,,n=user,r={nonce}".encode()
    assert mechanism.getResponse(server_first) == client_final
    mechanism.verify_server_final(server_final)
    assert mechanism.server_verified


def test_wrong_server_signature_and_errors() -> None:
    """A server that does not know the password, or reports an error, is refused."""
    name, nonce, server_first, _, _ = VECTORS[1]
    mechanism = ScramMechanism(name, "user", "pencil", nonce=nonce)
    mechanism.getResponse(server_first)
    with pytest.raises(SASLError, match="signature"):
        mechanism.verify_server_final(b"v=" + b"A" * 44)
    with pytest.raises(SASLError, match="invalid-proof"):
        mechanism.verify_server_final(b"e=invalid-proof")
    assert not mechanism.server_verified


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=othernonce,s=QSXCR+Q6sek8bf92,i=4096",  # does not extend our nonce
        b"r=abc,s=QSXCR+Q6sek8bf92,i=4096",  # exactly our nonce: nothing added by the server
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999",  # iteration bomb
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1",  # too weak
        b"r=abcdef,s=not base64!,i=4096",
        b"r=abcdef,i=4096",
        b"garbage",
        b"\xff\xfe",
        b"m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096",
    ],
)
def test_hostile_server_first(server_first: bytes) -> None:
    """Malformed or dangerous server messages are SASLErrors, never crashes or hangs."""
    mechanism = ScramMechanism("SCRAM-SHA-256", "user", "pencil", nonce="abc")
    with pytest.raises(SASLError):
        mechanism.getResponse(server_first)


def test_username_escaping_and_saslprep() -> None:
    """'=' and ',' are escaped in the user name; SASLprep maps and refuses as RFC 4013 says."""
    mechanism = ScramMechanism("SCRAM-SHA-1", "a=b,c", "x", nonce="n")
    assert mechanism.getInitialResponse() == b"n,,n=a=3Db=2Cc,r=n"
    assert saslprep("I\u00adX") == "IX"  # soft hyphen mapped to nothing
    assert saslprep("\u2168") == "IX"  # NFKC
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space mapped to space
    with pytest.raises(SASLError):
        saslprep("\u0007")  # control character
    with pytest.raises(SASLError):
        saslprep("\u0627\u0031")  # RandALCat must start and end the string


def test_choose_mechanism() -> None:
    """SCRAM-SHA-256 first, then SCRAM-SHA-1; PLAIN only over TLS; else a clear error."""
    assert choose_mechanism(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], "u", "p", True).name == (
        "SCRAM-SHA-256"
    )
    assert choose_mechanism(["PLAIN", "SCRAM-SHA-1"], "u", "p", False).name == "SCRAM-SHA-1"
    assert isinstance(choose_mechanism(["PLAIN"], "u", "p", True), Plain)
    with pytest.raises(NoAcceptableMechanism, match="without TLS"):
        choose_mechanism(["PLAIN"], "u", "p", False)
    with pytest.raises(NoAcceptableMechanism):
        choose_mechanism(["DIGEST-MD5", "X-OAUTH2"], "u", "p", True)
