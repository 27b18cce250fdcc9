"""core.log: formats (full, short, journal with syslog priorities), journal detection, levels."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from libervia.backend.core import log


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("libervia.x", level, __file__, 1, message, None, None)


def test_journal_format_has_priorities_on_every_line() -> None:
    """journald reads <N> at the start of each line: tracebacks keep their entry's priority."""
    formatter = log._Formatter(log.FORMATS["journal"])
    assert formatter.format(record(logging.INFO, "hello")) == "<6>[libervia.x] hello"
    assert formatter.format(record(logging.WARNING, "w")) == "<4>[libervia.x] w"
    assert formatter.format(record(logging.ERROR, "a\nb")) == "<3>[libervia.x] a\n<3>b"
    assert log.syslog_priority(logging.DEBUG) == 7
    assert log.syslog_priority(logging.CRITICAL) == 2


def test_format_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Named formats, custom strings; by default journal only if stderr *is* the journal."""
    assert log.resolve_format("short") == log.FORMATS["short"]
    assert log.resolve_format("%(message)s") == "%(message)s"
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        assert log.resolve_format(None, stream) == log.FORMATS["full"]
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert log.resolve_format(None, stream) == log.FORMATS["journal"]
        assert log.resolve_format("full", stream) == log.FORMATS["full"]
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")  # inherited
        assert log.resolve_format(None, stream) == log.FORMATS["full"]
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert log.resolve_format(None, stream) == log.FORMATS["full"]


def test_check_level() -> None:
    assert log.check_level(" debug ") == "DEBUG"
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        log.check_level("loud")
