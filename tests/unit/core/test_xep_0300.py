"""XEP-0300 hashes: elements, parsing hostile input, choice of algorithm, digest checks."""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.plugins.plugin_xep_0300 import (
    ALGOS,
    NS_HASHES,
    PLUGIN_INFO,
    XEP_0300,
    best_algo,
    digest_matches,
    hash_element,
    hash_used_element,
    new_hasher,
    parse_hashes,
)
from libervia.backend.tools.xml import parse, serialise
from tests.conftest import aio
from tests.unit.core.fakes import started_host

DATA = b"hello world\n"
SHA256 = hashlib.sha256(DATA).digest()
SHA256_B64 = "qUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc="


def file_element(children: str) -> domish.Element:
    return parse(f"<file xmlns='urn:xmpp:jingle:apps:file-transfer:5'>{children}</file>")


def test_hash_elements_literal_xml() -> None:
    """<hash/> carries the base64 of the raw digest; <hash-used/> only the algorithm."""
    assert base64.b64encode(SHA256).decode() == SHA256_B64
    assert serialise(hash_element("sha-256", SHA256)) == (
        f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{SHA256_B64}</hash>"
    )
    assert serialise(hash_used_element("sha3-256")) == (
        "<hash-used xmlns='urn:xmpp:hashes:2' algo='sha3-256'/>"
    )


def test_hash_element_inside_a_file() -> None:
    """Added to an element of another namespace, the hash keeps its own namespace."""
    file = domish.Element(("urn:xmpp:jingle:apps:file-transfer:5", "file"))
    file.addChild(hash_element("sha-256", SHA256))
    assert serialise(file) == (
        "<file xmlns='urn:xmpp:jingle:apps:file-transfer:5'>"
        f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{SHA256_B64}</hash></file>"
    )
    assert parse_hashes(parse(serialise(file))) == {"sha-256": SHA256}


@pytest.mark.parametrize(
    ("algo", "reference"),
    [
        ("sha-256", hashlib.sha256),
        ("sha-512", hashlib.sha512),
        ("sha3-256", hashlib.sha3_256),
        ("blake2b-256", lambda data: hashlib.blake2b(data, digest_size=32)),
        ("sha-1", hashlib.sha1),
    ],
)
def test_new_hasher(algo: str, reference: Any) -> None:
    """Each supported algorithm computes the standard digest."""
    hasher = new_hasher(algo)
    hasher.update(DATA[:5])
    hasher.update(DATA[5:])
    assert hasher.digest() == reference(DATA).digest()


def test_algos_and_unknown_algorithm() -> None:
    """The supported algorithms, by preference; anything else is refused."""
    assert ALGOS == ("sha-256", "sha-512", "sha3-256", "blake2b-256", "sha-1")
    for algo in ("md5", "SHA256", "", "sha-224", "blake2b-512"):
        with pytest.raises(InvalidInput):
            new_hasher(algo)


def test_parse_hashes() -> None:
    """Hashes and hash-used of the direct children, decoded; the rest ignored."""
    sha512 = hashlib.sha512(DATA).digest()
    file = file_element(
        f"<name>a.txt</name><hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{SHA256_B64}</hash>"
        f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-512'>{base64.b64encode(sha512).decode()}"
        "</hash><hash-used xmlns='urn:xmpp:hashes:2' algo='sha3-256'/>"
        "<hash xmlns='urn:xmpp:hashes:2' algo='blake2b-256'/>"
        "<hash xmlns='urn:xmpp:hashes:1' algo='md5'>AAAA</hash>"
        "<range><hash xmlns='urn:xmpp:hashes:2' algo='sha-1'>AAAA</hash></range>"
    )
    assert parse_hashes(file) == {
        "sha-256": SHA256,
        "sha-512": sha512,
        "sha3-256": None,
        "blake2b-256": None,
    }
    assert parse_hashes(file_element("<name>a</name>")) == {}


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        "qUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc",  # padding missing
        "qUiQ Ty8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc=",  # white space inside
        "qUiQTy8P=R5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc",  # padding not at the end
        "A" * 2000,  # absurdly long
    ],
)
def test_parse_hashes_ignores_malformed_base64(text: str, caplog: pytest.LogCaptureFixture) -> None:
    """A malformed hash is ignored and logged; the others are kept."""
    file = file_element(
        f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-512'>{text}</hash>"
        f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{SHA256_B64}</hash>"
    )
    with caplog.at_level(logging.WARNING):
        assert parse_hashes(file) == {"sha-256": SHA256}
    assert "sha-512" in caplog.text


