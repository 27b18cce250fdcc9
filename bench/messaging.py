"""Messaging benchmark: the daemon between two XMPP accounts, against a bare Twisted client pair.

    .venv/bin/python bench/messaging.py                         # 2,000 messages, 200 latencies
    .venv/bin/python bench/messaging.py --messages 50 --latency-count 10 --json
    .venv/bin/python bench/messaging.py --json figures.json     # table on stdout, JSON in a file
    .venv/bin/python bench/messaging.py --profile daemon.prof   # the daemon under cProfile

Everything is private and on 127.0.0.1: a Prosody started for the run (STARTTLS with a
self-signed certificate, MAM on, ``nagle = false``; tests/e2e/prosody.py), a private
``dbus-daemon`` (tests/dbus.py) and the daemon in a temporary directory (tests/e2e/daemon.py),
driven through the bridge client as a frontend would. Measures, in one run:

1. the daemon's start (spawn to ``ready_get`` answered; a first start creates the database, the
   measured one is the next) and its resident memory (VmRSS) with two connected profiles
   (alice, bob), after connecting and after the throughput run (target <= 60 MiB);
2. latency: alice's ``message_send`` to bob's ``message_new`` received by this process (the
   message is in bob's history when the signal is emitted), N sequential messages after a
   warm-up: median, p95, max (target: median <= 5 ms);
3. throughput: alice sends M messages to bob (pipelined ``message_send``, a bounded number in
   flight), from the first send to bob's M-th ``message_new``; bob's history is checked
   afterwards to hold all M (target >= 1,000 messages/s);
4. the baseline (the ceiling): a bare Twisted XMPP client pair (``twisted.words`` streams, our
   SASL, STARTTLS trusting the self-signed certificate) in this process through the same
   Prosody: A sends M chat messages to B's bare JID, until B received them all; and the time
   of one message A -> server -> B (median over N). The daemon's throughput is reported as a
   ratio of this ceiling (target >= 50%) and its latency against the pair's;
5. CPU seconds (utime + stime of /proc/PID/stat) of the daemon, Prosody, dbus-daemon and this
   process during the throughput runs, and per message; and the CPU that other processes of
   the machine used meanwhile (/proc/stat): a warning says when it disturbed a run.

``--json`` alone prints the figures as JSON on stdout (the table goes to stderr); ``--json
FILE`` writes them to FILE. ``--profile FILE`` runs the measured daemon under cProfile and
prints its top 25 functions by cumulative and by own time.

The exit code is 0 whether targets are met or missed (it is a measurement); it is 1 when a
message was lost or something failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, ssl  # noqa: E402
from twisted.words.protocols.jabber import client, sasl, xmlstream  # noqa: E402
from twisted.words.protocols.jabber.jid import JID  # noqa: E402
from twisted.words.xish import domish  # noqa: E402

from libervia.backend.core.sasl import SASLInitiatingInitializer  # noqa: E402
from libervia.frontends.bridge.client import BridgeClient, BridgeError  # noqa: E402
from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon, make_account  # noqa: E402
from tests.e2e.prosody import DOMAIN, Prosody  # noqa: E402

NS_CLIENT = "jabber:client"
TICKS = os.sysconf("SC_CLK_TCK")
TARGETS = {
    # key: (comparison, target, description)
    "rss_after_throughput_mib": ("<=", 60.0, "daemon RSS, 2 profiles, after throughput"),
    "latency_median_ms": ("<=", 5.0, "latency send -> receiver's message_new, median"),
    "throughput_msgs_per_s": (">=", 1000.0, "throughput messages/s"),
    "throughput_ratio_to_baseline": (">=", 0.5, "throughput / bare pair's"),
}


# --- process figures -------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_s(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (or of one of its threads), in seconds."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of stat


def system_busy_s() -> float:
    """CPU seconds used by every process of the machine, and stolen by the hypervisor
    (/proc/stat; interrupts are left out: loopback networking is accounted there)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + steal) / TICKS


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class CPU:
    """CPU seconds used between its creation and :meth:`used`, of several sources."""

    def __init__(self, sources: dict[str, Callable[[], float]]) -> None:
        self.sources = sources
        self.start = {name: read() for name, read in sources.items()}

    def used(self) -> dict[str, float]:
        return {name: read() - self.start[name] for name, read in self.sources.items()}


def summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"median": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


# --- the daemon ------------------------------------------------------------------------------


