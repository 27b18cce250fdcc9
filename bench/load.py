"""Load benchmark: bridge reads on a 100,000-message history and a 100,000-item cached node,
with no traffic and while 20 messages/s arrive.

    .venv/bin/python -m bench.load                   # full size (~2-3 minutes)
    .venv/bin/python -m bench.load --scale 0.01      # 1,000 messages and items (smoke test)
    .venv/bin/python -m bench.load --json            # JSON on stdout, the table on stderr

Everything is private and on 127.0.0.1: a Prosody started for the run (tests/e2e/prosody.py),
a private ``dbus-daemon`` and the daemon in a temporary directory, driven through the bridge
client as a frontend would.

1. The data, written into the daemon's database (building it through Prosody would take
   hours, see bench/pubsub.py): the profile ``blogger`` is created through the bridge, then,
   the daemon stopped, its history gets N messages with 200 peers (N / 100 when smaller;
   bench/storage.py's ``message_rows``, inserted the way that benchmark builds its
   1,000,000-message history);
   the daemon is started again and ``blogger`` connected, then the cache gets one
   completed, subscribed blog node of N parsed Atom entries (bench/pubsub.py's
   ``fill_cache``, through ``Storage.cache_pubsub_items`` from this process: written before
   the connection, the cache's check of its nodes at connection would ask the node's
   service, which does not have it, and leave it uncached).
2. Each read is timed C times (after
   warm-up) through the bridge: ``history_get`` (last 20 with a peer; last 20; the page of 20
   before a message in the middle of the history; a full-text search for a word of one
   message), ``ps_cache_get`` (newest 20; a page at index N/2), ``mb_get`` of 20 posts
   answered by the cache, ``ps_cache_search`` (a word in ~1% of the items, 20 results).
3. The same reads again while a raw sender (a bare Twisted XMPP client) sends 20 chat
   messages per second to ``blogger`` (each stored and signalled by the daemon); every
   message must arrive (``message_new``) before the end.

Targets (doc/benchmarks.rst): ``history_get`` of 20 messages < 5 ms (storage benchmark, last
20 with a peer), ``ps_cache_search`` < 50 ms (pubsub benchmark); each is checked under load.
The other reads have no absolute target: their ratio loaded / quiet is reported.

The exit code is 1 when something is wrong (a message lost, a read failed or answered the
wrong count, the daemon failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mam import close  # noqa: E402
from bench.messaging import (  # noqa: E402
    CPU,
    available,
    chat,
    cpu_s,
    git_commit,
    login,
    own_cpu_s,
    print_figures,
    rss_mib,
    run_in_tempdir,
    system_busy_s,
)
from bench.pubsub import BLOGGER, RARE_WORD, fill_cache  # noqa: E402
from bench.storage import message_rows, raw_sqlite_insert  # noqa: E402
from libervia.backend.memory.sqla import Storage  # noqa: E402
from libervia.backend.plugins.plugin_xep_0277 import NS_MICROBLOG  # noqa: E402
from libervia.frontends.bridge.client import BridgeClient  # noqa: E402
from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon, make_account  # noqa: E402
from tests.e2e.prosody import DOMAIN, Prosody  # noqa: E402

PASSWORD = "xmpp-pass"
SENDER = "load-sender"
ME = "me@example.org"  # bench/storage.py's own side of the conversations


def peer_count(messages: int) -> int:
    """bench/storage.py's choice: 200 peers for the full size, >= ~100 messages each."""
    return max(1, min(200, messages // 100))


FRIEND = f"friend0@{DOMAIN}"  # the cached node's service (bench/pubsub.py's naming)
TARGETS = {
    # key: (target in ms, description)
    "load_history_peer20_median_ms": (5.0, "history_get last 20 with a peer, under load"),
    "load_history_last20_median_ms": (5.0, "history_get last 20, under load"),
    "load_history_page_median_ms": (5.0, "history_get page of 20 before a uid, under load"),
    "load_search_median_ms": (50.0, "ps_cache_search ~1% of the items, under load"),
}


async def fill_history(db_url: str, messages: int) -> float:
    """The history, written at storage level (daemon stopped) as bench/storage.py builds its
    big history (raw inserts into the migrated schema, full-text triggers included)."""
    storage = Storage(db_url)
    await storage.initialise()
    profile_id = storage.profiles.id_of(BLOGGER)
    await storage.close()
    path = Path(db_url.split("///", 1)[1])
    rng = random.Random(2)
    start = time.perf_counter()
    for i in range(0, messages, 20_000):
        rows = message_rows(
            min(20_000, messages - i), peer_count(messages), rng, t0=1.6e9 + i, first=i
        )
        raw_sqlite_insert(path, rows, profile_id)
    return time.perf_counter() - start


async def fill_node(db_url: str, items: int, out: dict[str, Any]) -> None:
    """The cached node (one completed, subscribed blog), through ``Storage`` (bench/pubsub.py's
    ``fill_cache``), while the daemon runs with ``blogger`` connected: at each connection the
    cache checks its synchronised nodes against their service, and this one exists only in
    the database (its service would answer ``forbidden``: the node would be left uncached)."""
    start = time.perf_counter()
    cache = await fill_cache(db_url, items, 0, 1)
    out["fill_cache_s"] = time.perf_counter() - start
    out["cached_items"] = cache["search_cached_total"]
    out["storage_search_median_ms"] = cache["search_storage_median_ms"]


class Traffic:
    """A raw sender: ``rate`` chat messages per second to ``blogger``, counted on arrival."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.sent: dict[str, float] = {}
        self.latency_ms: list[float] = []
        self.task: asyncio.Task[None] | None = None

    def on_message_new(self, *args: Any) -> None:
        text = args[4].get("", "")
        sent = self.sent.get(text)
        if sent is not None and args[8] == BLOGGER:
            self.latency_ms.append((time.perf_counter() - sent) * 1000)

    def start(self, xs: Any) -> None:
        self.task = asyncio.ensure_future(self._run(xs))

    async def _run(self, xs: Any) -> None:
        start = time.perf_counter()
        i = 0
        while True:
            # paced on the clock, not on sleeps: no drift
            due = start + i / self.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            text = f"load {i}"
            self.sent[text] = time.perf_counter()
            xs.send(chat(f"{BLOGGER}@{DOMAIN}", text))
            i += 1

    async def stop(self, timeout: float = 30) -> None:
        """Stop sending; wait until every message sent has arrived (or ``timeout``)."""
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        deadline = time.perf_counter() + timeout
        while len(self.latency_ms) < len(self.sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)


def reads(
    bridge: BridgeClient, messages: int, items: int, middle_uid: str, rng: random.Random
) -> dict[str, tuple[Callable[[], Awaitable[Any]], int]]:
    """name -> (a read, the number of results it must give)."""
    peers = peer_count(messages)

    async def history_peer20() -> Any:
        peer = f"peer{rng.randrange(peers)}@example.net"
        return await bridge.history_get(ME, peer, 20, True, {}, BLOGGER)

    async def history_search() -> Any:
        word = f"n{rng.randrange(messages)}"  # each message has its own number
        return await bridge.history_get("", "", 20, True, {"search": word}, BLOGGER)

    async def cache_page() -> Any:
        rsm = json.dumps({"max": 20, "index": items // 2})
        answer = await bridge.ps_cache_get(FRIEND, NS_MICROBLOG, 20, [], "", rsm, "", BLOGGER)
        return json.loads(answer)["items"]

    async def cache_get20() -> Any:
        answer = await bridge.ps_cache_get(FRIEND, NS_MICROBLOG, 20, [], "", "", "", BLOGGER)
        return json.loads(answer)["items"]

    async def mb_get20() -> Any:
        answer = json.loads(await bridge.mb_get(FRIEND, "", 20, [], "", BLOGGER))
        if not answer.get("cached"):
            raise RuntimeError("mb_get was not answered by the cache")
        return answer["items"]

    search = json.dumps({"fts": RARE_WORD, "limit": 20})
    page = {"before_uid": middle_uid}
    return {
        "history_peer20": (history_peer20, 20),
        "history_last20": (lambda: bridge.history_get("", "", 20, True, {}, BLOGGER), 20),
        "history_page": (lambda: bridge.history_get("", "", 20, True, page, BLOGGER), 20),
        "history_search": (history_search, 1),
        "cache_get20": (cache_get20, 20),
        "cache_page": (cache_page, 20),
        "mb_get20": (mb_get20, 20),
        "search": (lambda: bridge.ps_cache_search(search), min(20, items // 100)),
    }


async def time_reads(
    calls: dict[str, tuple[Callable[[], Awaitable[Any]], int]],
    count: int,
    warmup: int,
    phase: str,
    out: dict[str, Any],
) -> None:
    for name, (call, expected) in calls.items():
        for _ in range(warmup):
            await call()
        times = []
        for _ in range(count):
            start = time.perf_counter()
            result = await call()
            times.append((time.perf_counter() - start) * 1000)
            if isinstance(result, str):
                result = json.loads(result)
            if len(result) != expected:
                out["problems"].append(f"{phase} {name}: {len(result)} results, not {expected}")
        out[f"{phase}_{name}_median_ms"] = statistics.median(times)
        out[f"{phase}_{name}_p95_ms"] = sorted(times)[max(0, round(0.95 * count) - 1)]
        out[f"{phase}_{name}_max_ms"] = max(times)


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    messages = max(1000, round(100_000 * args.scale))
    items = max(1000, round(100_000 * args.scale))
    figures: dict[str, Any] = {
        "messages": messages,
        "items": items,
        "rate": args.rate,
        "calls": args.calls,
        "commit": git_commit(),
        "cores": os.cpu_count(),
        "problems": [],
    }
    prosody = Prosody()
    bus = DBusDaemon()
    daemon: Daemon | None = None
    try:
        prosody.start()
        bus.start()
        sender_jid = prosody.adduser(SENDER, PASSWORD)
        (directory / "daemon").mkdir()
        daemon = Daemon(directory / "daemon", bus.address, log_level="WARNING")
        daemon.start()
        bridge = await daemon.bridge(timeout=60)
        try:
            await make_account(bridge, prosody, BLOGGER, BLOGGER, PASSWORD)
        finally:
            await bridge.close()
            if daemon.stop() != 0:
                figures["problems"].append(f"the first daemon failed: {daemon.logs()}")
        db_url = f"sqlite+aiosqlite:///{daemon.directory / 'local' / 'libervia.db'}"
        figures["fill_history_s"] = await fill_history(db_url, messages)

        daemon.start()
        spawned = time.perf_counter()
        bridge = await daemon.bridge(timeout=60)
        figures["start_to_ready_s"] = time.perf_counter() - spawned
        try:
            await bridge.connect(BLOGGER, "", {}, timeout=60)
            await asyncio.sleep(1)  # the cache's check of its nodes at connection is done
            await fill_node(db_url, items, figures)
            await _measure(bridge, daemon, prosody, sender_jid, args, figures)
        finally:
            await bridge.close()
    except BaseException:
        if daemon is not None:
            print(f"daemon log (end):\n{daemon.logs()}", file=sys.stderr)
        raise
    finally:
        if daemon is not None:
            code = daemon.stop()
            figures["daemon_exit_code"] = code
            if code != 0:
                figures["problems"].append(f"the daemon exited with code {code}")
                print(f"daemon log (end):\n{daemon.logs()}", file=sys.stderr)
        bus.stop()
        prosody.stop()
    figures["targets"] = {
        key: key in figures and figures[key] < target for key, (target, _) in TARGETS.items()
    }
    for name in ("history_peer20", "history_last20", "history_page", "history_search"):
        figures[f"ratio_{name}"] = (
            figures[f"load_{name}_median_ms"] / figures[f"quiet_{name}_median_ms"]
        )
    for name in ("cache_get20", "cache_page", "mb_get20", "search"):
        figures[f"ratio_{name}"] = (
            figures[f"load_{name}_median_ms"] / figures[f"quiet_{name}_median_ms"]
        )
    return figures


async def _measure(
    bridge: BridgeClient,
    daemon: Daemon,
    prosody: Prosody,
    sender_jid: str,
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    assert daemon.process is not None
    pid = daemon.process.pid
    traffic = Traffic(args.rate)
    handle = bridge.on_signal("message_new", traffic.on_message_new)
    await handle.ready()
    out["rss_connected_mib"] = rss_mib(pid)
    # a message in the middle of the history: the page before it is read
    middle = await bridge.history_get(
        "", "", 20, True, {"search": f"n{out['messages'] // 2}"}, BLOGGER
    )
    if len(middle) != 1:
        raise RuntimeError(f"the middle message was found {len(middle)} times")
    calls = reads(bridge, out["messages"], out["items"], middle[0][0], random.Random(5))
    cpu = CPU({"daemon": lambda: cpu_s(pid), "machine": system_busy_s, "bench": own_cpu_s})
    start = time.perf_counter()
    await time_reads(calls, args.calls, args.warmup, "quiet", out)
    seconds = time.perf_counter() - start
    used = cpu.used()
    out["quiet_s"] = seconds
    out["quiet_daemon_cpu_share"] = used["daemon"] / seconds
    out["quiet_other_cpu_share"] = max(0.0, used["machine"] - used["daemon"] - used["bench"]) / (
        seconds
    )

    xs = await login(prosody, sender_jid, PASSWORD)
    try:
        await available(xs)
        traffic.start(xs)
        await asyncio.sleep(1)  # the traffic is flowing before the first timed read
        cpu = CPU({"daemon": lambda: cpu_s(pid), "machine": system_busy_s, "bench": own_cpu_s})
        start = time.perf_counter()
        await time_reads(calls, args.calls, args.warmup, "load", out)
        seconds = time.perf_counter() - start
        used = cpu.used()
        received_during = len(traffic.latency_ms)
        await traffic.stop()
    finally:
        close(xs)
    out["load_s"] = seconds
    out["load_daemon_cpu_share"] = used["daemon"] / seconds
    out["load_other_cpu_share"] = max(0.0, used["machine"] - used["daemon"] - used["bench"]) / (
        seconds
    )
    out["traffic_sent"] = len(traffic.sent)
    out["traffic_received"] = len(traffic.latency_ms)
    out["traffic_received_during_reads"] = received_during
    out["traffic_rate_achieved"] = len(traffic.sent) / (seconds + 1)
    if traffic.latency_ms:
        out["traffic_latency_median_ms"] = statistics.median(traffic.latency_ms)
        out["traffic_latency_max_ms"] = max(traffic.latency_ms)
    if out["traffic_received"] != out["traffic_sent"]:
        out["problems"].append(
            f"{out['traffic_sent'] - out['traffic_received']} incoming messages not delivered"
        )
    stored = await bridge.history_get(sender_jid, "", -1, True, {}, BLOGGER, timeout=60)
    out["traffic_stored"] = sum(row[4].get("", "").startswith("load ") for row in stored)
    if out["traffic_stored"] != out["traffic_sent"]:
        out["problems"].append(f"{out['traffic_stored']} of {out['traffic_sent']} stored")
    out["rss_end_mib"] = rss_mib(pid)


LABELS = {
    "history_peer20": "history_get last 20 with a peer",
    "history_last20": "history_get last 20",
    "history_page": "history_get 20 before a uid (middle)",
    "history_search": "history_get full-text, word of 1 message",
    "cache_get20": "ps_cache_get newest 20",
    "cache_page": "ps_cache_get 20 at index N/2",
    "mb_get20": "mb_get 20 posts (from the cache)",
    "search": "ps_cache_search, word in ~1% of items",
}


def table(f: dict[str, Any]) -> str:
    target_of = {key[len("load_") : -len("_median_ms")]: t for key, (t, _) in TARGETS.items()}
    rows = [
        ("commit measured, cores", f"{f['commit'] or '?'}, {f['cores']}", "", "", ""),
        (
            f"data: {f['messages']:,} messages, {f['items']:,} cached items",
            f"built in {f['fill_history_s']:.0f} + {f['fill_cache_s']:.0f} s",
            "",
            "",
            "",
        ),
        ("read (median of calls, ms)", "no traffic", f"{f['rate']:g} msg/s in", "ratio", "target"),
    ]
    for name, label in LABELS.items():
        target = target_of.get(name)
        mark = ""
        if target is not None:
            met = f["targets"][f"load_{name}_median_ms"]
            mark = f"< {target:g}: {'met' if met else 'MISSED'}"
        rows.append(
            (
                label,
                f"{f[f'quiet_{name}_median_ms']:.2f} (p95 {f[f'quiet_{name}_p95_ms']:.1f})",
                f"{f[f'load_{name}_median_ms']:.2f} (p95 {f[f'load_{name}_p95_ms']:.1f})",
                f"{f[f'ratio_{name}']:.2f}",
                mark,
            )
        )
    rows += [
        (
            "incoming: sent / received / stored",
            f"{f['traffic_sent']} / {f['traffic_received']} / {f['traffic_stored']}",
            f"latency median {f.get('traffic_latency_median_ms', 0):.1f} ms, "
            f"max {f.get('traffic_latency_max_ms', 0):.0f}",
            "",
            "",
        ),
        (
            "daemon CPU during the reads",
            f"{f['quiet_daemon_cpu_share']:.0%} of a core",
            f"{f['load_daemon_cpu_share']:.0%} of a core",
            "",
            "",
        ),
        (
            "other processes of the machine",
            f"{f['quiet_other_cpu_share']:.0%}",
            f"{f['load_other_cpu_share']:.0%}",
            "",
            "",
        ),
        ("daemon RSS connected / at the end", f"{f['rss_connected_mib']:.1f} MiB", "", "", ""),
    ]
    rows[-1] = (
        rows[-1][0],
        f"{f['rss_connected_mib']:.1f} / {f['rss_end_mib']:.1f} MiB",
        "",
        "",
        "",
    )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for problem in f["problems"]:
        lines.append(f"ERROR: {problem}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="x 100,000 messages and items (default: 1)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="incoming msg/s (default: 20)")
    parser.add_argument("--calls", type=int, default=50, help="timed calls per read (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default: 5)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = parser.parse_args()
    if args.calls < 1 or args.rate <= 0 or args.scale <= 0:
        parser.error("--calls >= 1, --rate and --scale > 0")
    figures = run_in_tempdir(bench, args, "libervia-bench-load-")
    print_figures(figures, table, args.json)
    return 0 if not figures["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
