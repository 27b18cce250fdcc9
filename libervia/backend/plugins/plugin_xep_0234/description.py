"""The ``<description/>`` of XEP-0234 (pure: parsing and building, no session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from twisted.words.xish import domish

from libervia.backend.plugins import plugin_xep_0300 as hashes
from libervia.backend.plugins.plugin_xep_0047 import is_decimal
from libervia.backend.plugins.plugin_xep_0166.errors import bad_request

NS_FT = "urn:xmpp:jingle:apps:file-transfer:5"
NS_FT_ERRORS = "urn:xmpp:jingle:apps:file-transfer:errors:0"
NS_S5B = "urn:xmpp:jingle:transports:s5b:1"
#: the largest file we accept to receive (``file_max_size`` option, bytes)
MAX_FILE_SIZE = 1 << 40
MAX_TEXT = 10_000
HASH_ALGO = "sha-256"
#: how long a finished download waits for the sender's checksum (offer with hash-used)
CHECKSUM_TIMEOUT = 30.0
#: how long a sender waits, once every byte is sent, for the receiver to end the session
DONE_TIMEOUT = 60.0
READ_BLOCK = 1 << 16


@dataclass(frozen=True)
class FileInfo:
    """The ``<file/>`` of a description."""

    name: str = ""
    size: int | None = None
    desc: str = ""
    media_type: str = "application/octet-stream"
    date: str = ""
    #: algorithm -> digest (None: hash-used, the digest comes later)
    hashes: dict[str, bytes | None] = field(default_factory=dict)
    range_offset: int | None = None

    def description(self) -> domish.Element:
        """``<description><file>…</file></description>`` (always with a ``<desc/>``)."""
        description = domish.Element((NS_FT, "description"))
        file_el = description.addElement("file")
        if self.date:
            file_el.addElement("date", content=self.date)
        file_el.addElement("desc", content=self.desc)
        file_el.addElement("media-type", content=self.media_type)
        if self.name:
            file_el.addElement("name", content=self.name)
        if self.size is not None:
            file_el.addElement("size", content=str(self.size))
        if self.range_offset is not None:
            file_el.addElement("range")["offset"] = str(self.range_offset)
        for algo, digest in self.hashes.items():
            if digest is None:
                file_el.addChild(hashes.hash_used_element(algo))
            else:
                file_el.addChild(hashes.hash_element(algo, digest))
        return description

    @classmethod
    def parse(cls, description: domish.Element | None, max_size: int = MAX_FILE_SIZE) -> FileInfo:
        """Read a description from a peer.

        Raises:
            JingleError: bad-request for a missing ``<file/>``, a size that is not a
                non-negative integer or is above ``max_size``, a bad range.
        """
        file_el = next(description.elements(NS_FT, "file"), None) if description else None
        if file_el is None:
            raise bad_request("no <file/> in the description")
        values: dict[str, str] = {}
        range_offset = None
        for child in file_el.elements(NS_FT):
            if child.name in ("name", "size", "desc", "media-type", "mediaType", "date"):
                values.setdefault(child.name, str(child).strip()[:MAX_TEXT])
            elif child.name == "range":
                offset = child.getAttribute("offset") or "0"
                if not is_decimal(offset):
                    raise bad_request("invalid range offset")
                range_offset = int(offset)
        size = None
        if "size" in values:
            text = values["size"]
            if not is_decimal(text):
                raise bad_request(f"invalid file size {text[:30]!r}")
            size = int(text)
            if size > max_size:
                raise bad_request(f"file too large ({size} bytes, at most {max_size})")
        return cls(
            name=values.get("name", ""),
            size=size,
            desc=values.get("desc", ""),
            media_type=values.get("media-type") or values.get("mediaType") or cls.media_type,
            date=values.get("date", ""),
            hashes=hashes.parse_hashes(file_el),
            range_offset=range_offset,
        )


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown size"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def hash_file(path: Path, algo: str = HASH_ALGO) -> bytes:
    """The digest of a file (blocking: run it in a thread)."""
    hasher = hashes.new_hasher(algo)
    with path.open("rb") as f:
        while block := f.read(READ_BLOCK):
            hasher.update(block)
    return hasher.digest()
