"""Pubsub cache benchmark: a 10,000-item blog read from the server and from the cache, its
initial synchronisation, and full-text search over 100,000 cached items.

    .venv/bin/python -m bench.pubsub                  # full size
    .venv/bin/python -m bench.pubsub --scale 0.01     # 100-item blog, 1,000 items searched
    .venv/bin/python -m bench.pubsub --json           # JSON on stdout, the table on stderr

Everything is private and on 127.0.0.1: a Prosody started for the run (``nagle = false``,
its default ``internal`` file storage; tests/e2e/prosody.py), a private ``dbus-daemon`` and
the daemon in a temporary directory, driven through the bridge client as a frontend would.

1. The blog: N Atom entries (made by ``tools/atom.build_entry``, as ``mb_send`` makes them;
   ~1% of them hold the word searched below) on the PEP node ``urn:xmpp:microblog:0`` of the
   account ``blogger``. The first P items are published over XMPP by a bare Twisted client,
   pipelined, with the publish-options ``pubsub#max_items=max`` (the publish rate is
   reported). The rest is appended to the node's file in Prosody's storage directly:
   Prosody 0.12's ``internal`` storage loads and rewrites the node's whole file on every
   publish of an item with an id, so publishing gets slower with each item (measured:
   3,000 items in 588 s, from 26 to 3 items/s; 10,000 would take hours). Prosody reads that
   file again at every request, so what it serves is what it would serve after publishing.
2. Reads of the newest 20 posts, median over C calls each (after warm-up calls):
   ``mb_get`` with ``use_cache: false`` (the server), then ``mb_get`` answered by the cache
   once the node is synchronised; the ratio (target: cache >= 10x faster). Baseline: a bare
   client asking Prosody the same 20 items (the server's own share).
3. Initial synchronisation: ``ps_cache_sync`` on the empty cache (analyse, subscribe, fetch
   every item, parse, store), then after ``ps_cache_reset`` the transparent path: from the
   first ``mb_get`` (answered by the server, starting the background synchronisation) until
   ``ps_cache_get`` finds the node completed (polled every 10 ms). Baseline: a bare client
   fetching every item of the node (Prosody ignores RSM on items: one answer).
4. Search: the daemon stopped, its database is filled at storage level (``Storage``:
   ``set_pubsub_node`` + ``cache_pubsub_items`` with the parsed entries, batches of 1,000)
   with other blogs, up to 10 x N cached items in all; ``search_pubsub_items`` timed there
   (storage only), then the daemon started again and ``ps_cache_search`` timed through the
   bridge (target: median < 50 ms for a word in ~1% of the items, 20 results).

The exit code is 0 whether targets are met or missed (a measurement); 1 when something is
wrong (the cache did not answer, counts differ, the daemon failed).
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
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from lxml import etree  # noqa: E402
from twisted.words.protocols.jabber import xmlstream  # noqa: E402
from twisted.words.protocols.jabber.jid import JID  # noqa: E402
from twisted.words.xish import domish  # noqa: E402

from bench.mam import close  # noqa: E402
from bench.messaging import (  # noqa: E402
    CPU,
    cpu_s,
    git_commit,
    login,
    own_cpu_s,
    print_figures,
    run_in_tempdir,
    system_busy_s,
)
from libervia.backend.memory.sqla import Storage  # noqa: E402
from libervia.backend.memory.sqla_mapping import PubsubItem, SyncState  # noqa: E402
from libervia.backend.plugins.plugin_xep_0277 import NS_MICROBLOG, parse_microblog_item  # noqa: E402
from libervia.backend.tools import atom  # noqa: E402
from libervia.backend.tools.xml import parse  # noqa: E402
from libervia.frontends.bridge.client import BridgeClient, BridgeError  # noqa: E402
from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon, make_account  # noqa: E402
from tests.e2e.prosody import DOMAIN, Prosody  # noqa: E402

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_X_DATA = "jabber:x:data"
NS_XML = "http://www.w3.org/XML/1998/namespace"
BLOGGER = "blogger"
PASSWORD = "xmpp-pass"
#: the word of ~1% of the items (full-text search), and one of most items
RARE_WORD = "zeppelin"
COMMON_WORD = "lorem"
WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris"
).split()
T0 = 1.7e9
TARGETS = {
    # key: (comparison, target, description)
    "read_ratio": (">=", 10.0, "mb_get of 20 posts: cache / server speed"),
    "search_bridge_median_ms": ("<", 50.0, "ps_cache_search full-text, ~1% of the items"),
}


# --- the items -------------------------------------------------------------------------------


def entry_xml(author: str, i: int, rng: random.Random) -> str:
    """An Atom entry as ``mb_send`` builds it; ~1% of them hold ``RARE_WORD``."""
    words = rng.choices(WORDS, k=40)
    if i % 100 == 37:
        words[7] = RARE_WORD
    if i % 10 != 3:
        words[3] = COMMON_WORD
    return atom.build_entry(
        {
            "title": f"post {i}: " + " ".join(words[:5]),
            "content": " ".join(words),
            "tags": [words[0], words[1]],
        },
        author_jid=author,
        author_name=None,
        item_id=item_id(i),
        now=T0 + i,
    )


def item_id(i: int) -> str:
    return f"post-{i:06d}"


def item_element(xml: str, i: int) -> domish.Element:
    return parse(f'<item xmlns="{NS_PUBSUB}" id="{item_id(i)}">{xml}</item>')


def lua_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32:
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def lua_stanza(element: etree._Element, extra: dict[str, Any] | None = None) -> str:
    """An element as Prosody's ``st.preserialize`` stores it in an ``internal`` file."""
    parts = []
    if element.text:
        parts.append(lua_string(element.text))
    for child in element:
        parts.append(lua_stanza(child))
        if child.tail:
            parts.append(lua_string(child.tail))
    qname = etree.QName(element)
    attrs = {"xmlns": qname.namespace or ""}
    for name, value in element.attrib.items():
        attr = etree.QName(name)
        attrs[f"{attr.namespace}\1{attr.localname}" if attr.namespace else attr.localname] = value
    attrs.update((extra or {}).pop("attr", {}))
    fields = [f"[{lua_string('name')}] = {lua_string(qname.localname)}"]
    fields.append(
        "[" + lua_string("attr") + "] = {"
        + "; ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in attrs.items())
        + "}"
    )  # fmt: skip
    for key, value in (extra or {}).items():
        literal = repr(value) if isinstance(value, float | int) else lua_string(value)
        fields.append(f"[{lua_string(key)}] = {literal}")
    return "{" + "; ".join(parts + fields) + "}"


