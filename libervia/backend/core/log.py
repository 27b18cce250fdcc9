"""Logging setup.

Modules get their logger with :func:`get_logger` (a standard :mod:`logging` logger named after the
module); the daemon configures handlers once with :func:`configure`.

Formats (the ``log_format`` option of ``libervia.conf``), by name or as a :mod:`logging` format
string:

``full``
    ``2025-01-31 12:00:00,123 INFO     [libervia.backend.daemon] message`` (the default);
``short``
    the same without the timestamp;
``journal``
    ``<6>[libervia.backend.daemon] message``: no timestamp (the journal adds its own) and the
    syslog priority prefix that journald understands (``sd-daemon(3)``), so ``journalctl -p``
    filters by level. Chosen automatically when stderr is connected to the journal (systemd
    sets ``JOURNAL_STREAM``).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)-8s [%(name)s] %(message)s"
FORMATS = {
    "full": LOG_FORMAT,
    "short": "%(levelname)-8s [%(name)s] %(message)s",
    "journal": "<%(syslog_priority)d>[%(name)s] %(message)s",
}
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# chatty third-party loggers, kept at WARNING unless the level is DEBUG
QUIET_LOGGERS = ("alembic.runtime.plugins",)


def get_logger(name: str) -> logging.Logger:
    """Return the logger of a module (call with ``__name__``)."""
    return logging.getLogger(name)


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (journald reads it from a ``<N>`` prefix)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class _Formatter(logging.Formatter):
    """A formatter that also offers ``%(syslog_priority)d``."""

    def format(self, record: logging.LogRecord) -> str:
        record.syslog_priority = syslog_priority(record.levelno)
        text = super().format(record)
        if self._fmt is not None and self._fmt.startswith("<%(syslog_priority)d>"):
            # one journal entry per line: continuation lines (tracebacks) keep the priority
            prefix = f"<{record.syslog_priority}>"
            text = text.replace("\n", "\n" + prefix)
        return text


def check_level(level: str) -> str:
    """Return the upper-case level name.

    Raises:
        ValueError: not a logging level name.
    """
    upper = level.strip().upper()
    if upper not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    return upper


def resolve_format(fmt: str | None, stream: TextIO | None = None) -> str:
    """The format string of a format name or string; ``None`` chooses ``full``, or ``journal``
    when ``stream`` (stderr by default) is connected to the systemd journal."""
    if fmt is None or fmt == "":
        return FORMATS["journal"] if stderr_is_journal(stream) else FORMATS["full"]
    return FORMATS.get(fmt, fmt)


def stderr_is_journal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stderr by default) is the journal stream systemd gave us.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` for the stream connected to the journal;
    children whose stderr was redirected elsewhere inherit the variable, hence the comparison.
    """
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def private_log_file(path: Path) -> None:
    """Create the log file readable by the user only (0600), or make an existing regular file
    0600 (logs name contacts and servers). Other files (``/dev/null``...) are left alone.

    Raises:
        OSError: the file cannot be created.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def configure(
    level: str = "INFO", filename: str | Path | None = None, fmt: str | None = LOG_FORMAT
) -> None:
    """Configure the root logger once: console (stderr) or a file.

    Args:
        level: a level name (``DEBUG`` ... ``CRITICAL``, any case).
        filename: log to this file (appended; created 0600, or made 0600) instead of
            stderr.
        fmt: a format name of :data:`FORMATS` or a :mod:`logging` format string; ``None``
            chooses (see :func:`resolve_format`).
    """
    handler: logging.Handler
    if filename:
        private_log_file(Path(filename))
        handler = logging.FileHandler(filename, encoding="utf-8")
        fmt = FORMATS["full"] if fmt is None else FORMATS.get(fmt, fmt)
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = resolve_format(fmt)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level.upper() == "DEBUG" else "WARNING")
