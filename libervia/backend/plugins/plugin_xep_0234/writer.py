"""Writing and hashing received data in threads of their own.

The event loop only queues the chunks a transport delivers: writing them to the file and
feeding the hash (hashlib and file writes release the GIL) run in two dedicated threads, in
parallel, each in order. Measured (doc/benchmarks.rst "File transfer"): with both on the loop
thread, a SOCKS5 receiver was CPU-bound at ~24% of a raw loopback copy; the hash alone halves
a serial receiver's ceiling.

The writer may also lend the transport the buffers it receives into (:meth:`DiskWriter.buffer`),
recycled once written and hashed: no buffer allocated per chunk.
"""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import threading
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

from libervia.backend.core.log import get_logger
from libervia.backend.tools.filenames import create_exclusive

log = get_logger(__name__)

#: chunks queued at most before the transport is made to wait (backpressure). Kept small so
#: that the hasher reads chunks still in the CPU's cache: with 64 (1 MiB chunks) it fell ~60 MB
#: behind the network and finished ~45 ms after the last byte; with 16, 3-12 ms
MAX_PENDING = 16
#: buffers lent (DiskWriter.buffer) and not yet seen back in write() at most: beyond, the
#: transport does not give them back in order (not the contract): no more lending
MAX_LENT = 16


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
        #: bytes of the chunks done (the loop reads it to recycle lent buffers)
        self.done_bytes = 0
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
            self.done_bytes += len(data)
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
        #: bytes queued so far (the position of the next chunk)
        self._queued_bytes = 0
        #: lent buffers not seen in write() yet, in the order lent
        self._lent: deque[bytearray] = deque()
        #: lent buffers whose data is queued: (position of their end, buffer), in order
        self._in_use: deque[tuple[int, bytearray]] = deque()
        self._free: list[bytearray] = []
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

    def buffer(self, size: int) -> memoryview | None:
        """A buffer of ``size`` bytes for a transport to receive the next bytes into (the
        contract of ``ByteStream.use_buffers``: filled in order, its bytes then given to
        :meth:`write` as views of it, in order): one given back earlier, once its bytes
        were written and hashed, else a new one; None when lending stopped (the end, or a
        transport not giving them back)."""
        if self._closing or self.error is not None or len(self._lent) >= MAX_LENT:
            return None
        done = min(w.done_bytes for w in self._workers)
        while self._in_use and self._in_use[0][0] <= done:
            self._free.append(self._in_use.popleft()[1])
        buffer = None
        while self._free and buffer is None:
            buffer = self._free.pop()
            if len(buffer) != size:
                buffer = None
        if buffer is None:
            buffer = bytearray(size)
        self._lent.append(buffer)
        return memoryview(buffer)

    async def write(self, data: bytes | memoryview) -> None:
        """Queue a chunk (never modified afterwards: a view of a lent buffer stays
        untouched until written and hashed); waits while ``MAX_PENDING`` chunks are queued.

        Raises:
            OSError: an earlier chunk could not be written (disk full...).
        """
        if self.error is not None:
            raise self.error
        if self._lent and isinstance(data, memoryview) and data.obj is self._lent[0]:
            # the first bytes of a lent buffer (at its start): it is in use until the
            # bytes up to its end are written and hashed
            buffer = self._lent.popleft()
            self._in_use.append((self._queued_bytes + len(buffer), buffer))
        while any(w.pending >= MAX_PENDING for w in self._workers):
            self._space.clear()
            self._room_wanted = True
            if all(w.pending < MAX_PENDING for w in self._workers):
                break  # a worker finished a chunk before it could see the flag
            await self._space.wait()
            if self.error is not None:
                raise self.error
        self._queued_bytes += len(data)
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
            self._lent.clear()
            self._in_use.clear()
            self._free.clear()
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


def reserve(fd: int, size: int, close: bool = False) -> None:
    """Allocate ``size`` bytes on the disk for the file being received (``posix_fallocate``):
    a full disk is an error before the transfer starts, not in its middle; and the file
    system's writes are cheaper (measured on ext4: 38-42 ms of CPU per 200 MB written against
    53-60). Nothing happens where the file system cannot allocate in advance. ``close``:
    close ``fd`` afterwards.

    Raises:
        OSError: not enough space (ENOSPC, EDQUOT) or too big for the file system (EFBIG).
    """
    try:
        if size > 0 and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        log.debug("space for the received file not reserved: %s", e)
    finally:
        if close:
            os.close(fd)


def move_into_place(partial: Path, final: Path, placeholder: bool) -> Path:
    """Give a received file (``partial``) its ``final`` name; returns the name it got.

    ``placeholder``: ``final`` is the empty file reserving the name (``create_exclusive``).
    Renaming over an existing file makes ext4 (``auto_da_alloc``) write the whole file out
    inside the ``rename`` call (measured: 40-53 ms per 200 MB, in the transfer's time), so
    the placeholder is removed and the file linked under its name instead (``link`` never
    replaces). If another file took the name in the meantime, it is kept: the received file
    gets the next free name (``name (1).ext``...); without hard links, the name is reserved
    again exclusively and the file renamed over that reservation. Without ``placeholder``
    (the user asked to overwrite), the file is renamed over ``final``.

    Raises:
        OSError: the file could not be moved.
    """
    if not placeholder:
        os.replace(partial, final)
        return final
    final.unlink(missing_ok=True)
    try:
        os.link(partial, final)
    except OSError:
        # FileExistsError (somebody else's file now: never overwritten), or no hard links
        # (EPERM, ENOTSUP...): a new exclusive reservation, ours to rename over
        final, reservation = create_exclusive(final.parent, final.name)
        reservation.close()
        os.replace(partial, final)
        return final
    try:
        partial.unlink()
    except OSError as e:
        log.warning("cannot remove %s (also received as %s): %s", partial, final, e)
    return final