def append_to_prosody(prosody: Prosody, user: str, entries: list[tuple[int, str]]) -> float:
    """Append items to the file of the PEP node in Prosody's storage; seconds taken.

    Prosody's ``internal`` archive store is a list file (``item({...});`` per item) loaded at
    every request: appended items are served as if published.
    """
    path = (
        prosody.dir / "data" / DOMAIN / quote(f"pep_{NS_MICROBLOG}", safe="").lower()
        / f"{user}.list"
    )  # fmt: skip
    if not path.exists():
        raise RuntimeError(f"Prosody's node file {path} is missing (no item published?)")
    start = time.perf_counter()
    jid = f"{user}@{DOMAIN}"
    with path.open("a", encoding="utf-8") as out:
        for i, xml in entries:
            when = T0 + i
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
            extra = {"attr": {"stamp": stamp}, "when": when, "with": jid, "key": item_id(i)}
            out.write(f"item({lua_stanza(etree.fromstring(xml), extra)});\n")
    return time.perf_counter() - start


# --- the bare client -------------------------------------------------------------------------


def publish_iq(xs: xmlstream.XmlStream, i: int, xml: str) -> xmlstream.IQ:
    iq = xmlstream.IQ(xs, "set")
    pubsub = iq.addElement((NS_PUBSUB, "pubsub"))
    publish = pubsub.addElement("publish")
    publish["node"] = NS_MICROBLOG
    publish.addChild(item_element(xml, i))
    form = pubsub.addElement("publish-options").addElement((NS_X_DATA, "x"))
    form["type"] = "submit"
    for var, value in (
        ("FORM_TYPE", f"{NS_PUBSUB}#publish-options"),
        ("pubsub#max_items", "max"),
    ):
        form_field = form.addElement("field")
        form_field["var"] = var
        form_field.addElement("value", content=value)
    return iq


