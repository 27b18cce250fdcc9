"""Logging setup.

Modules get their logger with :func:`get_logger` (a standard :mod:`logging` logger named after the
module); the daemon configures handlers once with :func:`configure`.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)-8s [%(name)s] %(message)s"


def get_logger(name: str) -> logging.Logger:
    """Return the logger of a module (call with ``__name__``)."""
    return logging.getLogger(name)


def configure(level: str = "INFO", filename: str | None = None, fmt: str = LOG_FORMAT) -> None:
    """Configure the root logger once: console (stderr) or a file."""
    handler: logging.Handler
    if filename:
        handler = logging.FileHandler(filename, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
