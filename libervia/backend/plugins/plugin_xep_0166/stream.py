"""The byte-stream interface between Jingle transports and applications.

An application (file transfer...) never sees the network: for each content it gives the
transport a :class:`ByteSource` when we send and a :class:`ByteSink` when we receive (set on
:attr:`Content.source <.session.Content.source>` / :attr:`Content.sink
<.session.Content.sink>` before the transport starts). A streaming transport (IBB, SOCKS5, a
WebRTC data channel) then moves the bytes, in order, with no framing of its own:

* sending: it calls ``await source.read(n)`` until it gets ``b""`` (end of data), sends each
  chunk, then closes its stream and calls ``source.close()``; on a failure once data moved it
  calls ``source.close(error)``;
* receiving: it calls ``await sink.write(data)`` for each chunk, in order (an exception from
  ``write`` means the application refuses the data, e.g. more than announced: the transport
  stops and closes its stream), and ``sink.close()`` when the peer ended the stream normally,
  ``sink.close(error)`` when it broke.

``close`` is called once. Chunk boundaries carry no meaning (XEP-0166 §7.1 "streaming").

Optional, for bulk transports: a sink may also have ``receive_buffer(size) -> memoryview |
None``, memory of its own for the transport to receive the next bytes into (no copy between
the socket and the sink: the chunks given to ``write`` are then views of these buffers; None:
the transport uses its own this time). A transport that can (SOCKS5, over
:class:`~libervia.backend.tools.bytestream.ByteStream`) looks for the method with
``getattr`` and follows the contract of ``ByteStream.use_buffers``; the others ignore it.
The file-transfer sink lends the buffers of its writer thread (doc/file_transfer.rst).
A transport that cannot connect at all, before any byte moved, does not close the endpoint:
it raises :class:`~.errors.TransportFailed` from ``start`` (or calls
``XEP_0166.transport_failed``) and the core falls back to another transport.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ByteSource(Protocol):
    """Where a transport reads the bytes to send."""

    async def read(self, size: int) -> bytes:
        """At most ``size`` bytes; ``b""`` at the end of the data."""
        ...

    def close(self, error: BaseException | None = None) -> None:
        """Sending ended: every byte was sent (``None``) or the transport failed."""
        ...


@runtime_checkable
class ByteSink(Protocol):
    """Where a transport writes the bytes received."""

    async def write(self, data: bytes) -> None:
        """Consume a chunk; raise to refuse it (the transport then stops receiving)."""
        ...

    def close(self, error: BaseException | None = None) -> None:
        """Receiving ended: the peer closed the stream normally (``None``), or it failed."""
        ...


class MemorySource:
    """A source over bytes in memory (tests, small payloads)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._offset = 0
        self.closed: tuple[BaseException | None] | None = None

    async def read(self, size: int) -> bytes:
        chunk = bytes(self._data[self._offset : self._offset + size])
        self._offset += len(chunk)
        return chunk

    def close(self, error: BaseException | None = None) -> None:
        self.closed = (error,)


class MemorySink:
    """A sink keeping the bytes in memory (tests, small payloads)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: tuple[BaseException | None] | None = None

    async def write(self, data: bytes) -> None:
        self.data += data

    def close(self, error: BaseException | None = None) -> None:
        self.closed = (error,)
