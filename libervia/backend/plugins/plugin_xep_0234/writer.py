"""Writing and hashing received data in a thread of its own.

The event loop only queues the chunks a transport delivers: writing them to the file and
feeding the hash (hashlib and file writes release the GIL) run in a dedicated thread, in
order. Measured (doc/benchmarks.rst "File transfer"): with both on the loop thread, a SOCKS5
receiver was CPU-bound at ~24% of a raw loopback copy; the hash alone halves a serial
receiver's ceiling.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, BinaryIO

from libervia.backend.core.log import get_logger

log = get_logger(__name__)

#: chunks queued at most before the transport is made to wait (backpressure)
MAX_PENDING = 64


class DiskWriter:
    """Writes chunks to ``file`` and feeds them to ``hasher_of()`` (read at each chunk: the
    hash may be chosen after the first bytes), in order, in a thread."""

    def __init__(self, file: BinaryIO, hasher_of: Any) -> None:
        self.file = file
        self.hasher_of = hasher_of
        self.loop = asyncio.get_running_loop()
        self.error: BaseException | None = None
        self.finished = False
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending = 0
        self._space = asyncio.Event()
        self._space.set()
        self._dropping = False
        self._done: asyncio.Future[None] = self.loop.create_future()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="file writer", daemon=True)
        self._thread.start()

    async def write(self, data: bytes) -> None:
        """Queue a chunk; waits while ``MAX_PENDING`` chunks are queued.

        Raises:
            OSError: an earlier chunk could not be written (disk full...).
        """
        if self.error is not None:
            raise self.error
        while self._pending >= MAX_PENDING:
            self._space.clear()
            await self._space.wait()
            if self.error is not None:
                raise self.error
        self._pending += 1
        self._queue.put(data)

    async def finish(self) -> None:
        """Wait until every queued chunk is written and hashed.

        Raises:
            OSError: a chunk could not be written.
        """
        if not self._closing:
            self._closing = True
            self._queue.put(None)
        await asyncio.shield(self._done)
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Drop what is still queued and stop (the transfer failed)."""
        self._dropping = True
        if not self._closing:
            self._closing = True
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                break
            if not self._dropping and self.error is None:
                try:
                    self.file.write(data)
                    hasher = self.hasher_of()
                    if hasher is not None:
                        hasher.update(data)
                except BaseException as e:  # noqa: BLE001 - reported to the loop
                    self.error = e
            self._call(self._written)
        self._call(self._ended)

    def _call(self, callback: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed (the daemon stopped)
            pass

    def _written(self) -> None:
        self._pending -= 1
        if self._pending < MAX_PENDING:
            self._space.set()

    def _ended(self) -> None:
        self.finished = True
        self._space.set()
        if not self._done.done():
            self._done.set_result(None)
