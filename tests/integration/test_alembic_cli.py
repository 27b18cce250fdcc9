"""The ``alembic`` command works from the repository root and from the migration directory,
with ``-x db_url=URL`` or with the database of the user's configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from libervia.backend.memory import schema

ROOT = Path(__file__).resolve().parents[2]
LOCATIONS = {"root": ROOT, "migration-dir": schema.MIGRATION_DIR}


def alembic(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("where", LOCATIONS)
def test_upgrade_check_downgrade(where: str, empty_db_url: str) -> None:
    """upgrade head, check, current, downgrade base and upgrade again, with -x db_url."""
    cwd = LOCATIONS[where]
    x = f"db_url={empty_db_url}"
    alembic(cwd, "-x", x, "upgrade", "head")
    assert "No new upgrade operations detected" in alembic(cwd, "-x", x, "check")
    assert "(head)" in alembic(cwd, "-x", x, "current")
    alembic(cwd, "-x", x, "downgrade", "base")
    assert "(head)" not in alembic(cwd, "-x", x, "current")
    alembic(cwd, "-x", x, "upgrade", "head")
    assert "(head)" in alembic(cwd, "-x", x, "current")


@pytest.mark.parametrize("where", LOCATIONS)
def test_database_from_user_config(where: str, tmp_path: Path) -> None:
    """Without -x db_url, alembic uses the db_url of libervia.conf (LIBERVIA_CONFIG)."""
    db = tmp_path / "data" / "from-config.db"
    conf = tmp_path / "libervia.conf"
    conf.write_text(f"[DEFAULT]\ndb_url = sqlite+aiosqlite:///{db}\n")
    alembic(LOCATIONS[where], "upgrade", "head", env={"LIBERVIA_CONFIG": str(conf)})
    assert db.exists()
    out = alembic(LOCATIONS[where], "current", env={"LIBERVIA_CONFIG": str(conf)})
    assert "(head)" in out


@pytest.mark.parametrize("where", LOCATIONS)
def test_default_database_in_local_dir(where: str, tmp_path: Path) -> None:
    """With only local_dir configured, the database is libervia.db in it."""
    conf = tmp_path / "libervia.conf"
    conf.write_text(f"[DEFAULT]\nlocal_dir = {tmp_path / 'local'}\n")
    alembic(LOCATIONS[where], "upgrade", "head", env={"LIBERVIA_CONFIG": str(conf)})
    assert (tmp_path / "local" / "libervia.db").exists()


@pytest.mark.parametrize("where", LOCATIONS)
def test_autogenerate_revision(where: str, tmp_path: Path) -> None:
    """revision --autogenerate writes a new revision on top of head (empty: nothing drifted)."""
    db = tmp_path / "autogen.db"
    x = f"db_url=sqlite+aiosqlite:///{db}"
    cwd = LOCATIONS[where]
    alembic(cwd, "-x", x, "upgrade", "head")
    rev_id = f"test{uuid.uuid4().hex[:8]}"
    before = set((schema.MIGRATION_DIR / "versions").iterdir())
    try:
        alembic(cwd, "-x", x, "revision", "--autogenerate", "-m", "nothing", "--rev-id", rev_id)
        created = set((schema.MIGRATION_DIR / "versions").iterdir()) - before
        assert len(created) == 1
        text = created.pop().read_text()
        assert f'revision: str = "{rev_id}"' in text or f"revision: str = '{rev_id}'" in text
        # no drift: the generated upgrade does nothing
        assert "op." not in text
    finally:
        for path in set((schema.MIGRATION_DIR / "versions").iterdir()) - before:
            path.unlink()
