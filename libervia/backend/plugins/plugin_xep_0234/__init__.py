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
import mimetypes
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput, LiberviaError, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.plugins import plugin_xep_0300 as hashes
from libervia.backend.plugins.plugin_xep_0166 import Content, Reason, Senders, Session
from libervia.backend.plugins.plugin_xep_0234.application import FileTransfer
from libervia.backend.plugins.plugin_xep_0234.bridge import register_bridge
from libervia.backend.plugins.plugin_xep_0234.description import (
    HASH_ALGO,
    MAX_FILE_SIZE,
    NS_FT,
    NS_FT_ERRORS,
    NS_S5B,
    FileInfo,
    hash_file,
)
from libervia.backend.plugins.plugin_xep_0234.transfer import FileSink, KnownDigest, Transfer
from libervia.backend.plugins.plugin_xep_0261 import NS_JINGLE_IBB
from libervia.backend.tools.ids import time_ordered_uuid

__all__ = ["XEP_0234", "FileInfo", "FileTransfer", "NS_FT", "NS_FT_ERRORS", "Transfer"]

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

TRANSPORTS = {"auto": None, "ibb": NS_JINGLE_IBB, "s5b": NS_S5B}


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

    async def file_send(
        self,
        client: Any,
        peer: JID,
        filepath: Path,
        name: str | None = None,
        desc: str = "",
        transport: str = "auto",
        *,
        jmi: bool = False,
        call_data: dict[str, Any] | None = None,
        file_data: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """Offer a file to ``peer``; returns ``{"progress": id, "session_id": sid,
        "transport": namespace}`` once the offer was acknowledged (the transfer goes on in
        the background).

        With ``jmi``, the file is first proposed to every device of the peer (XEP-0353, to
        its bare JID) and returned at once (no "transport" yet): the session goes to the
        device that proceeds, with the proposal's id as sid; a rejection, a timeout or a
        lost connection fails the progress.

        ``call_data`` (``{"sdp": offer}``): the frontend sends the bytes over a WebRTC data
        channel (XEP-0343) when the peer can; ``file_data`` (``{"size", "media_type",
        "hash"}``) describes a file that is not on the daemon's machine (a web frontend's).

        Raises:
            NotFound: no such file, or no device of a bare JID.
            InvalidInput: not a regular file, unknown or unavailable transport, bad WebRTC
                call data.
            XMPPError, OperationTimeout, NotConnected: the offer could not be delivered.
        """
        namespace = self._transport_namespace(transport)
        if call_data is not None and "XEP-0343" not in self.host.plugins:
            raise InvalidInput("WebRTC data channels (XEP-0343) are not available")
        path = Path(filepath).expanduser()
        if jmi and "XEP-0353" not in self.host.plugins:
            raise InvalidInput("Jingle Message Initiation (XEP-0353) is not available")
        if not jmi:
            peer = self.jingle.resolve_peer(client, peer)
        if file_data is not None and not path.exists():
            info = self._remote_file(name or path.name, desc, file_data)
            path_sent: Path | None = None
        else:
            info = await self._local_file(path, name, desc)
            path_sent = path
        now = float(client.reactor.seconds())
        transfer = Transfer("out", info, time_ordered_uuid(), now, path=path_sent)
        transfer.hash_algo = HASH_ALGO if info.hashes.get(HASH_ALGO) else None
        if jmi:
            return await self._propose(
                client, JID(peer.userhost()), info, transfer, namespace, call_data
            )
        session, content = self._offer_session(client, peer, info, transfer, namespace, call_data)
        self.app.add_progress(client, session, transfer)
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:
            self.app.abandon(client, transfer, f"offer not delivered: {e}")
            raise
        assert content.transport is not None
        return {
            "progress": transfer.progress_id,
            "session_id": session.sid,
            "transport": content.transport.namespace,
        }

    async def _local_file(self, path: Path, name: str | None, desc: str) -> FileInfo:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFound(f"no file {path}") from None
        if not path.is_file():
            raise InvalidInput(f"{path} is not a regular file")
        digest = await asyncio.to_thread(hash_file, path)
        return FileInfo(
            name=name or path.name,
            size=stat.st_size,
            desc=desc,
            media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            date=datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            hashes={HASH_ALGO: digest},
        )

    def _remote_file(self, name: str, desc: str, file_data: dict[str, Any]) -> FileInfo:
        """The description of a file on the frontend's device (``file_data``)."""
        size = file_data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= self.max_size:
            raise InvalidInput(f"file_data size must be an integer from 0 to {self.max_size}")
        media_type = file_data.get("media_type") or mimetypes.guess_type(name)[0]
        if not isinstance(media_type, str):
            raise InvalidInput("file_data media_type must be a string")
        file_hashes: dict[str, bytes | None] = {}
        if file_data.get("hash"):
            try:
                file_hashes[HASH_ALGO] = base64.b64decode(str(file_data["hash"]), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("file_data hash must be base64 (sha-256)") from None
        return FileInfo(name=name, size=size, desc=desc, media_type=media_type, hashes=file_hashes)

    def _offer_session(
        self,
        client: Any,
        peer: JID,
        info: FileInfo,
        transfer: Transfer,
        namespace: str | None,
        call_data: dict[str, Any] | None,
        sid: str | None = None,
    ) -> tuple[Session, Content]:
        """A new session offering the file (not sent yet)."""
        session = self.jingle.create_session(client, peer, sid)
        name, transport_data = None, None
        if call_data is not None:
            name, transport_data = self.host.plugins["XEP-0343"].offer_data(session, call_data)
        content = self.jingle.add_content(
            session,
            self.app,
            info.description(),
            senders=Senders.INITIATOR,
            name=name,
            app_data=transfer,
            transport=namespace,
        )
        content.transport_data = transport_data
        return session, content

    async def _propose(
        self,
        client: Any,
        peer: JID,
        info: FileInfo,
        transfer: Transfer,
        namespace: str | None,
        call_data: dict[str, Any] | None,
    ) -> dict[str, str]:
        jmi = self.host.plugins["XEP-0353"]
        sid = await jmi.propose(client, peer, [info.description()])
        self.app.add_progress(client, None, transfer, peer=peer, sid=sid)
        background(
            self._send_when_proceeded(client, peer, sid, info, transfer, namespace, call_data),
            f"file proposal {sid}",
        )
        return {"progress": transfer.progress_id, "session_id": sid}

    async def _send_when_proceeded(
        self,
        client: Any,
        peer: JID,
        sid: str,
        info: FileInfo,
        transfer: Transfer,
        namespace: str | None,
        call_data: dict[str, Any] | None,
    ) -> None:
        jmi = self.host.plugins["XEP-0353"]
        try:
            device = await jmi.wait_proceed(client, peer, sid)
        except LiberviaError as e:  # rejected, retracted, timeout, disconnected
            self.app.abandon(client, transfer, f"{peer.full()} did not take the file: {e}")
            return
        session, _ = self._offer_session(client, device, info, transfer, namespace, call_data, sid)
        jmi.track(client, session)
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:
            self.app.abandon(client, transfer, f"offer not delivered: {e}")

    def webrtc_done(
        self, client: Any, session: Session, content: Content, size: int, algo: str, digest: bytes
    ) -> None:
        """The frontend moved every byte over a WebRTC data channel (XEP-0343 report):
        check the size, then as for any transport: the sender sends its checksum if the
        offer had none and waits for the receiver; the receiver checks the hash (waiting
        for the checksum if needed), keeps the file and ends the session."""
        transfer: Transfer = content.app_data
        if transfer.over:
            return
        if size != transfer.info.size:
            error = LiberviaError(f"{size} bytes moved, {transfer.info.size} announced")
            self.app.fail(client, session, content, Reason.MEDIA_ERROR, error)
            return
        transfer.position = size
        transfer.data_done = True
        if transfer.direction == "out":
            if not transfer.info.hashes.get(algo):
                checksum = domish.Element((NS_FT, "checksum"))
                checksum["creator"] = content.creator.value
                checksum["name"] = content.name
                checksum.addElement("file").addChild(hashes.hash_element(algo, digest))
                background(
                    self.jingle.session_info(client, session, checksum),
                    f"checksum of {session.sid}",
                )
            self.app.wait_for_receiver(client, session, content)
            return
        if transfer.hash_algo in (None, algo):
            transfer.hash_algo = algo
            transfer.hasher = KnownDigest(digest)
            transfer.expected = transfer.info.hashes.get(algo) or transfer.checksums.get(algo)
        else:
            transfer.hasher = None  # another algorithm than the sender's: nothing to compare
        self.app.verify(client, session, content)

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
        peer = self.jingle.resolve_peer(client, peer)
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
            self.app.prepare_file(transfer, {"path": str(directory)}, save_as)
        except OSError as e:
            raise InvalidInput(f"cannot create the file in {directory}: {e}") from None
        content.sink = FileSink(self.app, client, session, content)
        self.app.add_progress(client, session, transfer)
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:
            self.app.abandon(client, transfer, f"request not delivered: {e}")
            raise
        return {"progress": transfer.progress_id, "session_id": session.sid}
