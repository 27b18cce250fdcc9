"""The archive catch-up benchmark runs (tiny scale), so that it cannot rot unnoticed.

It starts its own Prosody, dbus-daemon and daemon; the figures are not checked (a loaded CI
machine may be slow), only that every archived message was stored once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(300),
]


def test_mam_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mam.py"), "--messages", "120", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["all_once"] is True
    assert figures["in_history"] == figures["distinct_in_history"] == 120
    assert figures["baseline_pages"] >= 2  # paged (Prosody answers at most 50 per page)
    assert figures["second_signals"] == 0
