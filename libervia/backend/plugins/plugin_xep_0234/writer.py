"""Writing and hashing received data in threads of their own.

The event loop only queues the chunks a transport delivers: writing them to the file and
feeding the hash (hashlib and file writes release the GIL) run in two dedicated threads, in
parallel, each in order. Measured (doc/benchmarks.rst "File transfer"): with both on the loop
thread, a SOCKS5 receiver was CPU-bound at ~24% of a raw loopback copy; the hash alone halves
a serial receiver's ceiling.
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


class _Worker:
    """One thread applying ``work`` to each queued chunk, in order.

    The loop is only woken when it waits for room (``owner._room_wanted``) and at the end:
    not once per chunk."""

    def __init__(self, owner: DiskWriter, name: str, work: Any) -> None:
        self.owner = owner
        self.work = work
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: chunks queued by the loop / done by the thread (each written by one side only)
        self.queued = 0
        self.done = 0
        self.ended = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    @property
    def pending(self) -> int:
        return self.queued - self.done

    def _run(self) -> None:
        owner = self.owner
        while True:
            data = self.queue.get()
            if data is None:
                break
            if not owner._dropping and owner.error is None:
                try:
                    self.work(data)
                except BaseException as e:  # noqa: BLE001 - reported to the loop
                    owner.error = e
            self.done += 1
            if owner._room_wanted:
                owner._room_wanted = False
                owner._call(owner._maybe_space)
        owner._call(self._end)

    def _end(self) -> None:
        self.ended = True
        self.owner._maybe_ended()


class DiskWriter:
    """Writes chunks to ``file`` and feeds them to ``hasher_of()`` (read at each chunk: the
    hash may be chosen after the first bytes), in order, in two threads working in
    parallel (one writes, one hashes: each chunk, immutable, is shared by both)."""

    def __init__(self, file: BinaryIO, hasher_of: Any) -> None:
        self.file = file
        self.hasher_of = hasher_of
        self.loop = asyncio.get_running_loop()
        self.error: BaseException | None = None
        self.finished = False
        self._space = asyncio.Event()
        self._space.set()
        self._dropping = False
        #: the loop waits for room in the queues: the workers wake it
        self._room_wanted = False
        self._done: asyncio.Future[None] = self.loop.create_future()
        self._closing = False
        self._workers = (
            _Worker(self, "file writer", self.file.write),
            _Worker(self, "file hasher", self._hash),
        )

    @property
    def pending(self) -> int:
        """Chunks queued and not yet both written and hashed."""
        return max(w.pending for w in self._workers)

    def _hash(self, data: Any) -> None:
        hasher = self.hasher_of()
        if hasher is not None:
            hasher.update(data)

    async def write(self, data: bytes | memoryview) -> None:
        """Queue a chunk (never modified afterwards); waits while ``MAX_PENDING`` chunks
        are queued.

        Raises:
            OSError: an earlier chunk could not be written (disk full...).
        """
        if self.error is not None:
            raise self.error
        while any(w.pending >= MAX_PENDING for w in self._workers):
            self._space.clear()
            self._room_wanted = True
            if all(w.pending < MAX_PENDING for w in self._workers):
                break  # a worker finished a chunk before it could see the flag
            await self._space.wait()
            if self.error is not None:
                raise self.error
        for worker in self._workers:
            worker.queued += 1
            worker.queue.put(data)

    async def finish(self) -> None:
        """Wait until every queued chunk is written and hashed.

        Raises:
            OSError: a chunk could not be written.
        """
        self._close()
        await asyncio.shield(self._done)
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Drop what is still queued and stop (the transfer failed)."""
        self._dropping = True
        self._close()

    def _close(self) -> None:
        if not self._closing:
            self._closing = True
            for worker in self._workers:
                worker.queue.put(None)

    def _call(self, callback: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed (the daemon stopped)
            pass

    def _maybe_space(self) -> None:
        if not all(w.pending < MAX_PENDING for w in self._workers):
            self._room_wanted = True  # the other worker is behind: it wakes us again
            if not all(w.pending < MAX_PENDING for w in self._workers):
                return  # (checked after the flag: a chunk finished meanwhile is seen)
            self._room_wanted = False
        self._space.set()

    def _maybe_ended(self) -> None:
        if not all(w.ended for w in self._workers):
            return
        self.finished = True
        self._space.set()
        if not self._done.done():
            self._done.set_result(None)
