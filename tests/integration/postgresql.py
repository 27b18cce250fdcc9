"""A throwaway PostgreSQL cluster for the tests (initdb in a temp dir, 127.0.0.1, free port).

initdb refuses to run as root: as root, the cluster runs as the ``postgres`` system user (which
the Debian ``postgresql`` package creates).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.net import free_port


class PostgreSQLUnavailable(RuntimeError):
    pass


def find_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    found = shutil.which(name)
    if found:
        return found
    raise PostgreSQLUnavailable(
        f"PostgreSQL's {name} was not found: install the Debian 'postgresql' package (the README "
        "test command does it)"
    )


class Cluster:
    """A PostgreSQL server in a temporary directory; :meth:`stop` removes everything."""

    def __init__(self) -> None:
        self.initdb = find_bin("initdb")
        self.pg_ctl = find_bin("pg_ctl")
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="libervia-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "postgres"
        self._counter = 0
        self.started = False

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        if self.as_root:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            self.initdb,
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            self.pg_ctl,
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
        )
        self.started = True

    def stop(self) -> None:
        try:
            if self.started:
                self._run(self.pg_ctl, "stop", "-m", "fast", "-w", "-D", str(self.data))
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres") -> None:
        psql = find_bin("psql")
        self._run(
            psql,
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            statement,
        )

    def create_database(self, template: str | None = None) -> str:
        """Create a new database and return its SQLAlchemy URL."""
        self._counter += 1
        name = f"test_{os.getpid()}_{self._counter}"
        self.sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{name}"
