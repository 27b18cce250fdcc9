"""``libervia.conf``: the INI configuration file, with typed access.

The file is looked up, in order, at the path given by the ``LIBERVIA_CONFIG`` environment
variable, then at ``<XDG config dir>/libervia/libervia.conf``. A missing file is not an error: the
embedded defaults need no configuration at all.

Options used by the backend (section ``[DEFAULT]``):

``local_dir``
    where Libervia keeps its data (default: the XDG data dir, e.g. ``~/.local/share/libervia``);
``db_url``
    SQLAlchemy URL of the database (default: ``sqlite+aiosqlite:///<local_dir>/libervia.db``);
    PostgreSQL: ``postgresql+asyncpg://user:password@host:port/dbname``;
``log_level``
    ``DEBUG``, ``INFO`` (the daemon's default), ``WARNING``, ``ERROR`` or ``CRITICAL``; the
    ``--log-level`` option of ``libervia-backend`` overrides it;
``log_format``
    ``full`` (with timestamps), ``short`` (without), ``journal`` (syslog priority prefixes for
    journald, no timestamps) or a :mod:`logging` format string; by default ``full``, or
    ``journal`` when stderr is connected to the systemd journal (see
    :mod:`libervia.backend.core.log`);
``log_file``
    log to this file (relative paths are relative to ``local_dir``) instead of the default:
    stderr for ``libervia-backend fg``, ``<local_dir>/libervia-backend.log`` for
    ``libervia-backend start``;
``plugins_disabled``
    import names of plugins not to load (e.g. ``XEP-0203 XEP-0359``, comma or space
    separated); read by the host;
``default_profile``
    the profile ``@DEFAULT@`` names when none was chosen with ``profile_set_default`` (the
    ``General/default_profile`` parameter); without either, the first profile by name; read by
    the host.

The daemon also keeps its pid file, ``libervia-backend.pid``, in ``local_dir``.

Everything the daemon writes there (database, backups, logs, pid file, received files) is the
user's only: directories 0700, files 0600 (:data:`PRIVATE_UMASK`, :func:`private_dir`).
"""

from __future__ import annotations

import configparser
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from libervia.backend.core import constants as C
from libervia.backend.core.exceptions import ConfigError

DEFAULT_SECTION = "DEFAULT"
#: the daemon's umask: new files 0600, new directories 0700 (history, keys, logs are private)
PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path, *, restrict: bool = True) -> Path:
    """Create ``path`` and its missing parents as directories of the user only (0700).

    With ``restrict`` an existing ``path`` is made 0700 too (a directory the daemon owns, such
    as ``local_dir`` made by an older version); without it, an existing directory (chosen by
    the user, e.g. ``~/Downloads``) is left as it is. Returns ``path``.

    Raises:
        OSError: a directory cannot be created or its mode changed.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue
        # mkdir's mode is masked by the umask, which may also strip the user's own bits
        os.chmod(directory, PRIVATE_DIR_MODE)
    if restrict and not missing and path.is_dir():
        if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR_MODE:
            os.chmod(path, PRIVATE_DIR_MODE)
    return path


def default_config_path() -> Path:
    """Return the path of the configuration file (``LIBERVIA_CONFIG`` wins)."""
    env = os.environ.get(C.CONFIG_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(C.APP_NAME_FILE)) / C.CONFIG_FILE_NAME


@dataclass
class Config:
    """Parsed configuration; read options with the typed getters."""

    path: Path
    parser: configparser.ConfigParser = field(repr=False)

    @classmethod
    def load(cls, path: Path | str | None = None) -> Config:
        """Load the configuration file (a missing file gives the defaults).

        Raises:
            ConfigError: the file exists but is not valid INI.
        """
        config_path = Path(path).expanduser() if path is not None else default_config_path()
        parser = configparser.ConfigParser(interpolation=None)
        if config_path.exists():
            try:
                parser.read(config_path, encoding="utf-8")
            except (configparser.Error, UnicodeDecodeError) as e:
                raise ConfigError(f"invalid configuration file {config_path}: {e}") from e
        return cls(config_path, parser)

    def get(
        self, name: str, default: str | None = None, section: str = DEFAULT_SECTION
    ) -> str | None:
        """Return an option as a string, or ``default``."""
        if section != DEFAULT_SECTION and not self.parser.has_section(section):
            section = DEFAULT_SECTION
        value = self.parser.get(section, name, fallback=None)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def get_bool(self, name: str, default: bool = False, section: str = DEFAULT_SECTION) -> bool:
        """Return a boolean option (``true/false``, ``yes/no``, ``1/0``, ``on/off``)."""
        value = self.get(name, None, section)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option {name!r} in {self.path}: {value!r} is not a boolean")

    def get_int(self, name: str, default: int, section: str = DEFAULT_SECTION) -> int:
        """Return an integer option."""
        value = self.get(name, None, section)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"option {name!r} in {self.path}: {value!r} is not an integer"
            ) from None

    def get_float(
        self,
        name: str,
        default: float,
        section: str = DEFAULT_SECTION,
        minimum: float | None = None,
    ) -> float:
        """Return a number option (seconds, ratios...), at least ``minimum`` when given."""
        value = self.get(name, None, section)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(
                f"option {name!r} in {self.path}: {value!r} is not a number"
            ) from None
        if minimum is not None and number < minimum:
            raise ConfigError(
                f"option {name!r} in {self.path}: {value!r} must be at least {minimum:g}"
            )
        return number

    @property
    def local_dir(self) -> Path:
        """Directory of Libervia's data (created on demand by the callers that write there)."""
        value = self.get("local_dir")
        if value:
            return Path(value).expanduser()
        return Path(platformdirs.user_data_dir(C.APP_NAME_FILE))

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the database."""
        return self.get("db_url") or f"sqlite+aiosqlite:///{self.local_dir / C.DB_FILE_NAME}"
