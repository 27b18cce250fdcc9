"""End-to-end fixtures: a real Prosody on 127.0.0.1 (see prosody.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.prosody import Prosody


@pytest.fixture(scope="session")
def prosody() -> Iterator[Prosody]:
    server = Prosody()
    try:
        server.start()
        yield server
    finally:
        server.stop()
