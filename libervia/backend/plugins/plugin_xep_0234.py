"""XEP-0234: Jingle File Transfer (``urn:xmpp:jingle:apps:file-transfer:5``).

Sending (:meth:`XEP_0234.file_send`): the file's sha-256 is computed first and sent in the
offer (session-initiate, ``senders='initiator'``, always with a ``<desc/>``: Libervia 0.9
refuses offers without one); once the peer accepts, the transport reads the file; the
receiver ends the session (``success``).

Receiving: an offer is checked (size present and sane, name, hashes) before it is
acknowledged, then the user is asked through ``host.actions`` (``action_new``, type
``file``); the answer chooses the directory (default: the ``download_dir`` option, else
``<local_dir>/downloads``). The peer's name is only a hint: the file is created with
:func:`~libervia.backend.tools.filenames.create_exclusive` (sanitised name, never
overwriting unless the user asked so; the new empty file reserves the name), the data goes
to its :func:`~libervia.backend.tools.filenames.partial_path` and is renamed over it once
complete and verified. More bytes than announced: the session ends with ``media-error`` +
``<file-too-large/>``; a wrong hash or a short file: the session ends with an error, and
neither the partial data nor the reserved name are kept. On success we send the
``<received/>`` session-info, then session-terminate ``success``. A refusal ends the session
with ``decline``. Progress is reported through ``host.progress`` (metadata in the issue 8
contract, section D).

An offer the user already accepted during a Jingle Message Initiation proposal (XEP-0353,
``take_accepted``) is not asked again; the progress id announced then is used.

``checksum`` session-infos (the hash sent after the offer, with ``<hash-used/>``) and
``received`` are understood. :meth:`XEP_0234.file_jingle_request` pulls a file the peer has
(a request: ``senders='responder'``, the file selected by name and/or hash); requests from
peers are answered with ``failed-application`` + ``<file-not-available/>``: we share no
files yet.

Bridge methods: ``file_send`` and ``file_jingle_request``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import mimetypes
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import (
    ActionCancelled,
    InvalidInput,
    LiberviaError,
    NotFound,
)
from libervia.backend.core.log import get_logger
from libervia.backend.core.xmpp import parse_jid_arg
from libervia.backend.plugins import plugin_xep_0300 as hashes
from libervia.backend.plugins.plugin_xep_0166 import (
    BaseApplicationHandler,
    Content,
    Reason,
    Senders,
    Session,
)
from libervia.backend.plugins.plugin_xep_0166.elements import ReasonElement
from libervia.backend.plugins.plugin_xep_0166.errors import bad_request
from libervia.backend.plugins.plugin_xep_0261 import NS_JINGLE_IBB
from libervia.backend.tools.filenames import create_exclusive, partial_path, safe_file_name
from libervia.backend.tools.ids import time_ordered_uuid

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle File Transfer",
    "import_name": "XEP-0234",
    "type": "XEP",
    "protocols": ["XEP-0234"],
    "dependencies": ["XEP-0166", "XEP-0300", "XEP-0261"],
    "recommendations": ["XEP-0353"],
    "main": "XEP_0234",
    "handler": False,
    "description": "Send and receive files over Jingle",
}

NS_FT = "urn:xmpp:jingle:apps:file-transfer:5"
NS_FT_ERRORS = "urn:xmpp:jingle:apps:file-transfer:errors:0"
NS_S5B = "urn:xmpp:jingle:transports:s5b:1"
TRANSPORTS = {"auto": None, "ibb": NS_JINGLE_IBB, "s5b": NS_S5B}
#: the largest file we accept to receive (``file_max_size`` option, bytes)
MAX_FILE_SIZE = 1 << 40
MAX_TEXT = 10_000
HASH_ALGO = "sha-256"
#: how long a finished download waits for the sender's checksum (offer with hash-used)
CHECKSUM_TIMEOUT = 30.0
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
                if not offset.isdigit():
                    raise bad_request("invalid range offset")
                range_offset = int(offset)
        size = None
        if "size" in values:
            text = values["size"]
            if not text.isdigit() or len(text) > 20:
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


class TooMuchData(LiberviaError):
    """The peer sent more bytes than the size it announced."""


@dataclass(eq=False)
class Transfer:
    """One file of a session (``content.app_data``)."""

    direction: str  # "in" | "out"
    info: FileInfo
    progress_id: str
    started: float
    #: the file read (out) or the final path (in)
    path: Path | None = None
    partial: Path | None = None
    #: the file reserved by create_exclusive (removed on failure)
    reserved: bool = False
    file: BinaryIO | None = None
    position: int = 0
    hash_algo: str | None = None
    hasher: Any = None
    expected: bytes | None = None
    action: Any = None
    progress_added: bool = False
    #: all the data moved (in: received and closed; out: sent)
    data_done: bool = False
    #: the end was reported (progress finished or failed)
    over: bool = False
    hash_verified: bool = False
    received_confirmed: bool = False
    checksum_timer: Any = None

    def position_getter(self) -> dict[str, int]:
        return {"position": self.position, "size": self.info.size or 0}


class FileSource:
    """The ByteSource of a file we send."""

    def __init__(self, app: FileTransfer, client: Any, session: Session, content: Content):
        self.app, self.client, self.session, self.content = app, client, session, content
        self.transfer: Transfer = content.app_data

    async def read(self, size: int) -> bytes:
        transfer = self.transfer
        if transfer.file is None:
            return b""
        data = transfer.file.read(size)
        transfer.position += len(data)
        return data

    def close(self, error: BaseException | None = None) -> None:
        transfer = self.transfer
        if transfer.file is not None:
            transfer.file.close()
            transfer.file = None
        if error is None:
            transfer.data_done = True  # the receiver ends the session
            return
        self.app.fail(self.client, self.session, self.content, Reason.CONNECTIVITY_ERROR, error)


class FileSink:
    """The ByteSink of a file we receive: size limit, hash, partial file."""

    def __init__(self, app: FileTransfer, client: Any, session: Session, content: Content):
        self.app, self.client, self.session, self.content = app, client, session, content
        self.transfer: Transfer = content.app_data

    async def write(self, data: bytes) -> None:
        transfer = self.transfer
        if transfer.over or transfer.file is None:
            raise TooMuchData("the transfer is over")
        size = transfer.info.size
        limit = size if size is not None else self.app.plugin.max_size
        if transfer.position + len(data) > limit:
            error = TooMuchData(f"more than the {limit} bytes announced or allowed")
            extra = domish.Element((NS_FT_ERRORS, "file-too-large"))
            self.app.fail(self.client, self.session, self.content, Reason.MEDIA_ERROR, error, extra)
            raise error
        transfer.file.write(data)
        if transfer.hasher is not None:
            transfer.hasher.update(data)
        transfer.position += len(data)

    def close(self, error: BaseException | None = None) -> None:
        transfer = self.transfer
        if transfer.over:
            return
        if error is not None:
            self.app.fail(self.client, self.session, self.content, Reason.FAILED_TRANSPORT, error)
            return
        transfer.data_done = True
        size = transfer.info.size
        if size is not None and transfer.position != size:
            error = LiberviaError(f"received {transfer.position} of {size} bytes")
            self.app.fail(self.client, self.session, self.content, Reason.MEDIA_ERROR, error)
            return
        self.app.verify(self.client, self.session, self.content)


class FileTransfer(BaseApplicationHandler):
    """The Jingle application of XEP-0234."""

    namespace = NS_FT

    def __init__(self, plugin: XEP_0234) -> None:
        self.plugin = plugin
        self.host = plugin.host

    # --- parsing ----------------------------------------------------------------------------

    def parse_description(
        self, client: Any, session: Session, content: Content, description: domish.Element
    ) -> None:
        if content.senders not in (Senders.INITIATOR, Senders.RESPONDER):
            raise bad_request("senders must be initiator or responder")
        info = FileInfo.parse(description, self.plugin.max_size)
        offer = content.senders.value == content.creator.value
        if offer and info.size is None:
            raise bad_request("an offer needs the file size")
        direction = "in" if content.peer_sends(session) else "out"
        content.app_data = Transfer(direction, info, time_ordered_uuid(), self._now(client))

    def parse_accept(
        self, client: Any, session: Session, content: Content, description: domish.Element | None
    ) -> None:
        if description is None:
            return
        transfer: Transfer = content.app_data
        info = FileInfo.parse(description, self.plugin.max_size)
        if transfer.direction == "in":  # our request: the answer tells the size (and hash)
            self._learn(transfer, info)
            return
        if info.range_offset is not None and transfer.info.size is not None:
            if info.range_offset > transfer.info.size:
                raise bad_request("range beyond the end of the file")
            transfer.position = info.range_offset

    @staticmethod
    def _learn(transfer: Transfer, info: FileInfo) -> None:
        """Complete what we know of a file we asked for with the sender's description."""
        known = {a: d for a, d in transfer.info.hashes.items() if d is not None}
        for algo, digest in info.hashes.items():
            if digest is not None and known.get(algo, digest) != digest:
                raise bad_request(f"the {algo} hash is not the one asked for")
        merged = {**info.hashes, **transfer.info.hashes}
        transfer.info = replace(
            transfer.info,
            size=info.size,
            name=transfer.info.name or info.name,
            desc=info.desc,
            media_type=info.media_type,
            date=info.date,
            hashes=merged,
        )
        if transfer.hasher is None:
            algo = hashes.best_algo(merged)
            if algo is not None:
                transfer.hash_algo = algo
                transfer.hasher = hashes.new_hasher(algo)
        if transfer.hash_algo is not None and transfer.expected is None:
            transfer.expected = merged.get(transfer.hash_algo)

    def session_info_supported(self, payload: domish.Element) -> bool:
        return payload.uri == NS_FT and payload.name in ("received", "checksum")

    @staticmethod
    def _now(client: Any) -> float:
        return float(client.reactor.seconds())

    # --- receiving --------------------------------------------------------------------------

    async def on_session_initiate(
        self, client: Any, session: Session, contents: list[Content]
    ) -> None:
        if len(contents) != 1:
            await self.jingle.terminate(
                client, session, Reason.FAILED_APPLICATION, "one file per session"
            )
            return
        (content,) = contents
        transfer: Transfer = content.app_data
        if transfer.direction == "out":  # a request for one of our files: we share none
            await self.jingle.terminate(
                client,
                session,
                Reason.FAILED_APPLICATION,
                extra=domish.Element((NS_FT_ERRORS, "file-not-available")),
            )
            return
        answer = self._pre_accepted(client, session, transfer)
        if answer is None:
            data = self.action_data(client, session, content)
            transfer.action = self.host.actions.new(client, data)
            try:
                answer = await transfer.action.answer
            except ActionCancelled:
                return
        if session.is_ended:
            return
        if not isinstance(answer, dict) or not answer.get("accept"):
            await self.jingle.terminate(client, session, Reason.DECLINE)
            return
        try:
            self._prepare_file(transfer, answer)
        except (OSError, InvalidInput) as e:
            log.warning("cannot save the file of session %s: %s", session.sid, e)
            await self.jingle.terminate(client, session, Reason.FAILED_APPLICATION, str(e))
            return
        content.sink = FileSink(self, client, session, content)
        self._add_progress(client, session, transfer)
        await self.jingle.accept(client, session)

    def _pre_accepted(
        self, client: Any, session: Session, transfer: Transfer
    ) -> dict[str, Any] | None:
        """The answer the user gave during a Jingle Message Initiation proposal (XEP-0353)
        of this session, if any: the user is not asked twice, and the progress id announced
        then is used."""
        if "XEP-0353" not in self.host.plugins:
            return None
        accepted = self.host.plugins["XEP-0353"].take_accepted(client, session)
        if accepted is None:
            return None
        if accepted.progress_id:
            transfer.progress_id = accepted.progress_id
        return dict(accepted.answer)

    def action_data(self, client: Any, session: Session, content: Content) -> dict[str, Any]:
        """The ``action_new`` data of an offer (contract section D)."""
        transfer: Transfer = content.app_data
        info = transfer.info
        peer = session.peer
        in_roster = client.roster is not None and client.roster.get(peer) is not None
        name = info.name or "a file"
        message = f'{peer.userhost()} wants to send you "{name}" ({human_size(info.size)})'
        if info.desc:
            message += f": {info.desc}"
        if not in_roster:
            message += " (not in your contacts)"
        return {
            "type": "file",
            "subtype": "jingle",
            "from_jid": peer.full(),
            "session_id": session.sid,
            "progress_id": transfer.progress_id,
            "in_roster": in_roster,
            "file": {
                "name": info.name,
                "size": info.size,
                "desc": info.desc,
                "media_type": info.media_type,
                "date": info.date,
                "hash_algo": hashes.best_algo(info.hashes) or "",
            },
            "message": message,
        }

    def _prepare_file(
        self, transfer: Transfer, answer: dict[str, Any], save_as: str | None = None
    ) -> None:
        """Reserve the final name and open the partial file (the user accepted)."""
        directory_value = answer.get("path") or ""
        if not isinstance(directory_value, str):
            raise InvalidInput("path must be a directory path")
        directory = Path(directory_value).expanduser() if directory_value else None
        directory = directory or self.plugin.download_dir
        directory.mkdir(parents=True, exist_ok=True)
        name = save_as or transfer.info.name or "file"
        if answer.get("overwrite") is True:
            final = directory / safe_file_name(name)
        else:
            final, placeholder = create_exclusive(directory, name)
            placeholder.close()
            transfer.reserved = True
        transfer.path = final
        transfer.partial = partial_path(final)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        transfer.file = os.fdopen(os.open(transfer.partial, flags, 0o600), "wb")
        algo = hashes.best_algo(transfer.info.hashes)
        if algo is not None:
            transfer.hash_algo = algo
            transfer.hasher = hashes.new_hasher(algo)
            transfer.expected = transfer.info.hashes[algo]

    def _add_progress(self, client: Any, session: Session, transfer: Transfer) -> None:
        path = transfer.path if transfer.path is not None else ""
        self.host.progress.add(
            client,
            transfer.progress_id,
            transfer.position_getter,
            {
                "type": "file",
                "direction": transfer.direction,
                "peer": session.peer.full(),
                "name": transfer.info.name,
                "size": transfer.info.size,
                "session_id": session.sid,
                "path": str(path),
            },
        )
        transfer.progress_added = True

    def verify(self, client: Any, session: Session, content: Content) -> None:
        """All the data arrived: check the hash (or wait for the checksum), then finish."""
        transfer: Transfer = content.app_data
        if transfer.hasher is not None and transfer.expected is None:
            transfer.checksum_timer = client.reactor.callLater(
                CHECKSUM_TIMEOUT, self._no_checksum, client, session, content
            )
            return
        self._check_and_finish(client, session, content)

    def _no_checksum(self, client: Any, session: Session, content: Content) -> None:
        transfer: Transfer = content.app_data
        transfer.checksum_timer = None
        transfer.hasher = None  # nothing to compare with: not verified
        self._check_and_finish(client, session, content)

    def _check_and_finish(
        self, client: Any, session: Session, content: Content, notify: bool = True
    ) -> None:
        """Check the hash, keep the file, then (``notify``) tell the peer and end."""
        transfer: Transfer = content.app_data
        if transfer.over or (notify and session.is_ended):
            return
        if transfer.hasher is not None and transfer.expected is not None:
            if not hashes.digest_matches(transfer.expected, transfer.hasher.digest()):
                error = LiberviaError(f"the {transfer.hash_algo} hash of the file is wrong")
                self.fail(client, session, content, Reason.MEDIA_ERROR, error)
                return
            transfer.hash_verified = True
        try:
            assert transfer.file is not None and transfer.partial and transfer.path
            transfer.file.close()
            transfer.file = None
            os.replace(transfer.partial, transfer.path)
        except OSError as e:
            self.fail(client, session, content, Reason.FAILED_APPLICATION, e)
            return
        transfer.reserved = False
        self._finish(client, session, transfer)
        if not notify:
            return
        received = domish.Element((NS_FT, "received"))
        received["creator"] = content.creator.value
        received["name"] = content.name
        background(self._end(client, session, received), f"file received {session.sid}")

    async def _end(self, client: Any, session: Session, received: domish.Element) -> None:
        try:
            await self.jingle.session_info(client, session, received)
        except LiberviaError as e:
            log.info("received of %s not acknowledged: %s", session.sid, e)
        await self.jingle.terminate(client, session, Reason.SUCCESS)

    def _finish(self, client: Any, session: Session, transfer: Transfer) -> None:
        transfer.over = True
        if not transfer.progress_added:
            return
        self.host.progress.finish(
            client,
            transfer.progress_id,
            {
                "size": transfer.position,
                "path": str(transfer.path or ""),
                "hash_algo": transfer.hash_algo or "",
                "hash_verified": transfer.hash_verified,
                "duration": max(0.0, self._now(client) - transfer.started),
            },
        )

    def fail(
        self,
        client: Any,
        session: Session,
        content: Content,
        reason: Reason,
        error: BaseException,
        extra: domish.Element | None = None,
    ) -> None:
        """The transfer failed: report it, drop the partial data, end the session."""
        transfer: Transfer = content.app_data
        if transfer.over:
            return
        self._abandon(client, transfer, str(error) or type(error).__name__)
        background(
            self.jingle.terminate(client, session, reason, str(error) or None, extra),
            f"file transfer failed {session.sid}",
        )

    def _abandon(self, client: Any, transfer: Transfer, error: str) -> None:
        """Report a failure and remove what we wrote (the partial file, the reserved name)."""
        transfer.over = True
        if transfer.checksum_timer is not None and transfer.checksum_timer.active():
            transfer.checksum_timer.cancel()
        if transfer.action is not None and transfer.action.pending:
            transfer.action.cancel(error)
        if transfer.file is not None:
            transfer.file.close()
            transfer.file = None
        if transfer.direction == "in":
            for path, wanted in ((transfer.partial, True), (transfer.path, transfer.reserved)):
                if path is not None and wanted:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as e:
                        log.warning("cannot remove %s: %s", path, e)
        if transfer.progress_added:
            self.host.progress.fail(client, transfer.progress_id, error)

    # --- session events ---------------------------------------------------------------------

    async def on_session_info(self, client: Any, session: Session, payload: domish.Element) -> None:
        content = self._content_of(session, payload)
        if content is None:
            return
        transfer: Transfer = content.app_data
        if payload.name == "received":
            transfer.received_confirmed = True
            return
        file_el = next(payload.elements(NS_FT, "file"), None)
        if file_el is None:
            return
        received_hashes = {a: d for a, d in hashes.parse_hashes(file_el).items() if d}
        if transfer.hash_algo is None or transfer.hash_algo not in received_hashes:
            return
        transfer.expected = received_hashes[transfer.hash_algo]
        if transfer.checksum_timer is not None:  # the data is there, waiting for this
            if transfer.checksum_timer.active():
                transfer.checksum_timer.cancel()
            transfer.checksum_timer = None
            self._check_and_finish(client, session, content)

    @staticmethod
    def _content_of(session: Session, payload: domish.Element) -> Content | None:
        """The content a received/checksum is about (creator/name may be missing)."""
        ours = [c for c in session.contents.values() if isinstance(c.app_data, Transfer)]
        name = payload.getAttribute("name")
        creator = payload.getAttribute("creator")
        for content in ours:
            if (name is None or content.name == name) and (
                creator is None or content.creator.value == creator
            ):
                return content
        return None

    async def on_accepted(self, client: Any, session: Session, content: Content) -> None:
        transfer: Transfer = content.app_data
        if transfer.direction == "out":
            assert transfer.path is not None
            transfer.file = transfer.path.open("rb")
            if transfer.position:
                transfer.file.seek(transfer.position)
            content.source = FileSource(self, client, session, content)

    def on_content_removed(
        self, client: Any, session: Session, content: Content, reason: ReasonElement | None
    ) -> None:
        transfer = content.app_data
        if isinstance(transfer, Transfer) and not transfer.over:
            condition = reason.condition.value if reason else "removed"
            self._abandon(client, transfer, f"the file was removed by the peer ({condition})")

    def on_session_ended(self, client: Any, session: Session, reason: ReasonElement) -> None:
        for content in session.contents.values():
            transfer = content.app_data
            if not isinstance(transfer, Transfer) or transfer.over:
                continue
            size = transfer.info.size
            complete = transfer.data_done or (size is not None and transfer.position >= size)
            if reason.condition is Reason.SUCCESS and complete:
                if transfer.direction == "out":
                    # the receiver had our hash and accepted the file
                    transfer.hash_verified = True
                    self._finish(client, session, transfer)
                    continue
                if transfer.file is not None and transfer.position == size:
                    # the sender ended before its bytestream's end reached us: all is there
                    if transfer.checksum_timer is not None:
                        transfer.checksum_timer.cancel()
                        transfer.checksum_timer = None
                    if transfer.expected is None:
                        transfer.hasher = None  # nothing to compare with
                    self._check_and_finish(client, session, content, notify=False)
                    continue
            text = f"session ended: {reason.condition.value}"
            if reason.text:
                text += f" ({reason.text})"
            self._abandon(client, transfer, text)


