"""The storage benchmark runs (tiny scale), so that it cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_storage_benchmark_runs(tmp_path: Path) -> None:
    """bench/storage.py completes at a tiny scale and reports every figure."""
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "storage.py"),
            "--scale",
            "0.003",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())["sqlite"]
    for key in (
        "add_to_history_batched_msgs_per_s",
        "raw_sqlite3_executemany_msgs_per_s",
        "add_to_history_vs_raw_ratio",
        "history_get_peer_last20_median_ms",
        "search_pubsub_items_fts_1pct_median_ms",
    ):
        assert figures[key] > 0, key
    assert "ratio add_to_history / raw" in result.stdout
