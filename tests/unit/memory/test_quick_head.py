"""quick_head: the head revision without importing Alembic, checked against Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from libervia.backend.memory.schema import MIGRATION_DIR, alembic_config, quick_head


def write(versions: Path, name: str, revision: str, down: str) -> None:
    (versions / f"{name}.py").write_text(
        f'"""{name}"""\nrevision: str = "{revision}"\ndown_revision: str | None = {down}\n'
    )


def test_matches_alembic_on_the_real_migrations() -> None:
    head = ScriptDirectory.from_config(alembic_config(MIGRATION_DIR)).get_current_head()
    assert head is not None
    assert quick_head(MIGRATION_DIR) == head


def test_chain_and_unclear_cases(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    write(versions, "a", "0001", "None")
    write(versions, "b", "0002", '"0001"  # comment')
    write(versions, "c", "0003", "'0002'")
    assert quick_head(tmp_path) == "0003"
    # two heads, then a merge: Alembic must decide
    write(versions, "d", "0004", '"0002"')
    assert quick_head(tmp_path) is None
    write(versions, "e", "0005", '("0003", "0004")')
    assert quick_head(tmp_path) is None
    assert quick_head(tmp_path / "missing") is None
