"""The WebRTC data-channel benchmark runs (tiny scale), so that it cannot rot unnoticed.

It starts its own Prosody, dbus-daemon, daemon, li processes and bare aiortc peers; the
figures are not checked against a target, only that every part ran, every file arrived
verified over the data channel and the figures are sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(150),
]


def test_webrtc_benchmark_runs() -> None:
    """bench/webrtc.py at 1/20 of its size: 1 MB, twice each way."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.webrtc", "--scale", "0.05", "--runs", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=140,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["problems"] == []
    assert figures["daemon_exit_code"] == 0
    assert figures["bytes"] == 1_000_000 and figures["runs"] == 2
    assert 0 < figures["bare_s"] < 30 and 0 < figures["stack_s"] <= figures["stack_end_to_end_s"]
    assert figures["ratio_to_bare"] > 0
