"""An EAGAIN-safe writer for dbus-fast (used by the daemon's bridge and by every frontend).

dbus-fast's asyncio writer (``dbus_fast.aio.message_bus._MessageWriter.write_callback``)
treats ``BlockingIOError`` from ``sock.send`` (the socket buffer is full: many calls or replies
in flight) as a fatal error and drops the bus connection. Measured: 5,000 pipelined calls got
0 answers and the service left the bus; with this writer, 5,000 of 5,000 were answered
(doc/benchmarks.rst). This module replaces that method with one that waits for the socket to
be writable again. Import it (or call :func:`install`) before connecting; :func:`install`
checks that dbus-fast still has the internals it relies on, so an upgrade that changes them
fails loudly instead of silently losing the fix.
"""

from __future__ import annotations

import array
import socket
from typing import Any

from dbus_fast.aio import message_bus

_ATTRIBUTES = (
    "messages",
    "negotiate_unix_fd",
    "bus",
    "sock",
    "loop",
    "buf",
    "fd",
    "offset",
    "unix_fds",
    "fut",
)


#: at most this many bytes of queued messages are joined into one ``send``
COALESCE_BYTES = 256 * 1024


def _write_callback(self: Any, remove_writer: bool = True) -> None:
    """dbus-fast's write loop, with EAGAIN/EINTR meaning "wait until writable", and the
    messages queued without file descriptors joined into one ``send``."""
    sock = self.sock
    try:
        while True:
            if self.buf is None:
                if not self.messages:
                    if remove_writer:
                        self.loop.remove_writer(self.fd)
                    return
                buf, unix_fds, fut = self.messages.popleft()
                futures = [fut]
                if not unix_fds and self.messages:
                    parts = [buf]
                    size = len(buf)
                    while self.messages and not self.messages[0][1] and size < COALESCE_BYTES:
                        more, _, more_fut = self.messages.popleft()
                        parts.append(more)
                        futures.append(more_fut)
                        size += len(more)
                    buf = b"".join(parts)
                self.unix_fds = unix_fds
                self.buf = memoryview(buf)
                self.offset = 0
                self.fut = fut
                self._libervia_futures = futures
            try:
                if self.unix_fds and self.negotiate_unix_fd:
                    ancdata = [
                        (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", self.unix_fds))
                    ]
                    self.offset += sock.sendmsg([self.buf[self.offset :]], ancdata)
                    self.unix_fds = None
                else:
                    self.offset += sock.send(self.buf[self.offset :])
            except (BlockingIOError, InterruptedError):
                # the socket is full: resume when it is writable (called directly, the writer
                # may not be registered yet)
                if not remove_writer:
                    self.loop.add_writer(self.fd, self.write_callback)
                return
            if self.offset < len(self.buf):
                # partly written: the rest when the socket is writable again
                if not remove_writer:
                    self.loop.add_writer(self.fd, self.write_callback)
                return
            self.buf = None
            for done in self._libervia_futures:
                message_bus._future_set_result(done, None)
    except Exception as e:
        for failed in getattr(self, "_libervia_futures", [self.fut]):
            if self.bus._user_disconnect:
                message_bus._future_set_result(failed, None)
            else:
                message_bus._future_set_exception(failed, e)
        self.bus._finalize(e)


def _schedule_write(self: Any, msg: Any = None, future: Any = None) -> None:
    """Queue a message; write the queue once per event loop iteration.

    dbus-fast writes each message with its own ``send`` and then registers the socket for
    writability after almost every message (two more system calls and a loop wake-up): with
    three D-Bus messages per chat message, the sends were the daemon's largest CPU cost.
    Messages queued during one loop iteration now go out together.
    """
    if msg is not None:
        self.buffer_message(msg, future)
    if self.bus.unique_name and not getattr(self, "_libervia_flush", False):
        self._libervia_flush = True
        self.loop.call_soon(_flush, self)


def _flush(self: Any) -> None:
    self._libervia_flush = False
    self.write_callback(remove_writer=False)


def install() -> None:
    """Install the EAGAIN-safe writer (idempotent).

    Raises:
        ImportError: this dbus-fast no longer has the internals the fix relies on.
    """
    writer = getattr(message_bus, "_MessageWriter", None)
    missing = [
        name
        for name in ("_future_set_result", "_future_set_exception")
        if not hasattr(message_bus, name)
    ]
    if (
        writer is None
        or missing
        or not hasattr(writer, "write_callback")
        or not hasattr(writer, "schedule_write")
        or not hasattr(writer, "buffer_message")
    ):
        raise ImportError(
            "dbus-fast changed its writer internals: check whether it still drops the "
            "connection on EAGAIN and update libervia/frontends/bridge/dbus_fast_compat.py"
        )
    init_code = writer.__init__.__code__
    absent = [name for name in _ATTRIBUTES if name not in init_code.co_names]
    if absent:
        raise ImportError(f"dbus-fast's _MessageWriter lacks {absent}: update the compat fix")
    writer.write_callback = _write_callback
    writer.schedule_write = _schedule_write


def is_installed() -> bool:
    writer = message_bus._MessageWriter
    return writer.write_callback is _write_callback and writer.schedule_write is _schedule_write


install()
