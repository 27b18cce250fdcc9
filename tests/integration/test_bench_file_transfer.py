"""The file transfer benchmark runs (tiny scale), so that it cannot rot unnoticed.

It starts its own Prosody, dbus-daemons and daemons; the figures are not checked against the
target (a loaded CI machine may be slow), only that every part ran, every file arrived
verified and the figures are sane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(120),
]


def test_file_transfer_benchmark_runs() -> None:
    """bench/file_transfer.py at 1/100 of its size: 2 MB over SOCKS5, 200 kB over IBB."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.file_transfer", "--scale", "0.01", "--runs", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["problems"] == []
    assert figures["daemon_exit_codes"] == [0, 0]
    assert (figures["s5b_bytes"], figures["s5b_one_bytes"]) == (2_000_000, 2_000_000)
    assert figures["ibb_bytes"] == 200_000
    assert (figures["s5b_runs"], figures["s5b_one_runs"], figures["ibb_runs"]) == (2, 2, 1)
    for name in ("s5b", "s5b_one", "ibb"):
        assert figures[f"{name}_all_verified"] is True, name
        assert 0 < figures[f"{name}_transfer_s"] <= figures[f"{name}_end_to_end_s"] < 60, name
        assert figures[f"{name}_ratio_to_raw"] > 0, name
    assert 0 < figures["raw_copy_s"] < 10 and figures["sha256_mb_per_s"] > 0
    assert figures["target_s5b_ratio"] == 0.5
    assert isinstance(figures["target_met"], bool)
    assert "of the raw copy" in result.stderr  # the table