class ProfiledDaemon(Daemon):
    """The daemon, optionally under ``python -m cProfile -o FILE`` (written on SIGTERM)."""

    def __init__(self, directory: Path, bus_address: str, profile: Path | None) -> None:
        # with compiled bytecode, as an installed daemon (the first start writes it)
        super().__init__(directory, bus_address, bytecode_dir=directory / "pycache")
        self.profile = profile

    def start(self) -> float:
        if self.profile is None:
            return super().start()
        env = self.environment()
        command = [sys.executable, "-m", "cProfile", "-o", str(self.profile)]
        command += ["-m", "libervia.backend", "-c", str(self.config), "fg"]
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return started


class Inbox:
    """bob's ``message_new`` signals: futures for awaited texts, and a counted batch."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.prefix = "\0"
        self.expected = 0
        self.batch: set[str] = set()
        self.batch_done: asyncio.Future[float] | None = None
        self.duplicates = 0

    def expect(self, text: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[text] = future
        return future

    def expect_batch(self, prefix: str, count: int) -> asyncio.Future[float]:
        self.prefix, self.expected, self.batch = prefix, count, set()
        self.batch_done = asyncio.get_running_loop().create_future()
        return self.batch_done

    def on_message_new(self, *args: Any) -> None:
        if args[8] != self.profile:
            return
        now = time.perf_counter()
        text = args[4].get("", "")
        future = self.waiting.pop(text, None)
        if future is not None:
            if not future.done():
                future.set_result(now)
        elif text.startswith(self.prefix):
            if text in self.batch:
                self.duplicates += 1
            self.batch.add(text)
            done = self.batch_done
            if len(self.batch) >= self.expected and done is not None and not done.done():
                done.set_result(now)


async def bench_daemon(
    prosody: Prosody, bus: DBusDaemon, directory: Path, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # a first start creates the database (migrations); the measured start is a later one, as
    # a user's daemon starts on an existing database
    first = ProfiledDaemon(directory, bus.address, None)
    spawned = first.start()
    try:
        bridge = await first.bridge(timeout=60)
        out["daemon_first_start_to_ready_s"] = time.monotonic() - spawned
        await bridge.close()
    finally:
        code = first.stop()
    if code != 0:
        raise RuntimeError(f"the daemon exited with code {code}:\n{first.logs()}")
    daemon = ProfiledDaemon(directory, bus.address, args.profile)
    spawned = daemon.start()
    try:
        bridge = await daemon.bridge(timeout=60)
        out["daemon_start_to_ready_s"] = time.monotonic() - spawned
        try:
            await _run_daemon(bridge, daemon, prosody, bus, args, out)
        finally:
            await bridge.close()
    except BaseException:
        print(f"daemon log (end):\n{daemon.logs()}", file=sys.stderr)
        raise
    finally:
        code = daemon.stop()
        if code != 0:
            print(f"the daemon exited with code {code}:\n{daemon.logs()}", file=sys.stderr)
    out["daemon_exit_code"] = code
    return out


async def _run_daemon(
    bridge: BridgeClient,
    daemon: Daemon,
    prosody: Prosody,
    bus: DBusDaemon,
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    assert daemon.process is not None and prosody.process is not None
    assert bus.process is not None
    pid = daemon.process.pid
    inbox = Inbox("bob")
    handle = bridge.on_signal("message_new", inbox.on_message_new)
    connected: dict[str, asyncio.Future[None]] = {
        p: asyncio.get_running_loop().create_future() for p in ("alice", "bob")
    }

    def on_connected(jid: str, profile: str) -> None:
        if profile in connected and not connected[profile].done():
            connected[profile].set_result(None)

    bridge.on_signal("connected", on_connected)
    await handle.ready()
    alice_jid = await make_account(bridge, prosody, "alice", "alice")
    bob_jid = await make_account(bridge, prosody, "bob", "bob")
    t0 = time.perf_counter()
    await asyncio.gather(bridge.connect("alice", "", {}), bridge.connect("bob", "", {}))
    await asyncio.wait_for(asyncio.gather(*connected.values()), 30)
    out["connect_2_profiles_s"] = time.perf_counter() - t0
    await asyncio.sleep(0.5)  # let the roster and presence exchanges settle
    out["rss_connected_mib"] = rss_mib(pid)

    # latency: one message at a time
    call_ms, latency_ms = [], []
    for i in range(args.warmup + args.latency_count):
        text = f"latency {i}"
        received = inbox.expect(text)
        start = time.perf_counter()
        await bridge.message_send(bob_jid, {"": text}, {}, "chat", "", "alice")
        answered = time.perf_counter()
        arrived = await asyncio.wait_for(received, 30)
        if i >= args.warmup:
            call_ms.append((answered - start) * 1000)
            latency_ms.append((arrived - start) * 1000)
    for key, value in summary(latency_ms).items():
        out[f"latency_{key}_ms"] = value
    out["message_send_call_median_ms"] = statistics.median(call_ms)

    # throughput: pipelined sends, a bounded number in flight
    n = args.messages
    prefix = "throughput "
    done = inbox.expect_batch(prefix, n)
    numbers = iter(range(n))

    async def sender() -> None:
        for i in numbers:
            await bridge.message_send(bob_jid, {"": f"{prefix}{i}"}, {}, "chat", "", "alice")

    in_flight = min(args.in_flight, n) if args.in_flight > 0 else n
    prosody_pid, bus_pid = prosody.process.pid, bus.process.pid
    cpu = CPU(
        {
            "daemon": lambda: cpu_s(pid),
            "daemon_main_thread": lambda: cpu_s(pid, pid),
            "prosody": lambda: cpu_s(prosody_pid),
            "dbus": lambda: cpu_s(bus_pid),
            "bench": own_cpu_s,
            "machine": system_busy_s,
        }
    )
    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(in_flight)))
    sent = time.perf_counter()
    try:
        last = await asyncio.wait_for(done, max(60.0, n / 20))
    except TimeoutError:
        raise RuntimeError(f"bob received {len(inbox.batch)} of {n} messages") from None
    used = cpu.used()
    elapsed = last - start
    out["throughput_messages"] = n
    out["throughput_in_flight"] = in_flight
    out["throughput_all_sent_s"] = sent - start
    out["throughput_s"] = elapsed
    out["throughput_msgs_per_s"] = n / elapsed
    out["throughput_received"] = len(inbox.batch)
    out["throughput_duplicates"] = inbox.duplicates
    ours = sum(used[k] for k in ("daemon", "prosody", "dbus", "bench"))
    used["other"] = max(0.0, used.pop("machine") - ours)  # other processes of the machine
    for name, seconds in used.items():
        out[f"throughput_cpu_{name}_s"] = seconds
        out[f"throughput_cpu_{name}_ms_per_msg"] = seconds * 1000 / n

    out["rss_after_throughput_mib"] = rss_mib(pid)
    start = time.perf_counter()
    try:
        history = await bridge.history_get(alice_jid, "", -1, True, {}, "bob", timeout=60)
    except BridgeError as e:
        raise RuntimeError(f"history_get failed: {e}; {await diagnose(bridge, pid)}") from e
    out["history_get_all_s"] = time.perf_counter() - start
    texts = {row[4].get("", "") for row in history}
    out["throughput_in_bob_history"] = sum(f"{prefix}{i}" in texts for i in range(n))
    out["bob_history_total"] = len(history)
    out["rss_after_history_get_mib"] = rss_mib(pid)


async def diagnose(bridge: BridgeClient, pid: int) -> str:
    """What state the daemon is in after a failed call (for the error message)."""
    try:
        await bridge.ready_get(timeout=5)
        answer = "it still answers ready_get"
    except BridgeError as e:
        answer = f"ready_get fails too ({e})"
    try:
        state = next(
            line.split(":", 1)[1].strip()
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("State:")
        )
        cpu = f"state {state}, {cpu_s(pid):.2f} CPU s"
    except (OSError, StopIteration):
        cpu = "the process is gone"
    return f"the daemon: {answer}; {cpu}"


# --- the baseline: a bare Twisted client pair --------------------------------------------------


class Authenticator(client.XMPPAuthenticator):
    """Twisted's client authenticator with our SASL initializer (SCRAM)."""

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:  # noqa: N802
        super().associateWithStream(xs)
        xs.initializers = [
            SASLInitiatingInitializer(xs, required=True)
            if isinstance(init, sasl.SASLInitiatingInitializer)
            else init
            for init in xs.initializers
        ]