async def items_get(xs: xmlstream.XmlStream, jid: str, max_items: int | None) -> list[str]:
    """A bare client's items request; the item ids of the answer."""
    iq = xmlstream.IQ(xs, "get")
    iq["to"] = jid
    items = iq.addElement((NS_PUBSUB, "pubsub")).addElement("items")
    items["node"] = NS_MICROBLOG
    if max_items is not None:
        items["max_items"] = str(max_items)
    answer = await iq.send().asFuture(asyncio.get_running_loop())
    found = next(next(answer.elements(NS_PUBSUB, "pubsub")).elements(NS_PUBSUB, "items"))
    return [str(i.getAttribute("id")) for i in found.elements(NS_PUBSUB, "item")]


async def make_blog(prosody: Prosody, jid: str, args: argparse.Namespace) -> dict[str, Any]:
    """The blog of N items: P published (pipelined), the rest appended to Prosody's file."""
    out: dict[str, Any] = {}
    rng = random.Random(1)
    start = time.perf_counter()
    entries = [(i, entry_xml(jid, i, rng)) for i in range(args.items)]
    out["blog_build_s"] = time.perf_counter() - start
    published = min(args.published, args.items)
    xs = await login(prosody, jid, PASSWORD)
    # Prosody answers with every item in one stanza; Twisted's parser refuses stanzas of more
    # than 100,000 elements (~12 per entry): raised for this client only, to measure Prosody
    xs.stream.maxElementCount = 10**7
    xs.stream.maxStanzaSize = 10**9
    loop = asyncio.get_running_loop()
    try:
        start = time.perf_counter()
        sent = [publish_iq(xs, i, xml).send() for i, xml in entries[:published]]
        for d in sent:
            await d.asFuture(loop)
        seconds = time.perf_counter() - start
        out["published"] = published
        out["publish_s"] = seconds
        out["publish_items_per_s"] = published / seconds
        out["appended"] = args.items - published
        out["append_s"] = append_to_prosody(prosody, BLOGGER, entries[published:])
        # the baseline: what Prosody itself takes
        start = time.perf_counter()
        every = await items_get(xs, jid, None)
        out["baseline_fetch_all_s"] = time.perf_counter() - start
        out["server_items"] = len(every)
        out["server_distinct_items"] = len(set(every))
        for _ in range(args.warmup):
            await items_get(xs, jid, 20)
        times = []
        for _ in range(args.calls):
            start = time.perf_counter()
            newest = await items_get(xs, jid, 20)
            times.append((time.perf_counter() - start) * 1000)
        out["baseline_read20_median_ms"] = statistics.median(times)
        out["baseline_read20_ids"] = newest
    finally:
        close(xs)
    return out


# --- the daemon ------------------------------------------------------------------------------


