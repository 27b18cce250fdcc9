"""ByteStream (tools/bytestream.py) driven as asyncio drives a BufferedProtocol, on a fake
transport: no socket, no sleep."""

from __future__ import annotations

import asyncio
import weakref

from libervia.backend.tools.bytestream import ByteStream
from tests.conftest import aio


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.closed = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def feed(stream: ByteStream, data: bytes, step: int = 3) -> None:
    """What the event loop does: ``recv_into`` the protocol's buffer, ``step`` bytes at
    most per call (short reads)."""
    while data:
        buffer = stream.get_buffer(-1)
        count = min(len(buffer), len(data), step)
        buffer[:count] = data[:count]
        stream.buffer_updated(count)
        data = data[count:]


def new_stream(chunk_size: int = 8) -> ByteStream:
    stream = ByteStream(chunk_size=chunk_size)
    stream.connection_made(FakeTransport())
    return stream


async def read_all(stream: ByteStream, size: int = 8) -> list[bytes | memoryview]:
    chunks = []
    while chunk := await stream.read_chunk(size):
        chunks.append(chunk)
    return chunks


@aio
async def test_own_buffers_handed_as_views() -> None:
    stream = new_stream()
    data = bytes(range(30))
    feed(stream, data)
    stream.eof_received()
    chunks = await read_all(stream)
    assert b"".join(bytes(c) for c in chunks) == data
    assert all(isinstance(c, memoryview) for c in chunks)
    assert stream.at_eof()


@aio
async def test_consumer_buffers_receive_the_data() -> None:
    """After use_buffers, each new buffer comes from the consumer: the bytes land in it
    (no copy: the chunks read are views of it), in order; the buffer being filled when
    use_buffers is called stays ours until full."""
    stream = new_stream()
    lent: list[bytearray] = []
    sizes: list[int] = []

    def provider(size: int) -> memoryview:
        sizes.append(size)
        lent.append(bytearray(8))
        return memoryview(lent[-1])

    data = bytes(range(100, 130))
    feed(stream, data[:5])  # in our first buffer
    stream.use_buffers(provider)
    feed(stream, data[5:])
    stream.eof_received()
    chunks = await read_all(stream)
    assert b"".join(bytes(c) for c in chunks) == data
    # our buffer: bytes 0-7; then the consumer's, 8 bytes each: 8-15, 16-23, 24-29
    assert bytes(lent[0]) == data[8:16] and bytes(lent[1]) == data[16:24]
    assert bytes(lent[2][:6]) == data[24:30]
    assert sizes and set(sizes) == {8}
    owners = [c.obj for c in chunks if isinstance(c, memoryview)]
    assert len(owners) >= 3 and all(a is b for a, b in zip(owners[-3:], lent[:3], strict=True))
    assert not any(owner is buffer for owner in owners[:-3] for buffer in lent)


@aio
async def test_provider_may_decline_and_is_forgotten_at_the_end() -> None:
    """A provider returning None (or an empty buffer) gets our buffer instead; at the end
    of the stream the stream drops the provider (it may hold a whole transfer's state)."""
    stream = new_stream()

    class Provider:
        calls = 0

        def __call__(self, size: int) -> memoryview | None:
            self.calls += 1
            return None if self.calls % 2 else memoryview(bytearray())

    provider = Provider()
    stream.use_buffers(provider)
    data = bytes(range(40))
    feed(stream, data)
    assert provider.calls >= 4
    forgotten = weakref.ref(provider)
    del provider
    assert forgotten() is not None
    stream.eof_received()
    assert forgotten() is None
    chunks = await read_all(stream)
    assert b"".join(bytes(c) for c in chunks) == data


@aio
async def test_reading_pauses_and_resumes_with_consumer_buffers() -> None:
    """Backpressure is the same with the consumer's buffers."""
    from libervia.backend.tools import bytestream

    stream = new_stream(chunk_size=1024)
    stream.use_buffers(lambda size: memoryview(bytearray(size)))
    transport = stream.transport
    assert isinstance(transport, FakeTransport)
    feed(stream, b"x" * (bytestream.HIGH_WATER + 1), step=1024)
    assert transport.paused
    got = 0
    while transport.paused:
        got += len(await stream.read(1024))
    assert got >= bytestream.HIGH_WATER - bytestream.LOW_WATER