async def login(prosody: Prosody, jid: str, password: str) -> xmlstream.XmlStream:
    from twisted.internet import reactor

    tls = ssl.optionsForClientTLS(
        DOMAIN, trustRoot=ssl.Certificate.loadPEM(prosody.cert.read_bytes())
    )
    factory = xmlstream.XmlStreamFactory(Authenticator(JID(jid), password, tls))
    done: defer.Deferred[Any] = defer.Deferred()
    factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, done.callback)
    factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, done.errback)
    connector = reactor.connectTCP("127.0.0.1", prosody.c2s_port, factory)  # type: ignore[attr-defined]
    try:
        done.addTimeout(20, reactor)
        xs = await done.asFuture(asyncio.get_running_loop())
    except BaseException:
        connector.disconnect()
        raise
    if not hasattr(xs, "iqDeferreds"):
        xmlstream.upgradeWithIQResponseTracker(xs)
    return xs


async def available(xs: xmlstream.XmlStream) -> None:
    """Send initial presence; return once the server handled it (a ping answered after it)."""
    xs.send(domish.Element((NS_CLIENT, "presence")))
    iq = xmlstream.IQ(xs, "get")
    iq.addElement(("urn:xmpp:ping", "ping"))
    await iq.send().asFuture(asyncio.get_running_loop())


