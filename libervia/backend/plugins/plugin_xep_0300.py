"""XEP-0300: Use of Cryptographic Hash Functions in XMPP.

``<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>base64 of the digest</hash>`` and
``<hash-used xmlns='urn:xmpp:hashes:2' algo='sha-256'/>``, as used by file transfer (XEP-0234):
building and parsing them, choosing the algorithm, and checking a digest against the one a peer
announced. We use sha-256, sha-512, sha3-256 and blake2b-256, by preference; sha-1 is accepted
from peers that offer nothing better, never chosen by us when another is possible.

Libervia 0.9 sends the base64 of the *hex* digest instead of the raw digest:
:func:`digest_matches` accepts both forms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Cryptographic Hash Functions",
    "import_name": "XEP-0300",
    "type": "XEP",
    "protocols": ["XEP-0300"],
    "dependencies": ["XEP-0030"],
    "main": "XEP_0300",
    "handler": False,
    "description": "Hashes of files (XEP-0300): build, parse, choose and check them",
}

NS_HASHES = "urn:xmpp:hashes:2"
NS_HASH_FUNCTION_PREFIX = "urn:xmpp:hash-function-text-names:"

_CONSTRUCTORS: dict[str, Callable[[], Any]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
    "sha3-256": hashlib.sha3_256,
    "blake2b-256": lambda: hashlib.blake2b(digest_size=32),
    "sha-1": lambda: hashlib.sha1(usedforsecurity=False),
}
#: the algorithms we support, by preference (the IANA "Hash Function Textual Names")
ALGOS: tuple[str, ...] = ("sha-256", "sha-512", "sha3-256", "blake2b-256", "sha-1")
#: never chosen by us when another algorithm is possible
WEAK_ALGOS = frozenset({"sha-1"})
#: the longest hash text considered (base64 of a 512-bit hex digest is 172 characters)
MAX_HASH_TEXT = 1024


def new_hasher(algo: str) -> hashlib._Hash:
    """A new hash object for ``algo`` (``update(data)``, ``digest()``).

    Raises:
        InvalidInput: ``algo`` is not one of :data:`ALGOS`.
    """
    try:
        constructor = _CONSTRUCTORS[algo]
    except (KeyError, TypeError):
        raise InvalidInput(f"unsupported hash algorithm {algo!r}") from None
    return constructor()  # type: ignore[no-any-return]


def hash_element(algo: str, digest: bytes) -> domish.Element:
    """``<hash xmlns='urn:xmpp:hashes:2' algo='…'>base64(digest)</hash>`` (the raw digest,
    as the XEP says: not its hex form)."""
    element = domish.Element((NS_HASHES, "hash"))
    element["algo"] = algo
    element.addContent(base64.b64encode(digest).decode("ascii"))
    return element


def hash_used_element(algo: str) -> domish.Element:
    """``<hash-used xmlns='urn:xmpp:hashes:2' algo='…'/>`` (the hash will be sent later)."""
    element = domish.Element((NS_HASHES, "hash-used"))
    element["algo"] = algo
    return element


def parse_hashes(parent: domish.Element) -> dict[str, bytes | None]:
    """The hashes among the direct children of ``parent``: algorithm -> decoded digest.

    ``<hash-used/>`` and empty ``<hash/>`` give None (the algorithm only). Algorithm names are
    lower-cased. A hash without algorithm, with malformed base64 or too long is ignored (and
    logged); when an algorithm has several hashes, the first one counts.
    """
    hashes: dict[str, bytes | None] = {}
    for child in parent.elements():
        if child.uri != NS_HASHES or child.name not in ("hash", "hash-used"):
            continue
        algo = (child.getAttribute("algo") or "").strip().lower()
        if not algo:
            log.warning("XEP-0300 %s without algo ignored", child.name)
            continue
        digest: bytes | None = None
        text = "" if child.name == "hash-used" else str(child).strip()
        if text:
            if len(text) > MAX_HASH_TEXT:
                log.warning("XEP-0300 %s hash of %d characters ignored", algo, len(text))
                continue
            try:
                digest = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                log.warning("XEP-0300 %s hash with malformed base64 ignored: %r", algo, text[:100])
                continue
        if hashes.get(algo) is not None:
            if digest is not None and digest != hashes[algo]:
                log.warning("XEP-0300: several different %s hashes, the first one is used", algo)
            continue
        hashes[algo] = digest
    return hashes


def digest_matches(expected: bytes, digest: bytes) -> bool:
    """Whether ``digest`` (the raw digest we computed) is the one a peer announced.

    ``expected`` is the decoded base64 of the peer's ``<hash/>``: the raw digest (the XEP), or
    the text of its hexadecimal form (Libervia 0.9; either case). Comparisons take constant
    time.
    """
    if not expected or not digest:
        return False
    if len(expected) == len(digest):
        return hmac.compare_digest(expected, digest)
    if len(expected) == 2 * len(digest):
        return hmac.compare_digest(expected.lower(), digest.hex().encode("ascii"))
    return False


def best_algo(algos: Iterable[str]) -> str | None:
    """The algorithm we prefer among ``algos`` (e.g. those a peer offers), None if we support
    none of them. sha-1 is chosen only when nothing else is possible."""
    offered = {algo.strip().lower() for algo in algos if isinstance(algo, str)}
    for algo in ALGOS:
        if algo in offered:
            return algo
    return None


class XEP_0300:  # noqa: N801 - plugin classes are named after their XEP
    """Announces ``urn:xmpp:hashes:2`` and the algorithms of :data:`ALGOS`; the functions of
    this module are also reachable as methods (``host.plugins["XEP-0300"].parse_hashes``)."""

    ALGOS = ALGOS
    new_hasher = staticmethod(new_hasher)
    hash_element = staticmethod(hash_element)
    hash_used_element = staticmethod(hash_used_element)
    parse_hashes = staticmethod(parse_hashes)
    digest_matches = staticmethod(digest_matches)
    best_algo = staticmethod(best_algo)

    def __init__(self, host: Any) -> None:
        self.host = host
        disco = host.plugins["XEP-0030"]
        disco.add_feature(NS_HASHES)
        for algo in ALGOS:
            disco.add_feature(f"{NS_HASH_FUNCTION_PREFIX}{algo}")
