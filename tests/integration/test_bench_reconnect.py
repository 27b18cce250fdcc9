"""The reconnection benchmark runs (tiny scale), so that it cannot rot unnoticed.

It starts its own Prosody, dbus-daemon and daemon; the figures are not checked (a loaded CI
machine may be slow), only that every profile came back after every restart.
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


def test_reconnect_benchmark_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "reconnect.py"),
            "--profiles",
            "2",
            "--restarts",
            "1",
            "--delay",
            "0.1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["ok"] is True
    (run,) = figures["runs"]
    assert run["back"] == 2 and run["all_back_s"] is not None
