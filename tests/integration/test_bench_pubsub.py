"""The pubsub cache benchmark runs (tiny scale), so that it cannot rot unnoticed.

It starts its own Prosody, dbus-daemon and daemon; the figures are not checked against the
targets (a loaded CI machine may be slow), only that every part ran and gave sane numbers:
the blog on the server, its synchronisation, reads answered by the cache, the search.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(180),
]


def test_pubsub_benchmark_runs() -> None:
    """bench/pubsub.py at 1/100 of its size: a 100-post blog, 1,000 items searched."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.pubsub", "--scale", "0.01", "--calls", "5",
         "--warmup", "1", "--published", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["problems"] == []
    assert figures["daemon_exit_code"] == 0
    # the blog: 20 published over XMPP, 80 written into Prosody's storage, all served
    assert figures["items"] == figures["server_items"] == figures["server_distinct_items"] == 100
    assert figures["published"] == 20 and figures["appended"] == 80
    # read from the server, then synchronised and read from the cache: the same 20 posts
    assert figures["server_read20_counts"] == figures["cache_read20_counts"] == [20]
    assert figures["server_read20_cached"] is False
    assert figures["cache_read20_all_cached"] is True
    assert figures["cache_items"] == 100
    assert figures["same_items"] is True
    assert figures["sync_first_mb_get_cached"] is False  # the first read goes to the server
    # search over the synchronised blog and 900 items written at storage level
    assert figures["search_filled"] == 900
    assert figures["search_cached_total"] == 1000
    assert figures["search_rare_total"] == 10  # ~1%
    assert figures["search_bridge_results"] == figures["search_storage_results"] == 10
    assert figures["search_bridge_match"] is True
    for key in (
        "publish_items_per_s",
        "baseline_read20_median_ms",
        "baseline_fetch_all_s",
        "server_read20_median_ms",
        "cache_read20_median_ms",
        "read_ratio",
        "sync_forced_s",
        "sync_transparent_s",
        "search_fill_write_items_per_s",
        "search_storage_median_ms",
        "search_bridge_median_ms",
        "search_bridge_common_median_ms",
    ):
        assert 0 < figures[key] < 60_000, key
    assert set(figures["targets"]) == {"read_ratio", "search_bridge_median_ms"}
    assert "ratio server / cache" in result.stderr  # the table
