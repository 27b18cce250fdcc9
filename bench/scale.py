"""Scale benchmark: N profiles (200) connected at once to one daemon, each receiving messages.

    .venv/bin/python -m bench.scale                        # 200 profiles, 5 rounds
    .venv/bin/python -m bench.scale --profiles 5 --rounds 2 --json     # about the smoke test

Everything is private and on 127.0.0.1: a Prosody started for the run (STARTTLS with a
self-signed certificate, ``nagle = false``; tests/e2e/prosody.py), a private ``dbus-daemon``
and one daemon in a temporary directory, driven through the bridge client.

1. Accounts in bulk: Prosody's ``internal_hashed`` store keeps one Lua file per account
   (``data/<host>/accounts/<user>.dat``: SCRAM-SHA-1 ``stored_key``/``server_key``, salt,
   iteration count). The N accounts are written there directly (PBKDF2 computed here, as
   Prosody would), against ``prosodyctl register`` timed on a sample (the baseline); the
   logins of step 3 prove the files right.
2. N profiles created through the bridge (``profile_create`` + the connection parameters).
3. Baseline: one profile connected; B messages (100) from a raw sender (a bare Twisted XMPP
   client, as in bench/messaging.py) to it, one at a time, each until its ``message_new``
   (stored); resident memory (VmRSS) and CPU of the daemon, per message and at idle.
4. The same daemon with all N profiles connected (``connect`` calls, a bounded number in
   flight): time to connect them, RSS, CPU per connection; then R rounds, each sending one
   message to *every* profile at once and waiting for all N ``message_new``: per-message
   latency (send to the signal), per profile median and max, and the profiles starved (a
   message missing at the end of the run); the daemon's CPU per message; its CPU at idle with
   N profiles connected.

The exit code is 1 when a message was not delivered or a profile could not connect.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.words.protocols.jabber import xmlstream  # noqa: E402

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
    two_columns,
)
from libervia.frontends.bridge.client import BridgeClient  # noqa: E402
from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon  # noqa: E402
from tests.e2e.prosody import DOMAIN, Prosody  # noqa: E402

PASSWORD = "scale-pass"
SENDER = "scale-sender"
#: Prosody 0.12's default for new accounts
ITERATIONS = 10_000


# --- accounts in bulk ------------------------------------------------------------------------


def scram_sha1_record(password: str, iterations: int = ITERATIONS) -> str:
    """The account file ``mod_auth_internal_hashed`` would write for ``password``."""
    salt = str(uuid.uuid4())
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    stored_key = hashlib.sha1(client_key).hexdigest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha1).hexdigest()
    return (
        "return {\n"
        f'\t["stored_key"] = "{stored_key}";\n'
        f'\t["salt"] = "{salt}";\n'
        f'\t["iteration_count"] = {iterations};\n'
        f'\t["server_key"] = "{server_key}";\n'
        "};\n"
    )


def datamanager_name(name: str) -> str:
    """A name as Prosody's ``util.datamanager`` escapes it in paths (every byte but ASCII
    letters and digits as ``%xx``)."""
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02x}" for b in name.encode()
    )


def write_accounts(prosody: Prosody, users: list[str], password: str) -> float:
    """Create accounts by writing Prosody's account files; seconds taken."""
    start = time.perf_counter()
    accounts = prosody.dir / "data" / datamanager_name(DOMAIN) / "accounts"
    accounts.mkdir(parents=True, exist_ok=True)
    for user in users:
        if user.lower() != user:
            raise ValueError(f"{user!r}: account names are stored nodeprepped (lower case)")
        path = accounts / f"{datamanager_name(user)}.dat"
        path.write_text(scram_sha1_record(password))
        path.chmod(0o600)
    return time.perf_counter() - start


def prosodyctl_seconds(prosody: Prosody, users: list[str], password: str) -> float:
    """The baseline: ``prosodyctl register`` one account at a time; seconds per account."""
    start = time.perf_counter()
    for user in users:
        prosody.adduser(user, password)
    return (time.perf_counter() - start) / len(users)


# --- the daemon ------------------------------------------------------------------------------


