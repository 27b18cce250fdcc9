"""The scale and load benchmarks run (tiny scale), so that they cannot rot unnoticed.

Each starts its own Prosody, dbus-daemon and daemon; the figures are not checked against the
targets (a loaded CI machine may be slow), only that every part ran, nothing was lost and the
figures are sane.
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


def run(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout)) | {"_table": result.stderr}


def test_scale_benchmark_runs() -> None:
    """bench/scale.py with 4 profiles: accounts written in bulk log in, every profile connects
    and gets every message once."""
    f = run("bench.scale", "--profiles", "4", "--rounds", "2", "--baseline-messages", "3",
            "--idle", "0.2", "--prosodyctl-sample", "1")  # fmt: skip
    assert f["ok"] is True
    assert f["connect_failed"] == [] and f["connected"] == 4
    assert f["baseline_received"] == 3 and f["baseline_missing"] == 0
    assert f["all_messages"] == f["all_received"] == 8
    assert f["all_missing"] == f["starved_profiles"] == f["duplicates"] == 0
    assert f["min_messages_per_profile"] == 2
    assert f["history_sample_ok"] is True
    assert f["daemon_exit_code"] == 0
    for key in ("prosodyctl_s_per_account", "bulk_s_per_account", "create_profiles_s",
                "connect_s", "all_s", "baseline_latency_median_ms", "all_latency_median_ms",
                "all_latency_max_ms", "all_worst_profile_median_ms"):  # fmt: skip
        assert 0 < f[key] < 60_000, key
    for key in ("rss_no_profile_connected_mib", "rss_1_profile_mib", "rss_all_connected_mib"):
        assert 20 < f[key] < 2000, key  # MiB
    assert f["all_latency_median_ms"] <= f["all_latency_max_ms"]
    assert "RSS per profile" in f["_table"]


def test_load_benchmark_runs() -> None:
    """bench/load.py at 1/100 of its size: every read answers its count with and without
    traffic, every incoming message is delivered and stored."""
    f = run("bench.load", "--scale", "0.01", "--calls", "3", "--warmup", "1")
    assert f["problems"] == []
    assert f["daemon_exit_code"] == 0
    assert f["messages"] == f["items"] == f["cached_items"] == 1000
    assert f["traffic_sent"] > 0
    assert f["traffic_sent"] == f["traffic_received"] == f["traffic_stored"]
    for phase in ("quiet", "load"):
        for read in ("history_peer20", "history_last20", "history_page", "history_search",
                     "cache_get20", "cache_page", "mb_get20", "search"):  # fmt: skip
            assert 0 < f[f"{phase}_{read}_median_ms"] < 10_000, (phase, read)
    assert set(f["targets"]) == {
        "load_history_peer20_median_ms",
        "load_history_last20_median_ms",
        "load_history_page_median_ms",
        "load_search_median_ms",
    }
    assert "20 msg/s in" in f["_table"]