def test_parse_hashes_lenient_details(caplog: pytest.LogCaptureFixture) -> None:
    """Surrounding white space is tolerated, algorithm names are lower-cased, a hash without
    algorithm is ignored, and the first of several hashes of an algorithm counts."""
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    file = file_element(
        f"<hash xmlns='urn:xmpp:hashes:2' algo='SHA-256'>\n  {SHA256_B64}\n</hash>"
        f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{other}</hash>"
        "<hash-used xmlns='urn:xmpp:hashes:2' algo='sha-256'/>"
        f"<hash xmlns='urn:xmpp:hashes:2'>{SHA256_B64}</hash>"
        "<hash-used xmlns='urn:xmpp:hashes:2' algo='sha-1'/>"
        "<hash xmlns='urn:xmpp:hashes:2' algo='sha-1'>AAAA</hash>"
    )
    with caplog.at_level(logging.WARNING):
        assert parse_hashes(file) == {"sha-256": SHA256, "sha-1": b"\x00\x00\x00"}
    assert "without algo" in caplog.text


def test_best_algo() -> None:
    """Our preference wins; sha-1 only when nothing else is possible; None when nothing is."""
    assert best_algo(["sha-1", "sha-512", "sha-256"]) == "sha-256"
    assert best_algo(["sha-1", "sha-512"]) == "sha-512"
    assert best_algo(["blake2b-256", "sha3-256"]) == "sha3-256"
    assert best_algo(["sha-1", "blake2b-256"]) == "blake2b-256"
    assert best_algo(["sha-1", "md5"]) == "sha-1"
    assert best_algo(["md5", "sha-224"]) is None
    assert best_algo([]) is None
    assert best_algo({"sha-1": None, "SHA-256": b""}) == "sha-256"
    for algo in ALGOS[:-1]:
        assert best_algo(["sha-1", algo]) == algo


def test_digest_matches() -> None:
    """The raw digest (the XEP) and its hex text (Libervia 0.9) match; nothing else does."""
    assert digest_matches(SHA256, SHA256)
    assert digest_matches(SHA256.hex().encode(), SHA256)
    assert digest_matches(SHA256.hex().upper().encode(), SHA256)
    # what Libervia 0.9 sends: base64 of the hex digest, decoded by parse_hashes
    legacy = base64.b64encode(hashlib.sha256(DATA).hexdigest().encode()).decode()
    file = file_element(f"<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>{legacy}</hash>")
    assert digest_matches(parse_hashes(file)["sha-256"] or b"", SHA256)
    other = hashlib.sha256(b"other").digest()
    assert not digest_matches(other, SHA256)
    assert not digest_matches(other.hex().encode(), SHA256)
    assert not digest_matches(SHA256[:-1], SHA256)
    assert not digest_matches(SHA256 + b"\x00", SHA256)
    assert not digest_matches(b"", SHA256)
    assert not digest_matches(SHA256, b"")
    assert not digest_matches(base64.b64encode(SHA256), SHA256)


class FakeDisco:
    def __init__(self) -> None:
        self.features: list[str] = []

    def add_feature(self, feature: str) -> None:
        self.features.append(feature)


class FakeHost:
    def __init__(self) -> None:
        self.plugins: dict[str, Any] = {"XEP-0030": FakeDisco()}


def test_plugin_announces_features() -> None:
    """The plugin announces the namespace and each algorithm, and exposes the functions."""
    assert PLUGIN_INFO["import_name"] == "XEP-0300"
    assert PLUGIN_INFO["dependencies"] == ["XEP-0030"]
    host = FakeHost()
    plugin = XEP_0300(host)
    assert host.plugins["XEP-0030"].features == [
        NS_HASHES,
        "urn:xmpp:hash-function-text-names:sha-256",
        "urn:xmpp:hash-function-text-names:sha-512",
        "urn:xmpp:hash-function-text-names:sha3-256",
        "urn:xmpp:hash-function-text-names:blake2b-256",
        "urn:xmpp:hash-function-text-names:sha-1",
    ]
    assert plugin.best_algo(["sha-1", "sha-256"]) == "sha-256"
    assert plugin.parse_hashes(file_element("")) == {}
    assert plugin.digest_matches(SHA256, SHA256)


@aio
async def test_plugin_loads_in_the_daemon(tmp_path: Path) -> None:
    """The daemon loads the plugin, and its features are in our disco#info."""
    host = await started_host(tmp_path)
    try:
        assert isinstance(host.plugins["XEP-0300"], XEP_0300)
        _, features = host.plugins["XEP-0030"].own_infos()
        assert NS_HASHES in features
        assert "urn:xmpp:hash-function-text-names:sha-256" in features
    finally:
        await host.stop()
