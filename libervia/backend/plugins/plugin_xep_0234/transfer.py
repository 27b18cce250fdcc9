"""The state of one file transfer and its byte endpoints (a file read, a file written)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.words.xish import domish

from libervia.backend.core.exceptions import LiberviaError
from libervia.backend.plugins.plugin_xep_0166 import Content, Reason, Session
from libervia.backend.plugins.plugin_xep_0234.description import NS_FT_ERRORS, FileInfo
from libervia.backend.plugins.plugin_xep_0234.writer import DiskWriter

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0234.application import FileTransfer


#: received bytes written on the event loop before a writer thread takes over
INLINE_BYTES = 1024 * 1024
#: bytes per ``sendfile`` call when a transport sends a file that way (progress steps)
SENDFILE_SLICE = 16 * 1024 * 1024


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
    #: we ended the session ourselves (the receiver never did): nothing confirmed
    ended_by_us: bool = False
    #: the checksum wait (receiver) or the wait for the receiver's end (sender)
    checksum_timer: Any = None
    #: writes and hashes what we receive, in a thread (created at the first chunk)
    writer: DiskWriter | None = None
    #: hashes received in ``checksum`` session-infos
    checksums: dict[str, bytes] = field(default_factory=dict)

    @property
    def written(self) -> bool:
        """Every received chunk is on disk and hashed (nothing queued in the writer)."""
        return self.writer is None or self.writer.finished

    def position_getter(self) -> dict[str, int]:
        return {"position": self.position, "size": self.info.size or 0}


class KnownDigest:
    """A hasher whose digest was computed elsewhere (by the frontend that moved the bytes)."""

    def __init__(self, digest: bytes) -> None:
        self._digest = digest

    def update(self, data: bytes) -> None:
        raise RuntimeError("the data was hashed by the frontend")

    def digest(self) -> bytes:
        return self._digest


class FrontendEndpoint:
    """Source and sink of a transfer whose bytes are on the frontend's device (a web
    frontend's WebRTC data channel): another transport cannot move them."""

    def __init__(self, app: FileTransfer, client: Any, session: Session, content: Content):
        self.app, self.client, self.session, self.content = app, client, session, content

    async def read(self, size: int) -> bytes:
        raise LiberviaError("the file is on the frontend's device: only WebRTC can send it")

    async def write(self, data: bytes) -> None:
        raise LiberviaError("no file on the daemon's machine for this transfer")

    def close(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.app.fail(self.client, self.session, self.content, Reason.FAILED_TRANSPORT, error)


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

    async def sendfile(self, transport: asyncio.Transport) -> None:
        """Send the rest of the file on a TCP transport with ``sendfile`` (the kernel copies
        the file to the socket: nothing goes through Python), in slices so that the
        progress moves; then the caller closes the source as after ``read``."""
        transfer = self.transfer
        if transfer.file is None or transfer.info.size is None:
            return
        loop = asyncio.get_running_loop()
        while transfer.position < transfer.info.size:
            count = min(SENDFILE_SLICE, transfer.info.size - transfer.position)
            sent = await loop.sendfile(transport, transfer.file, transfer.position, count)
            if not sent:
                break  # the file is shorter than announced: the receiver will say so
            transfer.position += sent

    def close(self, error: BaseException | None = None) -> None:
        transfer = self.transfer
        if transfer.file is not None:
            transfer.file.close()
            transfer.file = None
        if error is None:
            transfer.data_done = True  # the receiver ends the session (else: done_timeout)
            self.app.wait_for_receiver(self.client, self.session, self.content)
            return
        self.app.fail(self.client, self.session, self.content, Reason.CONNECTIVITY_ERROR, error)


class FileSink:
    """The ByteSink of a file we receive: size limit, hash, partial file."""

    def __init__(self, app: FileTransfer, client: Any, session: Session, content: Content):
        self.app, self.client, self.session, self.content = app, client, session, content
        self.transfer: Transfer = content.app_data

    def receive_buffer(self, size: int) -> memoryview | None:
        """Memory for the transport to receive the next bytes into (optional hook of a
        ByteSink, for transports that can use it: ``ByteStream.use_buffers``, whose
        contract applies): buffers of the writer thread's, recycled once written and
        hashed. None (the transport uses its own) for small files or when the writer
        stopped lending."""
        transfer = self.transfer
        size_announced = transfer.info.size or 0
        if transfer.over or transfer.file is None or size_announced <= INLINE_BYTES:
            return None
        if transfer.writer is None:
            transfer.writer = DiskWriter(transfer.file, lambda: transfer.hasher)
        return transfer.writer.buffer(size)

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
        if transfer.writer is None and transfer.position + len(data) <= INLINE_BYTES:
            # small files: written at once (a thread only pays off for big transfers)
            transfer.file.write(data)
            if transfer.hasher is not None:
                transfer.hasher.update(data)
            transfer.position += len(data)
            return
        if transfer.writer is None:
            transfer.writer = DiskWriter(transfer.file, lambda: transfer.hasher)
        await transfer.writer.write(data)
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
        self.app.when_written(
            self.client,
            self.session,
            self.content,
            lambda: self.app.verify(self.client, self.session, self.content),
        )
