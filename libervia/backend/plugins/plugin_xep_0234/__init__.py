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

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import InvalidInput, LiberviaError, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.plugins import plugin_xep_0300 as hashes
from libervia.backend.plugins.plugin_xep_0166 import Senders
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
from libervia.backend.plugins.plugin_xep_0234.transfer import FileSink, Transfer
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
        *,
        jmi: bool = False,
    ) -> dict[str, str]:
        """Offer a file to ``peer``; returns ``{"progress": id, "session_id": sid}`` once the
        offer was acknowledged (the transfer goes on in the background).

        With ``jmi``, the file is first proposed to every device of the peer (XEP-0353, to
        its bare JID) and returned at once: the session goes to the device that proceeds,
        with the proposal's id as sid; a rejection, a timeout or a lost connection fails the
        progress.

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
        if jmi and "XEP-0353" not in self.host.plugins:
            raise InvalidInput("Jingle Message Initiation (XEP-0353) is not available")
        if not jmi:
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
        now = float(client.reactor.seconds())
        transfer = Transfer("out", info, time_ordered_uuid(), now, path=path)
        transfer.hash_algo = HASH_ALGO
        if jmi:
            return await self._propose(client, JID(peer.userhost()), info, transfer, namespace)
        session = self.jingle.create_session(client, peer)
        self.jingle.add_content(
            session,
            self.app,
            info.description(),
            senders=Senders.INITIATOR,
            app_data=transfer,
            transport=namespace,
        )
        self.app.add_progress(client, session, transfer)
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:
            self.app.abandon(client, transfer, f"offer not delivered: {e}")
            raise
        return {"progress": transfer.progress_id, "session_id": session.sid}

    async def _propose(
        self, client: Any, peer: JID, info: FileInfo, transfer: Transfer, namespace: str | None
    ) -> dict[str, str]:
        jmi = self.host.plugins["XEP-0353"]
        sid = await jmi.propose(client, peer, [info.description()])
        self.app.add_progress(client, None, transfer, peer=peer, sid=sid)
        background(
            self._send_when_proceeded(client, peer, sid, info, transfer, namespace),
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
    ) -> None:
        jmi = self.host.plugins["XEP-0353"]
        try:
            device = await jmi.wait_proceed(client, peer, sid)
        except LiberviaError as e:  # rejected, retracted, timeout, disconnected
            self.app.abandon(client, transfer, f"{peer.full()} did not take the file: {e}")
            return
        session = self.jingle.create_session(client, device, sid)
        self.jingle.add_content(
            session,
            self.app,
            info.description(),
            senders=Senders.INITIATOR,
            app_data=transfer,
            transport=namespace,
        )
        jmi.track(client, session)
        try:
            await self.jingle.initiate(client, session)
        except LiberviaError as e:
            self.app.abandon(client, transfer, f"offer not delivered: {e}")

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
