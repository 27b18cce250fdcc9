"""Database fixtures: every storage test runs on SQLite and on a real PostgreSQL.

Set ``LIBERVIA_TEST_POSTGRESQL=0`` to run the SQLite half only (the PostgreSQL half is then
reported as skipped, never silently dropped). The README test command installs PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from libervia.backend.memory.sqla import Storage
from tests.conftest import run
from tests.integration.postgresql import Cluster

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    if os.environ.get("LIBERVIA_TEST_POSTGRESQL", "1") == "0":
        pytest.skip("PostgreSQL disabled by LIBERVIA_TEST_POSTGRESQL=0")
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """URL of a database that does not exist yet (SQLite) or is empty (PostgreSQL)."""
    if engine_name == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'libervia.db'}"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


@pytest.fixture
def storage(empty_db_url: str) -> Iterator[Storage]:
    """An initialised Storage (database created by running the migrations)."""
    st = Storage(empty_db_url)
    run(st.initialise())
    try:
        yield st
    finally:
        run(st.close())
