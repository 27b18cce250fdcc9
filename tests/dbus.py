"""A private ``dbus-daemon --session`` for the tests (a pytest plugin, registered by
``tests/conftest.py`` so that every tier can use its fixtures).

Fixtures:

- ``dbus_daemon``: a started :class:`DBusDaemon` (stopped afterwards, with any service it
  started by D-Bus activation);
- ``bus_address``: its address (``unix:path=...``).

Nothing here talks to the user's own session bus.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
{servicedirs}
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
  <limit name="max_replies_per_connection">100000</limit>
</busconfig>
"""


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (D-Bus activated services, and dbus-daemon's babysitter)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def wait_pid_gone(pid: int, timeout: float) -> bool:
    """Wait (without polling in a loop of sleeps) until a process that is not our child ends."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


class DBusDaemon:
    """A throwaway session bus on a socket in a temp dir.

    ``service_dirs`` are searched for D-Bus activation ``.service`` files. Services the daemon
    starts are terminated by :meth:`stop`.
    """

    def __init__(self, service_dirs: Sequence[Path] = ()) -> None:
        self.service_dirs = list(service_dirs)
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self) -> None:
        if shutil.which("dbus-daemon") is None:
            pytest.fail("dbus-daemon is missing: install the Debian 'dbus-daemon' package")
        self.directory = Path(tempfile.mkdtemp(prefix="libervia-dbus-"))
        socket_path = self.directory / "bus"
        config = self.directory / "session.conf"
        dirs = "\n".join(f"  <servicedir>{escape(str(d))}</servicedir>" for d in self.service_dirs)
        config.write_text(CONFIG.format(socket=escape(str(socket_path)), servicedirs=dirs))
        self.process = subprocess.Popen(
            ["dbus-daemon", "--nofork", f"--config-file={config}", "--print-address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        # the daemon prints its address once it listens (or exits on a bad config)
        if not self.process.stdout.readline():
            error = self.process.stderr.read().decode() if self.process.stderr else ""
            self.stop()
            pytest.fail(f"dbus-daemon did not start: {error}")
        self.address = f"unix:path={socket_path}"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            services = _descendants(process.pid)
            process.terminate()
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
            for pid in services:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                if not wait_pid_gone(pid, 10):
                    os.kill(pid, signal.SIGKILL)
                    wait_pid_gone(pid, 10)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> DBusDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def dbus_daemon() -> Iterator[DBusDaemon]:
    """A private dbus-daemon (stopped and removed afterwards)."""
    with DBusDaemon() as daemon:
        yield daemon


@pytest.fixture
def bus_address(dbus_daemon: DBusDaemon) -> str:
    """Address of a private dbus-daemon."""
    return dbus_daemon.address


__all__ = ["DBusDaemon", "bus_address", "dbus_daemon", "wait_pid_gone"]
