"""Fixtures of the fault tests: a real Prosody for the session (as in tests/e2e) and helpers to
kill and restart the processes under test (daemon, Prosody, dbus-daemon)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon
from tests.e2e.prosody import Prosody


@pytest.fixture(scope="session")
def prosody() -> Iterator[Prosody]:
    with Prosody() as server:
        yield server


@pytest.fixture
def bus() -> Iterator[DBusDaemon]:
    """A private session bus for one test (some tests restart it)."""
    with DBusDaemon() as daemon:
        yield daemon


def kill_daemon(daemon: Daemon) -> None:
    """SIGKILL the daemon (no clean shutdown at all) and reap it."""
    process, daemon.process = daemon.process, None
    assert process is not None and process.poll() is None, daemon.logs()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def kill_prosody(server: Prosody) -> None:
    """SIGKILL Prosody (nothing closed cleanly) and start it again on the same data."""
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    server._spawn()


def restart_bus(bus: DBusDaemon) -> None:
    """Stop the dbus-daemon and start a new one listening on the same socket path."""
    assert bus.process is not None and bus.directory is not None
    process = bus.process
    process.terminate()
    process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    config = bus.directory / "session.conf"
    bus.process = subprocess.Popen(
        ["dbus-daemon", "--nofork", f"--config-file={config}", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert bus.process.stdout is not None
    assert bus.process.stdout.readline(), "dbus-daemon did not start again"


def db_file(daemon: Daemon) -> Path:
    return daemon.directory / "local" / "libervia.db"


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def count_rows(path: Path, table: str = "history") -> int:
    """Rows of a table, read while the daemon writes (WAL: readers never block it)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 30, what: str = ""
) -> float:
    """Wait until ``condition()`` is true; returns the time it took."""
    start = time.monotonic()
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        await asyncio.sleep(0.05)
