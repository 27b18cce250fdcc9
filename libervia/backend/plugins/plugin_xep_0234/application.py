"""The Jingle application of XEP-0234: receiving offers, verifying, finishing."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.config import private_dir
from libervia.backend.core.exceptions import ActionCancelled, InvalidInput, LiberviaError
from libervia.backend.core.log import get_logger
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
from libervia.backend.plugins.plugin_xep_0234.description import (
    CHECKSUM_TIMEOUT,
    DONE_TIMEOUT,
    NS_FT,
    NS_FT_ERRORS,
    FileInfo,
    human_size,
)
from libervia.backend.plugins.plugin_xep_0234.transfer import (
    FileSink,
    FileSource,
    FrontendEndpoint,
    Transfer,
)
from libervia.backend.plugins.plugin_xep_0234.writer import move_into_place, reserve
from libervia.backend.tools.filenames import create_exclusive, partial_path, safe_file_name
from libervia.backend.tools.ids import time_ordered_uuid

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0234 import XEP_0234

log = get_logger(__name__)

#: files up to this size get their disk space reserved on the event loop, bigger ones in a
#: thread
RESERVE_INLINE = 64 * 1024 * 1024


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
        transport = content.transport
        assert transport is not None
        fallback = None
        try:
            transport.use_answer(client, session, content, answer)
        except InvalidInput as e:
            # e.g. a WebRTC offer accepted by a frontend without WebRTC: we move the bytes
            # over the transport's fallback (IBB), proposed before accepting
            fallback = self.jingle.transports.get(transport.fallback or "")
            if fallback is None:
                log.info("session %s: the answer does not fit the transport: %s", session.sid, e)
                await self.jingle.terminate(client, session, Reason.FAILED_TRANSPORT, str(e))
                return
            log.info("session %s: %s; proposing %s", session.sid, e, fallback.namespace)
        frontend = getattr(transport, "frontend_moves_bytes", False) and fallback is None
        if frontend and "path" not in answer:
            content.sink = FrontendEndpoint(self, client, session, content)
        else:
            try:
                self.prepare_file(transfer, answer)
            except (OSError, InvalidInput) as e:
                log.warning("cannot save the file of session %s: %s", session.sid, e)
                await self.jingle.terminate(client, session, Reason.FAILED_APPLICATION, str(e))
                return
            content.sink = FileSink(self, client, session, content)
        self.add_progress(client, session, transfer)
        if not await self._reserve(client, session, transfer):
            return
        if fallback is not None:
            if not await self.jingle.replace_before_accept(client, session, content, fallback):
                error = LiberviaError(f"the sender refused {fallback.namespace}")
                self.fail(client, session, content, Reason.FAILED_TRANSPORT, error)
                return
        await self.jingle.accept(client, session)

    async def _reserve(self, client: Any, session: Session, transfer: Transfer) -> bool:
        """Reserve the disk space of the file offered (writer.reserve; in a thread for big
        files: where the file system cannot allocate in advance, the C library emulates it
        by writing a byte per block); False when it cannot be stored (the progress fails
        with the reason, the partial file is removed, the session terminated) or the
        session ended meanwhile."""
        size = transfer.info.size
        if transfer.file is None or not size:
            return True
        try:
            if size <= RESERVE_INLINE:
                reserve(transfer.file.fileno(), size)
            else:
                # on a copy of the descriptor: the file may be closed meanwhile
                await asyncio.to_thread(reserve, os.dup(transfer.file.fileno()), size, True)
        except OSError as e:
            message = f"cannot store the file ({human_size(size)}): {e.strerror or e}"
            log.warning("session %s: %s", session.sid, message)
            if not transfer.over:
                self.abandon(client, transfer, message)
            if not session.is_ended:
                await self.jingle.terminate(client, session, Reason.FAILED_APPLICATION, message)
            return False
        # the session may have ended meanwhile (on_session_ended reported it)
        return not transfer.over and not session.is_ended

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
        algo = hashes.best_algo(info.hashes) or ""
        digest = info.hashes.get(algo) if algo else None
        extra = content.transport.action_data(client, session, content) if content.transport else {}
        return {
            **extra,
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
                "hash_algo": algo,
                "hash": base64.b64encode(digest).decode() if digest else "",
            },
            "message": message,
        }

    def prepare_file(
        self, transfer: Transfer, answer: dict[str, Any], save_as: str | None = None
    ) -> None:
        """Reserve the final name and open the partial file (the user accepted)."""
        directory_value = answer.get("path") or ""
        if not isinstance(directory_value, str):
            raise InvalidInput("path must be a directory path")
        directory = Path(directory_value).expanduser() if directory_value else None
        # received files are the user's only: missing directories are made 0700, and the
        # default download directory (ours, in local_dir) is kept 0700
        if directory is None:
            directory = private_dir(self.plugin.download_dir)
        else:
            private_dir(directory, restrict=False)
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

    def add_progress(
        self,
        client: Any,
        session: Session | None,
        transfer: Transfer,
        peer: Any = None,
        sid: str = "",
    ) -> None:
        """Announce the transfer's progress (``peer``/``sid`` when there is no session yet:
        a Jingle Message Initiation proposal waiting for a device to proceed)."""
        path = transfer.path if transfer.path is not None else ""
        metadata = {
            "type": "file",
            "direction": transfer.direction,
            "peer": (session.peer if session is not None else peer).full(),
            "name": transfer.info.name,
            "size": transfer.info.size,
            "session_id": session.sid if session is not None else sid,
            "path": str(path),
        }
        if transfer.partial is not None:
            # where a frontend moving the bytes itself (WebRTC) writes them
            metadata["partial"] = str(transfer.partial)
        self.host.progress.add(client, transfer.progress_id, transfer.position_getter, metadata)
        transfer.progress_added = True

    def when_written(
        self, client: Any, session: Session, content: Content, then: Callable[[], None]
    ) -> None:
        """Call ``then`` once every received chunk is on disk and hashed (at once when it
        is); a write error fails the transfer instead."""
        transfer: Transfer = content.app_data
        writer = transfer.writer
        if writer is None or writer.finished:
            if writer is not None and writer.error is not None:
                self.fail(client, session, content, Reason.FAILED_APPLICATION, writer.error)
                return
            then()
            return

        async def wait() -> None:
            try:
                await writer.finish()
            except OSError as e:
                self.fail(client, session, content, Reason.FAILED_APPLICATION, e)
                return
            then()

        background(wait(), f"file written {session.sid}")

    def verify(self, client: Any, session: Session, content: Content) -> None:
        """All the data arrived: check the hash (or wait for the checksum), then finish."""
        transfer: Transfer = content.app_data
        if transfer.hasher is not None and transfer.expected is None:
            transfer.checksum_timer = client.reactor.callLater(
                CHECKSUM_TIMEOUT, self._no_checksum, client, session, content
            )
            return
        self._check_and_finish(client, session, content)

    def wait_for_receiver(self, client: Any, session: Session, content: Content) -> None:
        """Every byte was sent: the receiver ends the session; if it does not within
        ``DONE_TIMEOUT`` seconds, we do (success, but nothing confirmed)."""
        transfer: Transfer = content.app_data
        transfer.checksum_timer = client.reactor.callLater(
            DONE_TIMEOUT, self._receiver_silent, client, session, transfer
        )

    def _receiver_silent(self, client: Any, session: Session, transfer: Transfer) -> None:
        transfer.checksum_timer = None
        if session.is_ended or transfer.over:
            return
        log.info("session %s: the receiver did not end it, we do", session.sid)
        transfer.ended_by_us = True
        background(
            self.jingle.terminate(client, session, Reason.SUCCESS), f"file sent {session.sid}"
        )

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
        if not transfer.written:
            self.when_written(
                client,
                session,
                content,
                lambda: self._check_and_finish(client, session, content, notify),
            )
            return
        if transfer.hasher is not None and transfer.expected is not None:
            if not hashes.digest_matches(transfer.expected, transfer.hasher.digest()):
                error = LiberviaError(f"the {transfer.hash_algo} hash of the file is wrong")
                self.fail(client, session, content, Reason.MEDIA_ERROR, error)
                return
            transfer.hash_verified = True
        try:
            if transfer.file is not None:
                transfer.file.close()
                transfer.file = None
            if transfer.partial is not None and transfer.path is not None:
                # not synced to the disk (doc/file_transfer.rst, "Durability")
                transfer.path = move_into_place(transfer.partial, transfer.path, transfer.reserved)
            # else: the frontend kept the data itself (WebRTC to a remote frontend)
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
        self.abandon(client, transfer, str(error) or type(error).__name__)
        background(
            self.jingle.terminate(client, session, reason, str(error) or None, extra),
            f"file transfer failed {session.sid}",
        )

    def abandon(self, client: Any, transfer: Transfer, error: str) -> None:
        """Report a failure and remove what we wrote (the partial file, the reserved name)."""
        transfer.over = True
        if transfer.checksum_timer is not None and transfer.checksum_timer.active():
            transfer.checksum_timer.cancel()
        if transfer.action is not None and transfer.action.pending:
            transfer.action.cancel(error)
        if transfer.writer is not None:
            transfer.writer.abort()
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
        if file_el is None or transfer.direction != "in":
            return
        received_hashes = {a: d for a, d in hashes.parse_hashes(file_el).items() if d}
        transfer.checksums.update(received_hashes)
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
            if transfer.path is None:  # on the frontend's device (WebRTC)
                content.source = FrontendEndpoint(self, client, session, content)
                return
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
            self.abandon(client, transfer, f"the file was removed by the peer ({condition})")

    def on_session_ended(self, client: Any, session: Session, reason: ReasonElement) -> None:
        for content in session.contents.values():
            transfer = content.app_data
            if not isinstance(transfer, Transfer) or transfer.over:
                continue
            size = transfer.info.size
            complete = transfer.data_done or (size is not None and transfer.position >= size)
            if reason.condition is Reason.SUCCESS and complete:
                if transfer.direction == "out":
                    if transfer.checksum_timer is not None and transfer.checksum_timer.active():
                        transfer.checksum_timer.cancel()
                    # the receiver had our hash and accepted the file
                    transfer.hash_verified = not transfer.ended_by_us
                    self._finish(client, session, transfer)
                    continue
                if transfer.file is not None and transfer.position == size:
                    # the sender ended before its bytestream's end reached us: all is there
                    if transfer.checksum_timer is not None:
                        if transfer.checksum_timer.active():
                            transfer.checksum_timer.cancel()
                        transfer.checksum_timer = None
                    if transfer.expected is None:
                        transfer.hasher = None  # nothing to compare with
                    self._check_and_finish(client, session, content, notify=False)
                    continue
            text = f"session ended: {reason.condition.value}"
            if reason.text:
                text += f" ({reason.text})"
            self.abandon(client, transfer, text)
