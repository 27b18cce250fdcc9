"""The bridge benchmark runs (tiny scale), so that it cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bridge_benchmark_runs(tmp_path: Path) -> None:
    """bench/bridge.py completes at a tiny scale and reports every figure and ratio."""
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bridge.py"),
            "--scale",
            "0.01",
            "--rounds",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    for kind in ("sequential", "pipelined", "signals"):
        assert figures[f"bridge_{kind}_per_s"] > 0, kind
        assert figures[f"raw_{kind}_per_s"] > 0, kind
        assert figures[f"{kind}_ratio"] > 0, kind
        assert figures[f"bridge_{kind}_cpu_us"] > 0, kind
        assert figures[f"{kind}_cpu_ratio"] > 0, kind
    assert figures["pipelined_count"] == 50
    assert "ratio = bridge / raw dbus-fast" in result.stdout
    assert result.stderr == ""