async def create_profiles(
    bridge: BridgeClient, prosody: Prosody, names: list[str], in_flight: int = 10
) -> list[float]:
    """A profile per account, with the connection parameters (the certificate trusted); the
    seconds each ``profile_create`` call took."""
    limit = asyncio.Semaphore(in_flight)
    creates: list[float] = []

    async def create(name: str) -> None:
        async with limit:
            start = time.perf_counter()
            await bridge.profile_create(name, "", "")
            creates.append(time.perf_counter() - start)
            for param, value in (
                ("JabberID", f"{name}@{DOMAIN}"),
                ("Password", PASSWORD),
                ("Force server", "127.0.0.1"),
                ("Force port", str(prosody.c2s_port)),
                ("check_certificate", "false"),
            ):
                await bridge.param_set(param, value, "Connection", -1, name)

    await asyncio.gather(*(create(n) for n in names))
    return creates


async def connect_all(bridge: BridgeClient, names: list[str], in_flight: int) -> list[str]:
    """Connect the profiles (``in_flight`` calls at a time); the ones that failed."""
    limit = asyncio.Semaphore(in_flight)
    failed: list[str] = []

    async def connect(name: str) -> None:
        async with limit:
            try:
                await bridge.connect(name, "", {}, timeout=120)
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                failed.append(f"{name}: {e}")

    await asyncio.gather(*(connect(n) for n in names))
    return failed


