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


def _write_callback(self: Any, remove_writer: bool = True) -> None:
    """dbus-fast's write loop, with EAGAIN/EINTR meaning "wait until writable"."""
    sock = self.sock
    try:
        while True:
            if self.buf is None:
                if not self.messages:
                    if remove_writer:
                        self.loop.remove_writer(self.fd)
                    return
                buf, unix_fds, fut = self.messages.popleft()
                self.unix_fds = unix_fds
                self.buf = memoryview(buf)
                self.offset = 0
                self.fut = fut
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
                return
            self.buf = None
            message_bus._future_set_result(self.fut, None)
    except Exception as e:
        if self.bus._user_disconnect:
            message_bus._future_set_result(self.fut, None)
        else:
            message_bus._future_set_exception(self.fut, e)
        self.bus._finalize(e)


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
    if writer is None or missing or not hasattr(writer, "write_callback"):
        raise ImportError(
            "dbus-fast changed its writer internals: check whether it still drops the "
            "connection on EAGAIN and update libervia/frontends/bridge/dbus_fast_compat.py"
        )
    init_code = writer.__init__.__code__
    absent = [name for name in _ATTRIBUTES if name not in init_code.co_names]
    if absent:
        raise ImportError(f"dbus-fast's _MessageWriter lacks {absent}: update the compat fix")
    writer.write_callback = _write_callback


def is_installed() -> bool:
    return message_bus._MessageWriter.write_callback is _write_callback


install()
