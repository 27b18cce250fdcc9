"""``libervia-backend db``: the README's run command creates/migrates the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def backend(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "libervia.backend", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LIBERVIA_CONFIG": "/nonexistent"},
    )


def test_creates_then_finds_database(tmp_path: Path) -> None:
    """First run creates the database in local_dir, the second finds it up to date."""
    config = tmp_path / "libervia.conf"
    config.write_text(f"[DEFAULT]\nlocal_dir = {tmp_path / 'local'}\n")
    first = backend("db", config=config)
    assert first.returncode == 0, first.stderr
    db = tmp_path / "local" / "libervia.db"
    assert f"database: {db}" in first.stdout and "created" in first.stdout
    second = backend("db", "--json", config=config)
    assert second.returncode == 0, second.stderr
    info = json.loads(second.stdout)
    assert info["path"] == str(db) and info["state"] == "up_to_date" and info["profiles"] == []


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    """A corrupted database or a bad URL gives exit code 1 and a readable message."""
    bad = tmp_path / "bad.db"
    bad.write_text("not a database")
    config = tmp_path / "libervia.conf"
    config.write_text(f"[DEFAULT]\ndb_url = sqlite+aiosqlite:///{bad}\n")
    result = backend(config=config)
    assert result.returncode == 1
    assert "left untouched" in result.stderr and "Traceback" not in result.stderr
    assert bad.read_text() == "not a database"
    config.write_text("[DEFAULT]\ndb_url = nosuchdb://x\n")
    result = backend(config=config)
    assert result.returncode == 1
    assert "invalid database URL" in result.stderr and "Traceback" not in result.stderr
