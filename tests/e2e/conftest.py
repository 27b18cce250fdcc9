"""End-to-end fixtures: a real Prosody on 127.0.0.1 (see prosody.py), and per test module a
private bus with the daemon running on it (see daemon.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon
from tests.e2e.prosody import Prosody


@pytest.fixture(scope="session")
def prosody() -> Iterator[Prosody]:
    with Prosody() as server:
        yield server


@pytest.fixture(scope="module")
def bus() -> Iterator[DBusDaemon]:
    """A private session bus for the test module."""
    with DBusDaemon() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def daemon(bus: DBusDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon on the module's bus; it must stop cleanly (exit code 0) at the end."""
    process = Daemon(tmp_path_factory.mktemp("daemon"), bus.address)
    process.start()
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, process.logs()