def chat(to: str, text: str) -> domish.Element:
    element = domish.Element((NS_CLIENT, "message"))
    element["to"] = to
    element["type"] = "chat"
    element.addElement("body", content=text)
    return element


async def bench_baseline(prosody: Prosody, args: argparse.Namespace) -> dict[str, Any]:
    assert prosody.process is not None
    out: dict[str, Any] = {}
    a_jid = prosody.adduser("pair-a", "pair-pass")
    b_jid = prosody.adduser("pair-b", "pair-pass")
    streams: list[xmlstream.XmlStream] = []
    try:
        a = await login(prosody, a_jid, "pair-pass")
        streams.append(a)
        b = await login(prosody, b_jid, "pair-pass")
        streams.append(b)
        await available(a)
        await available(b)
        waiting: dict[str, asyncio.Future[float]] = {}
        batch: dict[str, Any] = {"prefix": "\0", "count": 0, "expected": 0, "done": None}

        def on_message(element: domish.Element) -> None:
            now = time.perf_counter()
            body = next(element.elements(NS_CLIENT, "body"), None)
            text = str(body) if body is not None else ""
            future = waiting.pop(text, None)
            if future is not None:
                future.set_result(now)
            elif text.startswith(batch["prefix"]):
                batch["count"] += 1
                if batch["count"] == batch["expected"]:
                    batch["done"].set_result(now)

        b.addObserver("/message", on_message)
        loop = asyncio.get_running_loop()
        latency_ms = []
        for i in range(args.warmup + args.latency_count):
            text = f"latency {i}"
            waiting[text] = received = loop.create_future()
            start = time.perf_counter()
            a.send(chat(b_jid, text))
            arrived = await asyncio.wait_for(received, 30)
            if i >= args.warmup:
                latency_ms.append((arrived - start) * 1000)
        for key, value in summary(latency_ms).items():
            out[f"baseline_latency_{key}_ms"] = value

        n = args.messages
        batch.update(prefix="throughput ", expected=n, done=loop.create_future())
        prosody_pid = prosody.process.pid
        cpu = CPU(
            {
                "prosody": lambda: cpu_s(prosody_pid),
                "bench": own_cpu_s,
                "machine": system_busy_s,
            }
        )
        start = time.perf_counter()
        for i in range(n):
            a.send(chat(b_jid, f"throughput {i}"))
        try:
            last = await asyncio.wait_for(batch["done"], max(60.0, n / 20))
        except TimeoutError:
            raise RuntimeError(f"B received {batch['count']} of {n} messages") from None
        used = cpu.used()
        out["baseline_throughput_s"] = last - start
        out["baseline_throughput_msgs_per_s"] = n / (last - start)
        out["baseline_received"] = batch["count"]
        used["other"] = max(0.0, used.pop("machine") - used["prosody"] - used["bench"])
        for name, seconds in used.items():
            out[f"baseline_cpu_{name}_s"] = seconds
            out[f"baseline_cpu_{name}_ms_per_msg"] = seconds * 1000 / n
    finally:
        for xs in streams:
            if xs.transport is not None:
                xs.sendFooter()
                xs.transport.loseConnection()
    return out


# --- the run ---------------------------------------------------------------------------------


