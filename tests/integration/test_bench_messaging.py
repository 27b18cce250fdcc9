"""The messaging benchmark runs (tiny scale), so that it cannot rot unnoticed.

It starts its own Prosody, dbus-daemon and daemon; the figures are not checked (a loaded CI
machine may be slow), only that every figure is reported and that no message was lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(600),
]


def test_messaging_benchmark_runs() -> None:
    """bench/messaging.py completes at a tiny scale, every message arrives and is stored."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "messaging.py"),
            "--messages",
            "50",
            "--latency-count",
            "10",
            "--warmup",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["all_arrived"] is True
    assert figures["throughput_received"] == 50
    assert figures["throughput_in_bob_history"] == 50
    assert figures["throughput_duplicates"] == 0
    assert figures["baseline_received"] == 50
    assert figures["daemon_exit_code"] == 0
    # 12 sequential messages (2 of warm-up), then 50 to bob: all in bob's history with alice
    assert figures["bob_history_total"] == 62
    for key in (
        "daemon_first_start_to_ready_s",
        "daemon_start_to_ready_s",
        "rss_connected_mib",
        "rss_after_throughput_mib",
        "latency_median_ms",
        "latency_p95_ms",
        "latency_max_ms",
        "message_send_call_median_ms",
        "throughput_msgs_per_s",
        "baseline_latency_median_ms",
        "baseline_throughput_msgs_per_s",
        "throughput_ratio_to_baseline",
        "latency_ratio_to_baseline",
    ):
        assert figures[key] > 0, key
    for key in (
        "throughput_cpu_daemon_ms_per_msg",
        "throughput_cpu_daemon_main_thread_ms_per_msg",
        "throughput_cpu_prosody_ms_per_msg",
        "throughput_cpu_dbus_ms_per_msg",
        "throughput_cpu_other_s",
        "baseline_cpu_prosody_ms_per_msg",
        "baseline_cpu_bench_ms_per_msg",
    ):
        assert figures[key] >= 0, key
    assert set(figures["targets"]) == {
        "rss_after_throughput_mib",
        "latency_median_ms",
        "throughput_msgs_per_s",
        "throughput_ratio_to_baseline",
    }
    assert "throughput ratio daemon / bare pair" in result.stderr  # the table
