"""core.config: file lookup, defaults, typed getters."""

from pathlib import Path

import pytest

from libervia.backend.core.config import Config
from libervia.backend.core.exceptions import ConfigError


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No file: local_dir is the XDG data dir, db_url SQLite in it."""
    monkeypatch.setenv("LIBERVIA_CONFIG", str(tmp_path / "missing.conf"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    config = Config.load()
    assert config.local_dir == tmp_path / "data" / "libervia"
    assert config.db_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'libervia' / 'libervia.db'}"


def test_values_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LIBERVIA_CONFIG points to the file; options and typed getters read it."""
    conf = tmp_path / "libervia.conf"
    conf.write_text(
        "[DEFAULT]\nlocal_dir = ~/libervia-data\ndb_url = postgresql+asyncpg://u@h/db\n"
        "flag = yes\ncount = 3\nbad_int = x\n[plugin]\nflag = off\n"
    )
    monkeypatch.setenv("LIBERVIA_CONFIG", str(conf))
    config = Config.load()
    assert config.local_dir == Path("~/libervia-data").expanduser()
    assert config.db_url == "postgresql+asyncpg://u@h/db"
    assert config.get_bool("flag") is True
    assert config.get_bool("flag", section="plugin") is False
    assert config.get_bool("flag", section="unknown") is True
    assert config.get_bool("missing", default=True) is True
    assert config.get_int("count", 0) == 3
    with pytest.raises(ConfigError, match="bad_int"):
        config.get_int("bad_int", 0)


def test_invalid_file(tmp_path: Path) -> None:
    """A file that is not INI gives a ConfigError naming it."""
    conf = tmp_path / "libervia.conf"
    conf.write_text("no section header\n")
    with pytest.raises(ConfigError, match="libervia.conf"):
        Config.load(conf)


def test_float_options(tmp_path: Path) -> None:
    """Numbers: default when unset, a clear ConfigError when not a number or below minimum."""
    path = tmp_path / "libervia.conf"
    path.write_text("[DEFAULT]\na = 2.5\nb = x\nc = -1\n")
    config = Config.load(path)
    assert config.get_float("a", 1.0) == 2.5
    assert config.get_float("missing", 1.0) == 1.0
    assert config.get_float("c", 0.0) == -1.0
    with pytest.raises(ConfigError, match="not a number"):
        config.get_float("b", 1.0)
    with pytest.raises(ConfigError, match="at least 0"):
        config.get_float("c", 1.0, minimum=0)