def git_commit() -> str:
    """The commit measured ("+dirty" when libervia/ has uncommitted changes), or ""."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "libervia"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return commit + ("+dirty" if dirty else "")


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "messages": args.messages,
        "latency_count": args.latency_count,
        "commit": git_commit(),
        "cores": os.cpu_count(),
    }
    prosody = Prosody()
    bus = DBusDaemon()
    try:
        prosody.start()
        bus.start()
        figures.update(await bench_daemon(prosody, bus, directory, args))
        figures.update(await bench_baseline(prosody, args))
    finally:
        bus.stop()
        prosody.stop()
    figures["throughput_ratio_to_baseline"] = (
        figures["throughput_msgs_per_s"] / figures["baseline_throughput_msgs_per_s"]
    )
    figures["latency_ratio_to_baseline"] = (
        figures["latency_median_ms"] / figures["baseline_latency_median_ms"]
    )
    figures["all_arrived"] = (
        figures["throughput_received"] == args.messages
        and figures["throughput_in_bob_history"] == args.messages
        and figures["baseline_received"] == args.messages
    )
    figures["targets"] = {
        key: (figures[key] <= target if op == "<=" else figures[key] >= target)
        for key, (op, target, _) in TARGETS.items()
    }
    return figures


def run_reactor(main: Callable[[], Any]) -> Any:
    """Install the asyncio reactor, run the coroutine ``main()`` under it, return its result."""
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    tasks: list[asyncio.Future[Any]] = []

    def start() -> None:
        task = asyncio.ensure_future(main())
        task.add_done_callback(lambda _: reactor.stop())  # type: ignore[attr-defined]
        tasks.append(task)

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if not tasks:
        raise RuntimeError("the reactor stopped before the benchmark started")
    task = tasks[0]
    if not task.done():
        # interrupted (SIGINT/SIGTERM stop the reactor): run the cleanups (finally blocks)
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        raise RuntimeError("interrupted")
    return task.result()


def two_columns(rows: list[tuple[str, str]]) -> str:
    """``rows`` (label, value) as an aligned two-column table."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run_in_tempdir(bench: Callable[[Any, Path], Any], args: Any, prefix: str) -> Any:
    """Run the coroutine ``bench(args, directory)`` under the reactor, in a temporary directory
    removed afterwards; its figures."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run_reactor(lambda: bench(args, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def print_figures(
    figures: dict[str, Any], table: Callable[[dict[str, Any]], str], as_json: bool
) -> None:
    """The table on stdout, or JSON on stdout and the table on stderr."""
    if as_json:
        print(table(figures), file=sys.stderr)
        print(json.dumps(figures, indent=2))
    else:
        print(table(figures))


def table(f: dict[str, Any]) -> str:
    def mark(key: str) -> str:
        op, target, _ = TARGETS[key]
        return f"{op} {target:g}: {'met' if f['targets'][key] else 'MISSED'}"

    rows = [
        ("commit measured, cores", f"{f['commit'] or '?'}, {f['cores']}", ""),
        (
            "daemon start to ready_get (first: database created)",
            f"{f['daemon_start_to_ready_s']:.2f} s ({f['daemon_first_start_to_ready_s']:.2f} s)",
            "",
        ),
        ("connect 2 profiles (both 'connected')", f"{f['connect_2_profiles_s'] * 1000:.0f} ms", ""),
        ("daemon RSS, 2 profiles connected", f"{f['rss_connected_mib']:.1f} MiB", ""),
        (
            "daemon RSS, after the throughput run",
            f"{f['rss_after_throughput_mib']:.1f} MiB",
            mark("rss_after_throughput_mib"),
        ),
        (
            f"latency send -> bob's message_new ({f['latency_count']})",
            f"median {f['latency_median_ms']:.2f} ms, p95 {f['latency_p95_ms']:.2f}, "
            f"max {f['latency_max_ms']:.2f}",
            mark("latency_median_ms"),
        ),
        ("message_send call (alice), median", f"{f['message_send_call_median_ms']:.2f} ms", ""),
        (
            "bare pair latency A -> B",
            f"median {f['baseline_latency_median_ms']:.2f} ms, p95 "
            f"{f['baseline_latency_p95_ms']:.2f}, max {f['baseline_latency_max_ms']:.2f}",
            "",
        ),
        ("latency ratio daemon / bare pair (median)", f"{f['latency_ratio_to_baseline']:.1f}", ""),
        (
            f"daemon throughput ({f['messages']:,} msgs, {f['throughput_in_flight']} in flight)",
            f"{f['throughput_msgs_per_s']:,.0f} msg/s ({f['throughput_s']:.2f} s)",
            mark("throughput_msgs_per_s"),
        ),
        (
            "  received / in bob's history / duplicates",
            f"{f['throughput_received']:,} / {f['throughput_in_bob_history']:,} / "
            f"{f['throughput_duplicates']}",
            "",
        ),
        ("  all message_send calls answered after", f"{f['throughput_all_sent_s']:.2f} s", ""),
        (
            "  CPU daemon (main thread) / Prosody / dbus-daemon / bench",
            f"{f['throughput_cpu_daemon_ms_per_msg']:.3f} "
            f"({f['throughput_cpu_daemon_main_thread_ms_per_msg']:.3f}) / "
            + " / ".join(
                f"{f[f'throughput_cpu_{n}_ms_per_msg']:.3f}" for n in ("prosody", "dbus", "bench")
            )
            + " ms/msg",
            "",
        ),
        (
            "  CPU of other processes of the machine (noise)",
            f"{f['throughput_cpu_other_s']:.2f} s",
            "",
        ),
        (
            f"bare pair throughput ({f['messages']:,} msgs)",
            f"{f['baseline_throughput_msgs_per_s']:,.0f} msg/s "
            f"({f['baseline_throughput_s']:.2f} s)",
            "",
        ),
        (
            "  CPU Prosody / bench (both clients)",
            f"{f['baseline_cpu_prosody_ms_per_msg']:.3f} / {f['baseline_cpu_bench_ms_per_msg']:.3f}"
            " ms/msg",
            "",
        ),
        (
            "  CPU of other processes of the machine (noise)",
            f"{f['baseline_cpu_other_s']:.2f} s",
            "",
        ),
        (
            "throughput ratio daemon / bare pair",
            f"{f['throughput_ratio_to_baseline']:.2f}",
            mark("throughput_ratio_to_baseline"),
        ),
        (
            "history_get of bob's whole history with alice",
            f"{f['history_get_all_s']:.2f} s, RSS then {f['rss_after_history_get_mib']:.1f} MiB",
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    met = [TARGETS[k][2] for k, ok in f["targets"].items() if ok]
    missed = [TARGETS[k][2] for k, ok in f["targets"].items() if not ok]
    lines.append(f"targets met: {len(met)} of {len(TARGETS)}")
    if missed:
        lines.append("targets missed: " + "; ".join(missed))
    for run, other, seconds in (
        ("daemon throughput", "throughput_cpu_other_s", "throughput_s"),
        ("bare pair throughput", "baseline_cpu_other_s", "baseline_throughput_s"),
    ):
        share = f[other] / f[seconds]
        if share > 0.1 and f[other] >= 0.05:
            lines.append(
                f"WARNING: other processes used {share:.0%} of a core during the {run} run: "
                "its figures are disturbed"
            )
    if not f["all_arrived"]:
        lines.append("ERROR: messages were lost")
    return "\n".join(lines)


def print_profile(path: Path, count: int = 25) -> None:
    import pstats

    for order in ("cumulative", "tottime"):
        print(f"\n--- daemon profile, top {count} by {order} ({path}) ---")
        pstats.Stats(str(path), stream=sys.stdout).sort_stats(order).print_stats(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=2000, help="messages of each throughput run (default: 2000)"
    )
    parser.add_argument(
        "--latency-count", type=int, default=200, help="messages timed one at a time (default: 200)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="untimed messages first (default: 20)"
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=100,
        help="message_send calls in flight (default: 100; 0: all at once)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="JSON figures on stdout (table on stderr), or into FILE",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="FILE", help="run the daemon under cProfile into FILE"
    )
    args = parser.parse_args()
    if args.messages < 1 or args.latency_count < 1 or args.warmup < 0:
        parser.error("--messages and --latency-count must be >= 1, --warmup >= 0")
    if args.profile is not None:
        args.profile = args.profile.resolve()
    directory = Path(tempfile.mkdtemp(prefix="libervia-bench-messaging-"))
    try:
        figures = run_reactor(lambda: bench(args, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    text = table(figures)
    if args.json == "-":
        print(text, file=sys.stderr)
        print(json.dumps(figures, indent=2))
    else:
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if args.profile is not None:
        print_profile(args.profile)
    return 0 if figures["all_arrived"] and figures["daemon_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