async def timed_calls(call: Callable[[], Awaitable[Any]], count: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await call()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def is_not_found(error: BridgeError) -> bool:
    return error.name.endswith(".NotFound")


async def wait_cached(bridge: BridgeClient, timeout: float) -> float:
    """Poll ``ps_cache_get`` until the blog node is completed in the cache; the time then."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            await bridge.ps_cache_get("", NS_MICROBLOG, 1, [], "", "", "", BLOGGER)
            return time.perf_counter()
        except BridgeError as e:
            if not is_not_found(e):
                raise
        if time.perf_counter() > deadline:
            raise TimeoutError("the blog node was not synchronised in time")
        await asyncio.sleep(0.01)


async def bench_reads(bridge: BridgeClient, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """mb_get from the server, the synchronisations, mb_get from the cache."""

    async def mb_get(use_cache: bool) -> dict[str, Any]:
        extra = "" if use_cache else json.dumps({"use_cache": False})
        data = json.loads(await bridge.mb_get("", "", 20, [], extra, BLOGGER, timeout=60))
        return dict(data)

    pages: list[dict[str, Any]] = []

    async def server() -> None:
        pages.append(await mb_get(False))

    times = await timed_calls(server, args.calls, args.warmup)
    out["server_read20_median_ms"] = statistics.median(times)
    out["server_read20_p95_ms"] = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
    out["server_read20_counts"] = sorted({len(p["items"]) for p in pages})
    out["server_read20_cached"] = any(p.get("cached") for p in pages)
    server_ids = [e["id"] for e in pages[-1]["items"]]

    # the synchronisation, forced on the empty cache
    start = time.perf_counter()
    try:
        await bridge.ps_cache_sync("", NS_MICROBLOG, BLOGGER, timeout=args.timeout)
    except BridgeError as e:
        out["sync_error"] = f"{e} (after {time.perf_counter() - start:.1f} s)"
        return
    out["sync_forced_s"] = time.perf_counter() - start
    # again, transparently: the first mb_get starts it in the background
    await bridge.ps_cache_reset()
    start = time.perf_counter()
    first = await mb_get(True)
    out["sync_first_mb_get_ms"] = (time.perf_counter() - start) * 1000
    out["sync_first_mb_get_cached"] = bool(first.get("cached"))
    out["sync_transparent_s"] = await wait_cached(bridge, args.timeout) - start
    cached_all = json.loads(
        await bridge.ps_cache_get("", NS_MICROBLOG, -1, [], "", "", "", BLOGGER, timeout=120)
    )
    out["cache_items"] = len(cached_all["items"])

    pages.clear()

    async def cache() -> None:
        pages.append(await mb_get(True))

    times = await timed_calls(cache, args.calls, args.warmup)
    out["cache_read20_median_ms"] = statistics.median(times)
    out["cache_read20_p95_ms"] = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
    out["cache_read20_counts"] = sorted({len(p["items"]) for p in pages})
    out["cache_read20_all_cached"] = all(p.get("cached") for p in pages)
    cache_ids = [e["id"] for e in pages[-1]["items"]]
    out["read_ratio"] = out["server_read20_median_ms"] / out["cache_read20_median_ms"]
    out["server_read20_ids"] = server_ids
    out["cache_read20_ids"] = cache_ids
    out["same_items"] = set(server_ids) == set(cache_ids)
    out["same_order"] = server_ids == cache_ids


# --- search ----------------------------------------------------------------------------------


def search_batches(
    count: int, first: int, nodes: int
) -> Iterator[tuple[int, list[Any], list[Any]]]:
    """(node index, items, parsed) batches of up to 1,000 items over ``nodes`` other blogs."""
    rng = random.Random(2)
    per_node = -(-count // nodes)
    for n in range(nodes):
        author = f"friend{n}@{DOMAIN}"
        numbers = range(first + n * per_node, first + min(count, (n + 1) * per_node))
        for chunk in range(0, len(numbers), 1000):
            items, parsed = [], []
            for i in numbers[chunk : chunk + 1000]:
                item = item_element(entry_xml(author, i, rng), i)
                items.append(item)
                parsed.append(parse_microblog_item(item))
            yield n, items, parsed


async def fill_cache(db_url: str, count: int, first: int, nodes: int) -> dict[str, Any]:
    """Add ``count`` cached items on ``nodes`` other blogs; time searches at storage level."""
    out: dict[str, Any] = {}
    storage = Storage(db_url)
    await storage.initialise()
    try:
        records = []
        for n in range(nodes):
            node = await storage.set_pubsub_node(
                BLOGGER,
                JID(f"friend{n}@{DOMAIN}"),
                NS_MICROBLOG,
                analyser="XEP-0277",
                type_="blog",
                subscribed=True,
            )
            await storage.update_pubsub_node_sync_state(node, SyncState.COMPLETED)
            records.append(node)
        writing = 0.0
        start = time.perf_counter()
        for n, items, parsed in search_batches(count, first, nodes):
            t = time.perf_counter()
            await storage.cache_pubsub_items(records[n], items, parsed)
            writing += time.perf_counter() - t
        out["search_fill_s"] = time.perf_counter() - start
        out["search_fill_write_items_per_s"] = count / writing if writing else 0.0
        async with storage.engine.connect() as conn:
            count = sa.select(sa.func.count()).select_from(PubsubItem)
            out["search_cached_total"] = (await conn.execute(count)).scalar_one()
        query = {"fts": RARE_WORD, "limit": 20}
        found = await storage.search_pubsub_items(query)
        out["search_storage_results"] = len(found)
        times = await timed_calls(lambda: storage.search_pubsub_items(query), 50, 5)
        out["search_storage_median_ms"] = statistics.median(times)
        common = {"fts": COMMON_WORD, "limit": 20}
        times = await timed_calls(lambda: storage.search_pubsub_items(common), 10, 1)
        out["search_storage_common_median_ms"] = statistics.median(times)
    finally:
        await storage.close()
    return out


async def bench_search(bridge: BridgeClient, out: dict[str, Any]) -> None:
    query = json.dumps({"fts": RARE_WORD, "limit": 20})
    results = json.loads(await bridge.ps_cache_search(query))
    out["search_bridge_results"] = len(results)
    out["search_bridge_match"] = all(RARE_WORD in r["item"] for r in results)
    out["search_rare_total"] = len(
        json.loads(
            await bridge.ps_cache_search(
                json.dumps({"fts": RARE_WORD, "limit": 10_000}), timeout=60
            )
        )
    )
    times = await timed_calls(lambda: bridge.ps_cache_search(query), 50, 5)
    out["search_bridge_median_ms"] = statistics.median(times)
    out["search_bridge_p95_ms"] = sorted(times)[47]
    common = json.dumps({"fts": COMMON_WORD, "limit": 20})
    times = await timed_calls(lambda: bridge.ps_cache_search(common), 10, 1)
    out["search_bridge_common_median_ms"] = statistics.median(times)


# --- the run ---------------------------------------------------------------------------------


async def start_daemon(daemon: Daemon) -> BridgeClient:
    daemon.start()
    try:
        return await daemon.bridge(timeout=60)
    except BaseException:
        print(f"daemon log (end):\n{daemon.logs()}", file=sys.stderr)
        daemon.stop()
        raise


def phase_cpu(daemon: Daemon, prosody: Prosody, bus: DBusDaemon) -> CPU:
    """CPU seconds of our processes and of the whole machine, from now on."""
    assert daemon.process and prosody.process and bus.process
    pids = [daemon.process.pid, prosody.process.pid, bus.process.pid]
    return CPU(
        {
            "ours": lambda: sum(cpu_s(pid) for pid in pids) + own_cpu_s(),
            "machine": system_busy_s,
        }
    )


def noise(cpu: CPU, seconds: float, phase: str, out: dict[str, Any]) -> None:
    """The share of a core that other processes of the machine used during a phase."""
    used = cpu.used()
    out[f"{phase}_other_cpu_share"] = max(0.0, used["machine"] - used["ours"]) / seconds


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "items": args.items,
        "search_items": args.search_items,
        "search_blogs": args.search_nodes,
        "calls": args.calls,
        "commit": git_commit(),
        "cores": os.cpu_count(),
    }
    prosody = Prosody()
    bus = DBusDaemon()
    try:
        prosody.start()
        bus.start()
        jid = prosody.adduser(BLOGGER, PASSWORD)
        figures.update(await make_blog(prosody, jid, args))
        (directory / "daemon").mkdir()
        daemon = Daemon(directory / "daemon", bus.address)
        bridge = await start_daemon(daemon)
        try:
            await make_account(bridge, prosody, BLOGGER, BLOGGER, PASSWORD, register=False)
            connected = asyncio.get_running_loop().create_future()

            def on_connected(_jid: str, profile: str) -> None:
                if profile == BLOGGER and not connected.done():
                    connected.set_result(None)

            bridge.on_signal("connected", on_connected)
            await bridge.connect(BLOGGER, "", {})
            await asyncio.wait_for(connected, 30)
            cpu = phase_cpu(daemon, prosody, bus)
            start = time.perf_counter()
            await bench_reads(bridge, args, figures)
            noise(cpu, time.perf_counter() - start, "reads", figures)
            if "sync_error" in figures:
                # the cause, as the daemon logged it
                figures["sync_error_log"] = [
                    line[-300:]
                    for line in daemon.log.read_text(errors="replace").splitlines()
                    if "ParserError" in line or "not cached" in line or "Maximum" in line
                ][-5:]
        except BaseException:
            print(f"daemon log (end):\n{daemon.logs()}", file=sys.stderr)
            raise
        finally:
            await bridge.close()
            figures["daemon_exit_code"] = daemon.stop()

        # search: more blogs written into the daemon's database while it is stopped
        db_url = f"sqlite+aiosqlite:///{daemon.directory / 'local' / 'libervia.db'}"
        extra = max(0, args.search_items - figures.get("cache_items", 0))
        figures["search_filled"] = extra
        figures.update(await fill_cache(db_url, extra, args.items, args.search_nodes))
        bridge = await start_daemon(daemon)
        try:
            cpu = phase_cpu(daemon, prosody, bus)
            start = time.perf_counter()
            await bench_search(bridge, figures)
            noise(cpu, time.perf_counter() - start, "search", figures)
        except BaseException:
            print(f"daemon log (end):\n{daemon.logs()}", file=sys.stderr)
            raise
        finally:
            await bridge.close()
            code = daemon.stop()
            figures["daemon_exit_code"] = figures["daemon_exit_code"] or code
    finally:
        bus.stop()
        prosody.stop()
    figures["search_ratio_bridge_to_storage"] = (
        figures["search_bridge_median_ms"] / figures["search_storage_median_ms"]
    )
    figures["targets"] = {
        key: key in figures and (figures[key] < target if op == "<" else figures[key] >= target)
        for key, (op, target, _) in TARGETS.items()
    }
    problems = []
    if figures["server_items"] != args.items or figures["server_distinct_items"] != args.items:
        problems.append(f"the server holds {figures['server_items']} items, not {args.items}")
    if figures["server_read20_cached"]:
        problems.append("use_cache false was answered by the cache")
    wanted = [min(20, args.items)]
    if figures["server_read20_counts"] != wanted:
        problems.append("an mb_get from the server did not return 20 posts")
    if "sync_error" in figures:
        problems.append(f"the synchronisation failed: {figures['sync_error']}")
    else:
        if figures["cache_items"] != args.items:
            problems.append(f"the cache holds {figures['cache_items']} items, not {args.items}")
        if not figures["cache_read20_all_cached"]:
            problems.append("an mb_get after the synchronisation was not answered by the cache")
        if figures["cache_read20_counts"] != wanted:
            problems.append("an mb_get from the cache did not return 20 posts")
    # the blog's items (if synchronised) and those written at storage level
    numbers = range(0 if "cache_items" in figures else args.items, args.items + extra)
    rare = sum(1 for i in numbers if i % 100 == 37)
    if figures["search_rare_total"] != rare or not figures["search_bridge_match"]:
        problems.append(f"the search found {figures['search_rare_total']} items, not {rare}")
    if figures["search_cached_total"] != len(numbers):
        problems.append(f"{figures['search_cached_total']} items cached, not {len(numbers)}")
    if figures["daemon_exit_code"] != 0:
        problems.append(f"the daemon exited with code {figures['daemon_exit_code']}")
    figures["problems"] = problems
    return figures


def table(f: dict[str, Any]) -> str:
    def mark(key: str) -> str:
        op, target, _ = TARGETS[key]
        if key not in f:
            return f"{op} {target:g}: not measured"
        return f"{op} {target:g}: {'met' if f['targets'][key] else 'MISSED'}"

    rows = [
        ("commit measured, cores", f"{f['commit'] or '?'}, {f['cores']}", ""),
        (
            f"blog: {f['items']:,} posts; published over XMPP (pipelined)",
            f"{f['published']:,} at {f['publish_items_per_s']:,.0f} items/s",
            "",
        ),
        (
            "  appended to Prosody's node file",
            f"{f['appended']:,} in {f['append_s']:.2f} s",
            "",
        ),
        (
            f"mb_get 20 posts from the server (median of {f['calls']})",
            f"{f['server_read20_median_ms']:.2f} ms (p95 {f['server_read20_p95_ms']:.2f})",
            "",
        ),
        (
            "  bare client: the same 20 items from Prosody",
            f"{f['baseline_read20_median_ms']:.2f} ms",
            "",
        ),
    ]
    if "sync_error" in f:
        rows.append(("synchronisation of the blog", "FAILED: " + f["sync_error"][:100], ""))
        rows += [("  daemon log", line[-120:], "") for line in f.get("sync_error_log", [])]
    else:
        rows += [
            (
                "mb_get 20 posts from the cache",
                f"{f['cache_read20_median_ms']:.2f} ms (p95 {f['cache_read20_p95_ms']:.2f})",
                "",
            ),
            ("ratio server / cache", f"{f['read_ratio']:.1f}", mark("read_ratio")),
            (
                "  same posts / same order",
                f"{'yes' if f['same_items'] else 'NO'} / {'yes' if f['same_order'] else 'no'}",
                "",
            ),
            (
                f"ps_cache_sync of {f['items']:,} items (empty cache)",
                f"{f['sync_forced_s']:.2f} s",
                "",
            ),
            (
                "first mb_get -> node completed (after ps_cache_reset)",
                f"{f['sync_transparent_s']:.2f} s "
                f"(that mb_get: {f['sync_first_mb_get_ms']:.0f} ms)",
                "",
            ),
        ]
    rows += [
        ("bare client: every item from Prosody", f"{f['baseline_fetch_all_s']:.2f} s", ""),
        (
            f"search fill: {f['search_filled']:,} items on {f['search_blogs']} blogs",
            f"{f['search_fill_s']:.1f} s (writes {f['search_fill_write_items_per_s']:,.0f} "
            "items/s)",
            "",
        ),
        (
            f"ps_cache_search '{RARE_WORD}' ({f['search_rare_total']:,} of "
            f"{f['search_cached_total']:,}), limit 20",
            f"median {f['search_bridge_median_ms']:.2f} ms (p95 {f['search_bridge_p95_ms']:.2f})",
            mark("search_bridge_median_ms"),
        ),
        (
            "  storage only (search_pubsub_items)",
            f"median {f['search_storage_median_ms']:.2f} ms (bridge / storage "
            f"{f['search_ratio_bridge_to_storage']:.2f})",
            "",
        ),
        (
            f"ps_cache_search '{COMMON_WORD}' (most items), limit 20",
            f"median {f['search_bridge_common_median_ms']:.1f} ms (storage only "
            f"{f['search_storage_common_median_ms']:.1f} ms)",
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    missed = [TARGETS[k][2] for k, ok in f["targets"].items() if not ok]
    lines.append(f"targets met: {len(TARGETS) - len(missed)} of {len(TARGETS)}")
    if missed:
        lines.append("targets missed: " + "; ".join(missed))
    for phase in ("reads", "search"):
        share = f.get(f"{phase}_other_cpu_share", 0.0)
        if share > 0.1:
            lines.append(
                f"WARNING: other processes used {share:.0%} of a core during the {phase} "
                "phase: its figures are disturbed"
            )
    for problem in f["problems"]:
        lines.append(f"ERROR: {problem}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (default: 1)")
    parser.add_argument(
        "--calls", type=int, default=50, help="timed calls of each read and search (default: 50)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default: 5)")
    parser.add_argument(
        "--published",
        type=int,
        default=100,
        help="items published over XMPP, the rest written into Prosody's storage (default: 100)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds allowed to a synchronisation"
    )
    parser.add_argument(
        "--items", type=int, default=0, help="posts of the blog (default: 10000 x scale)"
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    args = parser.parse_args()
    args.items = args.items or max(20, round(10_000 * args.scale))
    args.search_items = max(args.items, round(100_000 * args.scale))
    args.search_nodes = 9
    if args.calls < 1 or args.warmup < 0 or args.published < 1:
        parser.error("--calls and --published must be >= 1, --warmup >= 0")
    figures = run_in_tempdir(bench, args, "libervia-bench-pubsub-")
    print_figures(figures, table, args.json)
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
