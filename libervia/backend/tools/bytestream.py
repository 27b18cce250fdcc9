"""A TCP byte stream for bulk transfers: asyncio's ``BufferedProtocol`` with the reading and
writing methods of a ``StreamReader``/``StreamWriter`` pair.

asyncio's streams copy every received byte three times on the event loop (``recv`` into a new
``bytes``, appended to the reader's buffer, sliced out by ``read`` and the buffer shifted).
Here the socket is read straight into buffers of :data:`CHUNK_SIZE` bytes
(``recv_into``), and :meth:`ByteStream.read` hands out ``memoryview`` slices of them without
copying (a full buffer is replaced by a new one, the old one lives as long as its views).
Reading pauses while more than :data:`HIGH_WATER` bytes wait for the consumer.

The same object is both ends (``reader`` and ``writer`` of a SOCKS5 bytestream): ``read``,
``readexactly``, ``at_eof``; ``write``, ``drain``, ``write_eof``, ``can_write_eof``,
``close``, ``is_closing``, ``wait_closed``, ``get_extra_info``. ``read`` may return a
``memoryview``: use it at once or keep it (it stays valid), never resize its buffer.

The consumer may provide the receive buffers (:meth:`ByteStream.use_buffers`): a new buffer
per chunk costs its allocation (zeroing, page faults: ~30 ms of the loop's CPU per 200 MB,
measured), which a consumer knowing when it is done with a buffer avoids by recycling it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

#: bytes per receive buffer (one ``recv_into`` fills at most this)
CHUNK_SIZE = 1024 * 1024
#: reading pauses beyond this many received bytes not read yet, resumes below LOW_WATER
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024


class ByteStream(asyncio.BufferedProtocol):
    """One TCP connection (see the module's docstring)."""

    def __init__(
        self,
        on_connected: Callable[[ByteStream], None] | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._on_connected = on_connected
        self._chunk_size = chunk_size
        self.transport: asyncio.Transport | None = None
        #: the consumer's buffers (use_buffers), else ours
        self._provider: Callable[[int], memoryview | None] | None = None
        self._view = memoryview(bytearray(chunk_size))
        #: bytes of the current buffer written by the socket / handed to the reader
        self._filled = 0
        self._taken = 0
        #: full buffers (their unread part) waiting for the reader
        self._chunks: deque[memoryview] = deque()
        self._waiting = 0
        self._eof = False
        self._exception: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None
        #: unread bytes the waiting reader wants before it is woken
        self._wanted = 1
        self._paused = False
        self._write_paused = False
        self._drainers: deque[asyncio.Future[None]] = deque()
        self._closed: asyncio.Future[None] = asyncio.get_event_loop().create_future()

    # --- asyncio protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._on_connected is not None:
            self._on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled == len(self._view):
            self._retire()
        return self._view[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        self._waiting += nbytes
        if self._filled == len(self._view):
            self._retire()
        if self._waiting > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._provider = None
        self._wake()
        return True  # half-closed: we may still write

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._provider = None
        if exc is not None:
            self._exception = exc
        self._wake()
        for drainer in self._drainers:
            if not drainer.done():
                drainer.set_exception(exc or ConnectionResetError("connection lost"))
                drainer.exception()  # nobody may be waiting: retrieved
        self._drainers.clear()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        while self._drainers:
            drainer = self._drainers.popleft()
            if not drainer.done():
                drainer.set_result(None)

    # --- internals --------------------------------------------------------------------------

    def _retire(self) -> None:
        """The current buffer is full: queue its unread part, start a new one."""
        if self._taken < self._filled:
            self._chunks.append(self._view[self._taken : self._filled])
        view = self._provider(self._chunk_size) if self._provider is not None else None
        if view is None or not len(view):
            view = memoryview(bytearray(self._chunk_size))
        self._view = view
        self._filled = self._taken = 0

    def use_buffers(self, provider: Callable[[int], memoryview | None] | None) -> None:
        """Receive into buffers of the consumer's from the next buffer on (``None``: ours
        again): ``provider(size)`` returns a writable, contiguous byte ``memoryview``
        (``size`` is a hint; None: take one of ours this time).

        The stream fills each buffer in order, from its start to its end, before it asks
        for the next one, never writes to it again once full, and hands its bytes to the
        reader, in order, as views of it (``view.obj`` is the buffer's exporter): once the
        consumer has read and used up the last byte of a buffer, it may give it again.
        Forgotten at the end of the stream."""
        self._provider = provider

    def _wake(self) -> None:
        if self._reader is None or self._reader.done():
            return
        if self._waiting >= self._wanted or self._eof:
            self._reader.set_result(None)

    async def _wait(self, wanted: int = 1) -> None:
        if self._exception is not None:
            raise self._exception
        self._wanted = wanted
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await self._reader
        finally:
            self._reader = None
            self._wanted = 1

    def _took(self, count: int) -> None:
        self._waiting -= count
        if self._paused and self._waiting < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _take(self, size: int) -> memoryview | None:
        """Up to ``size`` (> 0) unread bytes without copying, None when none are there."""
        if self._chunks:
            chunk = self._chunks.popleft()
            if len(chunk) > size:
                self._chunks.appendleft(chunk[size:])
                chunk = chunk[:size]
        elif self._taken < self._filled:
            end = min(self._filled, self._taken + size)
            chunk = self._view[self._taken : end]
            self._taken = end
        else:
            return None
        self._took(len(chunk))
        return chunk

    # --- reading (StreamReader's) -----------------------------------------------------------

    async def read(self, n: int = -1) -> bytes | memoryview:
        """At most ``n`` bytes (all of them until the end with ``n`` < 0, as ``bytes``);
        ``b""`` at the end of the stream.

        Raises:
            the connection's error, if it broke.
        """
        if n < 0:
            parts = []
            while chunk := await self.read(self._chunk_size):
                parts.append(bytes(chunk))
            return b"".join(parts)
        if n == 0:
            return b""
        while True:
            chunk = self._take(n)
            if chunk is not None:
                return chunk
            if self._eof:
                if self._exception is not None:
                    raise self._exception
                return b""
            await self._wait()

    async def read_chunk(self, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes, waiting until ``size`` are there (or the end): bulk
        consumers get whole buffers (fewer, bigger chunks) without copying; ``b""`` at the
        end."""
        wanted = min(size, HIGH_WATER)
        while self._waiting < wanted and not self._eof:
            await self._wait(wanted)
        return await self.read(size)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes.

        Raises:
            asyncio.IncompleteReadError: the stream ended before.
        """
        parts: list[bytes] = []
        got = 0
        while got < n:
            chunk = await self.read(n - got)
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(bytes(chunk))
            got += len(chunk)
        return b"".join(parts)

    def at_eof(self) -> bool:
        return self._eof and not self._chunks and self._taken == self._filled

    # --- writing (StreamWriter's) -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark.

        Raises:
            ConnectionResetError (or the connection's error): the connection was lost.
        """
        if self.transport is None or self.transport.is_closing():
            if self._closed.done():
                raise self._exception or ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        drainer = asyncio.get_running_loop().create_future()
        self._drainers.append(drainer)
        await drainer

    def write_eof(self) -> None:
        assert self.transport is not None
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport is not None and self.transport.can_write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)


async def open_connection(host: str, port: int) -> ByteStream:
    """Connect to ``host``:``port``. Raises OSError."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(ByteStream, host, port)
    return protocol


async def start_server(
    on_connected: Callable[[ByteStream], None], host: str, port: int, **kwargs: Any
) -> asyncio.Server:
    """Listen on ``host``:``port``; ``on_connected(stream)`` for each connection."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: ByteStream(on_connected), host, port, **kwargs)