class XEP_0234:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.jingle = host.plugins["XEP-0166"]
        self.max_size = host.config.get_int("file_max_size", MAX_FILE_SIZE)
        self.app = FileTransfer(self)
        self.jingle.register_application(self.app)
        register_bridge(self, host.bridge)

    @property
    def download_dir(self) -> Path:
        """Where received files go by default (``download_dir`` option)."""
        value = self.host.config.get("download_dir")
        if value:
            return Path(value).expanduser()
        return Path(self.host.config.local_dir) / "downloads"

    def resolve_peer(self, client: Any, peer: JID) -> JID:
        """A full JID for Jingle: a bare JID becomes its available resource of highest
        priority.

        Raises:
            NotFound: a bare JID without any available resource known.
        """
        if peer.resource:
            return peer
        statuses = getattr(client.presence, "statuses", {}) or {}
        resources = statuses.get(peer.userhost(), {})
        best = None
        for resource, status in resources.items():
            priority = status[1] if isinstance(status, tuple) and len(status) > 1 else 0
            if resource and (best is None or (priority or 0) > best[0]):
                best = ((priority or 0), resource)
        if best is None:
            raise NotFound(f"{peer.full()} has no available device: give a full JID")
        return JID(tuple=(peer.user, peer.host, best[1]))

    async def file_send(
        self,
        client: Any,
        peer: JID,
        filepath: Path,
        name: str | None = None,
        desc: str = "",
        transport: str = "auto",
    ) -> dict[str, str]:
        """Offer a file to ``peer``; returns ``{"progress": id, "session_id": sid}`` once the
        offer was acknowledged (the transfer goes on in the background).

        Raises:
            NotFound: no such file, or no device of a bare JID.
            InvalidInput: not a regular file, unknown or unavailable transport.
            XMPPError, OperationTimeout, NotConnected: the offer could not be delivered.
        """
        namespace = self._transport_namespace(transport)
        path = Path(filepath).expanduser()
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFound(f"no file {path}") from None
        if not path.is_file():
            raise InvalidInput(f"{path} is not a regular file")
        peer = self.resolve_peer(client, peer)
        digest = await asyncio.to_thread(hash_file, path)
        info = FileInfo(
            name=name or path.name,
            size=stat.st_size,
            desc=desc,
            media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            date=datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            hashes={HASH_ALGO: digest},
        )
        session = self.jingle.create_session(client, peer)
        now = float(client.reactor.seconds())
        transfer = Transfer("out", info, time_ordered_uuid(), now, path=path)
        transfer.hash_algo = HASH_ALGO
        self.jingle.add_content(
            session,
            self.app,
            info.description(),
            senders=Senders.INITIATOR,
            app_data=transfer,
            transport=namespace,
        )
        self.app._add_progress(client, session, transfer)
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:
            self.app._abandon(client, transfer, f"offer not delivered: {e}")
            raise
        return {"progress": transfer.progress_id, "session_id": session.sid}

    def _transport_namespace(self, transport: str) -> str | None:
        if transport not in TRANSPORTS:
            raise InvalidInput(f"unknown transport {transport!r} (one of {sorted(TRANSPORTS)})")
        namespace = TRANSPORTS[transport]
        if namespace is not None and namespace not in self.jingle.transports:
            raise InvalidInput(f"the {transport} transport is not available")
        return namespace

    async def file_jingle_request(
        self,
        client: Any,
        peer: JID,
        filepath: Path,
        name: str | None = None,
        file_hash: str = "",
        hash_algo: str = "",
        transport: str = "auto",
    ) -> dict[str, str]:
        """Ask ``peer`` for one of its files (XEP-0234 request, ``senders='responder'``),
        selected by name and/or hash; returns ``{"progress": id, "session_id": sid}``.

        ``filepath``: an existing directory (the file is saved there under a safe version of
        ``name``), or the path of the file to create (never overwriting: a numbered name is
        used if it exists). The data is checked against the hash asked for, or the one the
        peer announces in its answer.

        Raises:
            InvalidInput: neither name nor hash, bad hash, unknown transport.
            NotFound: no device of a bare JID.
            XMPPError, OperationTimeout, NotConnected: the request could not be delivered.
        """
        namespace = self._transport_namespace(transport)
        selector: dict[str, bytes | None] = {}
        if file_hash:
            algo = (hash_algo or HASH_ALGO).strip().lower()
            hashes.new_hasher(algo)  # InvalidInput for an unknown algorithm
            try:
                selector[algo] = base64.b64decode(file_hash, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("file_hash must be base64") from None
        if not name and not selector:
            raise InvalidInput("a file name or a hash is needed to select the file")
        path = Path(filepath).expanduser()
        if path.is_dir():
            directory, save_as = path, name or "file"
        else:
            directory, save_as = path.parent, path.name
        peer = self.resolve_peer(client, peer)
        info = FileInfo(name=name or "", hashes=selector)
        session = self.jingle.create_session(client, peer)
        transfer = Transfer("in", info, time_ordered_uuid(), float(client.reactor.seconds()))
        content = self.jingle.add_content(
            session,
            self.app,
            info.description(),
            senders=Senders.RESPONDER,
            app_data=transfer,
            transport=namespace,
        )
        try:
            self.app._prepare_file(transfer, {"path": str(directory)}, save_as)
        except OSError as e:
            raise InvalidInput(f"cannot create the file in {directory}: {e}") from None
        content.sink = FileSink(self.app, client, session, content)
        self.app._add_progress(client, session, transfer)
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:
            self.app._abandon(client, transfer, f"request not delivered: {e}")
            raise
        return {"progress": transfer.progress_id, "session_id": session.sid}


# --- bridge -----------------------------------------------------------------------------------


def _extra(value: str) -> dict[str, Any]:
    if not value:
        return {"transport": "auto"}
    try:
        data = json.loads(value)
    except ValueError as e:
        raise InvalidInput(f"extra is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidInput("extra must be a JSON object")
    unknown = set(data) - {"transport"}
    if unknown:
        raise InvalidInput(f"unknown extra keys {sorted(unknown)}")
    transport = data.get("transport", "auto")
    if not isinstance(transport, str):
        raise InvalidInput("transport must be a string")
    return {"transport": transport}


def register_bridge(plugin: XEP_0234, bridge: Any) -> None:
    """Declare ``file_send`` and ``file_jingle_request``."""
    host = plugin.host

    async def file_send(
        peer_jid: str, filepath: str, name: str, file_desc: str, extra: str, profile_key: str
    ) -> str:
        peer = parse_jid_arg(peer_jid, "peer JID")
        options = _extra(extra)
        if not filepath:
            raise InvalidInput("a file path is required")
        client = await host.client_of(profile_key)
        result = await plugin.file_send(
            client, peer, Path(filepath), name or None, file_desc, options["transport"]
        )
        return json.dumps(result)

    async def file_jingle_request(
        peer_jid: str,
        filepath: str,
        name: str,
        file_hash: str,
        hash_algo: str,
        extra: str,
        profile_key: str,
    ) -> str:
        peer = parse_jid_arg(peer_jid, "peer JID")
        options = _extra(extra)
        client = await host.client_of(profile_key)
        result = await plugin.file_jingle_request(
            client,
            peer,
            Path(filepath),
            name or None,
            file_hash,
            hash_algo,
            options["transport"],
        )
        return json.dumps(result)

    profile = ("profile_key", "s")
    extra_arg = ("extra", "s", 'serialised dict: transport ("auto", "ibb" or "s5b")')
    add: Callable[..., None] = bridge.add_method
    add(
        "file_send",
        file_send,
        args=[
            ("peer_jid", "s", "the receiver (a bare JID: its best available device)"),
            ("filepath", "s", "the local file to send"),
            ("name", "s", '"": the file\'s own name'),
            ("file_desc", "s", "a description of the file"),
            extra_arg,
            profile,
        ],
        returns="s",
        doc="Offer a file over Jingle (XEP-0234); returns serialised {progress, session_id}.",
    )
    add(
        "file_jingle_request",
        file_jingle_request,
        args=[
            ("peer_jid", "s", "the entity having the file"),
            ("filepath", "s", "where to save it: a directory, or the file to create"),
            ("name", "s", "the file's name"),
            ("file_hash", "s", "its hash (base64), if known"),
            ("hash_algo", "s", "the algorithm of file_hash"),
            extra_arg,
            profile,
        ],
        returns="s",
        doc="Ask a peer for one of its files (XEP-0234 request), selected by name and/or "
        "hash; returns serialised {progress, session_id}.",
    )