class Deliveries:
    """``message_new`` of the measured messages: arrival times by text."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sent: dict[str, tuple[str, float]] = {}  # text -> (profile, send time)
        self.latency: dict[str, list[float]] = {}  # profile -> ms
        self.duplicates = 0
        self.received: set[str] = set()
        self.waiting = 0
        self.done: asyncio.Future[None] | None = None

    def expect(self, texts: dict[str, str]) -> asyncio.Future[None]:
        """Announce the texts (text -> profile) about to be sent."""
        self.done = asyncio.get_running_loop().create_future()
        self.waiting = len(texts)
        now = time.perf_counter()
        for text, profile in texts.items():
            self.sent[text] = (profile, now)
        return self.done

    def mark_sent(self, text: str) -> None:
        profile, _ = self.sent[text]
        self.sent[text] = (profile, time.perf_counter())

    def on_message_new(self, *args: Any) -> None:
        now = time.perf_counter()
        text = args[4].get("", "")
        if not text.startswith(self.prefix):
            return
        if text in self.received:
            self.duplicates += 1
            return
        entry = self.sent.get(text)
        if entry is None or entry[0] != args[8]:
            return  # not ours, or delivered to the wrong profile (counted as missing)
        self.received.add(text)
        self.latency.setdefault(args[8], []).append((now - entry[1]) * 1000)
        self.waiting -= 1
        if self.waiting == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)


async def rounds(
    sender: xmlstream.XmlStream,
    deliveries: Deliveries,
    profiles: list[str],
    count: int,
    tag: str,
    timeout: float,
) -> int:
    """``count`` rounds, each one message to every profile at once, until all arrived (or
    ``timeout`` per round); the messages missing."""
    missing = 0
    for r in range(count):
        texts = {f"{deliveries.prefix}{tag} {r} {p}": p for p in profiles}
        done = deliveries.expect(texts)
        for text, profile in texts.items():
            deliveries.mark_sent(text)
            sender.send(chat(f"{profile}@{DOMAIN}", text))
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            missing += deliveries.waiting
    return missing


def latency_figures(latency: dict[str, list[float]], profiles: list[str], key: str) -> dict:
    every = [v for p in profiles for v in latency.get(p, [])]
    if not every:
        return {f"{key}_received": 0}
    medians = [statistics.median(latency[p]) for p in profiles if latency.get(p)]
    return {
        f"{key}_received": len(every),
        f"{key}_latency_median_ms": statistics.median(every),
        f"{key}_latency_p95_ms": sorted(every)[max(0, round(0.95 * len(every)) - 1)],
        f"{key}_latency_max_ms": max(every),
        f"{key}_worst_profile_median_ms": max(medians),
        f"{key}_best_profile_median_ms": min(medians),
    }


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    n = args.profiles
    figures: dict[str, Any] = {
        "profiles": n,
        "rounds": args.rounds,
        "baseline_messages": args.baseline_messages,
        "commit": git_commit(),
        "cores": os.cpu_count(),
    }
    names = [f"scale{i:04d}" for i in range(n)]
    prosody = Prosody()
    bus = DBusDaemon()
    daemon: Daemon | None = None
    try:
        prosody.start()
        bus.start()
        # accounts: the baseline (prosodyctl) on a sample, then all in bulk
        sample = [f"ctl{i:02d}" for i in range(args.prosodyctl_sample)]
        figures["prosodyctl_s_per_account"] = prosodyctl_seconds(prosody, sample, PASSWORD)
        seconds = write_accounts(prosody, [*names, SENDER], PASSWORD)
        figures["bulk_s_per_account"] = seconds / (n + 1)
        figures["bulk_accounts_s"] = seconds
        figures["bulk_speedup"] = (
            figures["prosodyctl_s_per_account"] / figures["bulk_s_per_account"]
        )

        (directory / "daemon").mkdir()
        daemon = Daemon(directory / "daemon", bus.address, log_level="WARNING")
        daemon.start()
        bridge = await daemon.bridge(timeout=60)
        try:
            await _measure(bridge, daemon, prosody, names, args, figures)
        finally:
            await bridge.close()
    except BaseException:
        if daemon is not None:
            print(f"daemon log (end):\n{daemon.logs()}", file=sys.stderr)
        raise
    finally:
        if daemon is not None:
            figures["daemon_exit_code"] = code = daemon.stop()
            if code != 0:
                print(f"the daemon exited with code {code}:\n{daemon.logs()}", file=sys.stderr)
        bus.stop()
        prosody.stop()
    figures["ok"] = (
        not figures["connect_failed"]
        and figures["baseline_missing"] == 0
        and figures["all_missing"] == 0
        and figures["starved_profiles"] == 0
        and figures["duplicates"] == 0
        and figures["daemon_exit_code"] == 0
    )
    return figures


async def _measure(
    bridge: BridgeClient,
    daemon: Daemon,
    prosody: Prosody,
    names: list[str],
    args: argparse.Namespace,
    out: dict[str, Any],
) -> None:
    assert daemon.process is not None and prosody.process is not None
    pid, prosody_pid = daemon.process.pid, prosody.process.pid
    n = len(names)
    start = time.perf_counter()
    creates = await create_profiles(bridge, prosody, names)
    out["create_profiles_s"] = time.perf_counter() - start
    out["profile_create_call_median_ms"] = statistics.median(creates) * 1000
    deliveries = Deliveries("scale ")
    handle = bridge.on_signal("message_new", deliveries.on_message_new)
    await handle.ready()
    await asyncio.sleep(1)
    out["rss_no_profile_connected_mib"] = rss_mib(pid)

    sender = await login(prosody, f"{SENDER}@{DOMAIN}", PASSWORD)
    try:
        await available(sender)
        # the baseline: one profile connected
        failed = await connect_all(bridge, names[:1], 1)
        await asyncio.sleep(0.5)
        await rounds(sender, deliveries, names[:1], 2, "warmup1", 30)  # first-message costs
        deliveries.latency.clear()
        cpu = CPU({"daemon": lambda: cpu_s(pid)})
        out["baseline_missing"] = await rounds(
            sender, deliveries, names[:1], args.baseline_messages, "base", 30
        )
        out["baseline_cpu_daemon_ms_per_msg"] = cpu.used()["daemon"] * 1000 / args.baseline_messages
        out.update(latency_figures(deliveries.latency, names[:1], "baseline"))
        await asyncio.sleep(1)
        out["rss_1_profile_mib"] = rss_mib(pid)
        cpu = CPU({"daemon": lambda: cpu_s(pid)})
        await asyncio.sleep(args.idle)
        out["baseline_idle_cpu_share"] = cpu.used()["daemon"] / args.idle

        # all N connected
        cpu = CPU(
            {
                "daemon": lambda: cpu_s(pid),
                "prosody": lambda: cpu_s(prosody_pid),
                "machine": system_busy_s,
                "bench": own_cpu_s,
            }
        )
        start = time.perf_counter()
        failed += await connect_all(bridge, names[1:], args.in_flight)
        out["connect_s"] = time.perf_counter() - start
        used = cpu.used()
        out["connect_failed"] = failed
        out["connected"] = sum([await bridge.is_connected(p) for p in names])
        out["connect_cpu_daemon_ms_per_profile"] = used["daemon"] * 1000 / max(1, n - 1)
        out["connect_cpu_prosody_ms_per_profile"] = used["prosody"] * 1000 / max(1, n - 1)
        await asyncio.sleep(2)  # presence and roster exchanges settle
        out["rss_all_connected_mib"] = rss_mib(pid)
        out["rss_per_profile_mib"] = (out["rss_all_connected_mib"] - out["rss_1_profile_mib"]) / (
            max(1, n - 1)
        )
        cpu = CPU({"daemon": lambda: cpu_s(pid)})
        await asyncio.sleep(args.idle)
        out["all_idle_cpu_share"] = cpu.used()["daemon"] / args.idle

        await rounds(sender, deliveries, names, 1, "warmupN", args.timeout)
        deliveries.latency.clear()
        cpu = CPU(
            {
                "daemon": lambda: cpu_s(pid),
                "prosody": lambda: cpu_s(prosody_pid),
                "machine": system_busy_s,
                "bench": own_cpu_s,
            }
        )
        start = time.perf_counter()
        out["all_missing"] = await rounds(
            sender, deliveries, names, args.rounds, "all", args.timeout
        )
        elapsed = time.perf_counter() - start
        used = cpu.used()
        messages = n * args.rounds
        out["all_messages"] = messages
        out["all_s"] = elapsed
        out["all_msgs_per_s"] = messages / elapsed
        out["all_cpu_daemon_ms_per_msg"] = used["daemon"] * 1000 / messages
        out["all_cpu_prosody_ms_per_msg"] = used["prosody"] * 1000 / messages
        ours = used["daemon"] + used["prosody"] + used["bench"]
        out["all_other_cpu_share"] = max(0.0, used["machine"] - ours) / elapsed
        out.update(latency_figures(deliveries.latency, names, "all"))
        counts = [len(deliveries.latency.get(p, [])) for p in names]
        out["starved_profiles"] = sum(c < args.rounds for c in counts)
        out["min_messages_per_profile"] = min(counts)
        out["duplicates"] = deliveries.duplicates
        out["rss_after_rounds_mib"] = rss_mib(pid)
        # the signal is emitted once stored: a sample of histories agrees
        sample = names[:: max(1, n // 10)]
        stored = []
        for p in sample:
            history = await bridge.history_get(f"{SENDER}@{DOMAIN}", "", -1, True, {}, p)
            stored.append(sum(row[4].get("", "").startswith("scale all ") for row in history))
        out["history_sample_ok"] = all(c == args.rounds for c in stored)
    finally:
        close(sender)
    out["ratio_latency_all_to_baseline"] = (
        out.get("all_latency_median_ms", 0) / out["baseline_latency_median_ms"]
    )
    out["ratio_cpu_per_msg_all_to_baseline"] = (
        out["all_cpu_daemon_ms_per_msg"] / out["baseline_cpu_daemon_ms_per_msg"]
        if out["baseline_cpu_daemon_ms_per_msg"]
        else 0.0
    )


def table(f: dict[str, Any]) -> str:
    n = f["profiles"]
    rows = [
        ("commit measured, cores", f"{f['commit'] or '?'}, {f['cores']}"),
        (
            "accounts: prosodyctl register / bulk files",
            f"{f['prosodyctl_s_per_account'] * 1000:.1f} / {f['bulk_s_per_account'] * 1000:.1f}"
            f" ms per account ({f['bulk_speedup']:.1f}x)",
        ),
        (
            f"{n} profiles created through the bridge (10 at a time)",
            f"{f['create_profiles_s']:.1f} s (profile_create call median "
            f"{f['profile_create_call_median_ms']:.0f} ms)",
        ),
        ("daemon RSS, no profile connected", f"{f['rss_no_profile_connected_mib']:.1f} MiB"),
        ("baseline: RSS, 1 profile connected", f"{f['rss_1_profile_mib']:.1f} MiB"),
        (
            f"baseline: latency, {f['baseline_messages']} messages to 1 profile",
            f"median {f['baseline_latency_median_ms']:.1f} ms, "
            f"max {f['baseline_latency_max_ms']:.1f} ms",
        ),
        (
            "baseline: daemon CPU per message / at idle",
            f"{f['baseline_cpu_daemon_ms_per_msg']:.2f} ms / {f['baseline_idle_cpu_share']:.1%}",
        ),
        (
            f"connect {n - 1} more profiles",
            f"{f['connect_s']:.1f} s, {f['connected']} of {n} connected, daemon CPU "
            f"{f['connect_cpu_daemon_ms_per_profile']:.0f} ms per profile (Prosody "
            f"{f['connect_cpu_prosody_ms_per_profile']:.0f} ms)",
        ),
        (f"RSS, {n} profiles connected", f"{f['rss_all_connected_mib']:.1f} MiB"),
        ("RSS per profile (over the baseline)", f"{f['rss_per_profile_mib'] * 1024:.0f} KiB"),
        (f"daemon CPU at idle, {n} profiles", f"{f['all_idle_cpu_share']:.1%} of a core"),
        (
            f"{f['rounds']} rounds of 1 message to each of {n} profiles",
            f"{f['all_received']:,} of {f['all_messages']:,} received in {f['all_s']:.1f} s "
            f"({f['all_msgs_per_s']:.0f} msg/s), duplicates {f['duplicates']}",
        ),
        (
            "  latency send -> message_new (stored)",
            f"median {f.get('all_latency_median_ms', 0):.0f} ms, "
            f"p95 {f.get('all_latency_p95_ms', 0):.0f}, max {f.get('all_latency_max_ms', 0):.0f}",
        ),
        (
            "  per profile: medians from / to",
            f"{f.get('all_best_profile_median_ms', 0):.0f} / "
            f"{f.get('all_worst_profile_median_ms', 0):.0f} ms",
        ),
        (
            "  starved profiles (a message missing)",
            f"{f['starved_profiles']} (fewest received: {f['min_messages_per_profile']})",
        ),
        (
            "  daemon / Prosody CPU per message",
            f"{f['all_cpu_daemon_ms_per_msg']:.2f} / {f['all_cpu_prosody_ms_per_msg']:.2f} ms",
        ),
        ("  other processes of the machine", f"{f['all_other_cpu_share']:.0%} of a core"),
        ("ratio latency median all / baseline", f"{f['ratio_latency_all_to_baseline']:.1f}"),
        ("ratio CPU per message all / baseline", f"{f['ratio_cpu_per_msg_all_to_baseline']:.2f}"),
        ("histories sampled hold every message", str(f["history_sample_ok"])),
    ]
    text = two_columns(rows)
    if f["connect_failed"]:
        text += "\nERROR: connections failed: " + "; ".join(f["connect_failed"][:5])
    if not f["ok"]:
        text += "\nERROR: messages missing, profiles starved or the daemon failed"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=200, help="profiles (default: 200)")
    parser.add_argument("--rounds", type=int, default=5, help="messages per profile (default: 5)")
    parser.add_argument(
        "--baseline-messages",
        type=int,
        default=100,
        help="messages to the single profile, one at a time (default: 100)",
    )
    parser.add_argument(
        "--in-flight", type=int, default=20, help="connect calls in flight (default: 20)"
    )
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of idle CPU measured (default: 5)"
    )
    parser.add_argument(
        "--prosodyctl-sample",
        type=int,
        default=5,
        help="accounts made with prosodyctl for the baseline (default: 5)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a round may take (default: 120)"
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = parser.parse_args()
    if args.profiles < 2 or args.rounds < 1 or args.prosodyctl_sample < 1:
        parser.error("--profiles must be >= 2, --rounds and --prosodyctl-sample >= 1")
    figures = run_in_tempdir(bench, args, "libervia-bench-scale-")
    print_figures(figures, table, args.json)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
