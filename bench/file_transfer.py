"""Jingle file transfer benchmark: throughput over SOCKS5 (direct, loopback) and IBB through
the whole stack, against a raw TCP copy of the same bytes on loopback (the ceiling).

    .venv/bin/python -m bench.file_transfer                # 200 MB SOCKS5, 20 MB IBB
    .venv/bin/python -m bench.file_transfer --scale 0.01   # 2 MB and 200 kB
    .venv/bin/python -m bench.file_transfer --json         # JSON on stdout, table on stderr

Everything is private and on 127.0.0.1: a Prosody started for the run (``nagle = false``;
tests/e2e/prosody.py), two daemons in temporary directories, each on its own private
``dbus-daemon`` (``socks5_interfaces = 127.0.0.1``, ``socks5_allow_loopback = true``,
``socks5_proxy = none``: the direct candidate only): alice and carol on the first, bob on
the second, driven through the bridge client as frontends would (the receiver's frontend
accepts the offer as soon as its ``action_new`` arrives). Files of random bytes, in a
temporary directory.

1. The ceiling: a raw TCP copy of the source file on 127.0.0.1 (one thread reads the file and
   sends it, another receives it and writes it to a new file; 256 KiB chunks; no hashing),
   median of ``--runs`` copies; the same with the receiver computing the sha-256 of what it
   writes (the least a receiver checking the hash must do); the sha-256 rate of this machine
   (the daemon hashes each file twice: the sender before offering, the receiver while
   receiving). The CPU used by other processes of the machine is reported for each phase.
2. SOCKS5 (``transport: s5b``), 200 MB x scale, ``--runs`` transfers between two daemons
   (alice's and bob's, like two machines), then between two profiles of one daemon (both
   ends in one process, alice to carol): the time from the ``action_launch`` accepting the
   offer to the receiver's ``progress_finished`` (the bytes, the receiver's hash check and
   rename: the transfer proper), and from the ``file_send`` call (which first hashes the
   file) to the receiver's ``progress_finished`` (end to end). Median MB/s, the ratio to the
   raw copy (target: >= 50 % for the transfer proper, two daemons), and the CPU seconds
   each daemon used per file.
3. IBB (``transport: ibb``, the default 4096-byte blocks), 20 MB x scale, once, between the
   two daemons: the same figures.

Every received file is compared with the source (sha-256) and its ``progress_finished``
must say ``hash_verified``. The exit code is 0 whether the target is met or missed (a
measurement); 1 when something is wrong (a transfer failed, a file differs, the daemon failed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.messaging import (  # noqa: E402
    CPU,
    cpu_s,
    git_commit,
    own_cpu_s,
    print_figures,
    run_in_tempdir,
    system_busy_s,
    two_columns,
)
from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon, Recorder, make_account  # noqa: E402
from tests.e2e.prosody import Prosody  # noqa: E402

MB = 1_000_000
CHUNK = 256 * 1024
CONFIG = "socks5_interfaces = 127.0.0.1\nsocks5_allow_loopback = true\nsocks5_proxy = none\n"
#: the transfer proper over SOCKS5, as a share of the raw copy
TARGET_RATIO = 0.5


def make_file(path: Path, size: int) -> str:
    """``size`` random bytes; their sha-256 (hex)."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MB))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(4 * MB):
            digest.update(chunk)
    return digest.hexdigest()


def raw_copy(source: Path, target: Path, hashed: bool = False) -> float:
    """Copy ``source`` to ``target`` over a TCP connection on 127.0.0.1 (``hashed``: the
    receiver also computes the sha-256 of what it writes, as a receiver must); seconds."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            connection, _ = listener.accept()
            digest = hashlib.sha256()
            with connection, target.open("wb") as out:
                while data := connection.recv(CHUNK):
                    out.write(data)
                    if hashed:
                        digest.update(data)
        except BaseException as e:  # reported by the caller
            errors.append(e)

    receiver = threading.Thread(target=receive)
    start = time.perf_counter()
    receiver.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as sender, source.open("rb") as data:
            while chunk := data.read(CHUNK):
                sender.sendall(chunk)
        receiver.join()
    finally:
        listener.close()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return seconds


def hash_rate(path: Path) -> float:
    """MB/s of sha-256 over the file (in the page cache by now)."""
    start = time.perf_counter()
    sha256_file(path)
    return path.stat().st_size / MB / (time.perf_counter() - start)


@dataclass
class Side:
    """A connected profile of one of the daemons."""

    bridge: Any
    events: Recorder
    profile: str
    full: str = ""


async def one_transfer(
    sender: Side, receiver: Side, source: Path, inbox: Path, transport: str, timeout: float
) -> dict[str, Any]:
    """``sender`` sends ``source``; ``receiver`` accepts into ``inbox`` at once; timings."""
    sent_at = time.perf_counter()
    answer = json.loads(
        await sender.bridge.file_send(
            receiver.full, str(source), "", "", json.dumps({"transport": transport}),
            sender.profile,
        )
    )  # fmt: skip
    sid, sender_progress = answer["session_id"], answer["progress"]
    offer = await receiver.events.wait(
        "action_new",
        lambda a: a[3] == receiver.profile and json.loads(a[0]).get("session_id") == sid,
        timeout=60,
    )
    data = json.loads(offer[0])
    accepted_at = time.perf_counter()
    await receiver.bridge.action_launch(
        offer[1], json.dumps({"accept": True, "path": str(inbox)}), receiver.profile
    )

    def ended(a: tuple[Any, ...]) -> bool:
        return a[0] == data["progress_id"]

    finished = asyncio.ensure_future(receiver.events.wait("progress_finished", ended, timeout))
    failed = asyncio.ensure_future(receiver.events.wait("progress_error", ended, timeout))
    try:
        done, _ = await asyncio.wait({finished, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (finished, failed):
            task.cancel()
    end = time.perf_counter()
    if failed in done and not failed.cancelled() and failed.exception() is None:
        raise RuntimeError(f"{transport} transfer failed: {failed.result()[1]}")
    metadata = json.loads(finished.result()[1])
    sender_end = await sender.events.wait(
        "progress_finished", lambda a: a[0] == sender_progress, timeout=30
    )
    return {
        "transfer_s": end - accepted_at,
        "end_to_end_s": end - sent_at,
        "hash_verified": metadata["hash_verified"] is True
        and json.loads(sender_end[1])["hash_verified"] is True,
        "path": metadata["path"],
    }


async def measure(
    sender: Side, receiver: Side, directory: Path, name: str, size: int, transport: str,
    runs: int, cpu: CPU, figures: dict[str, Any],
) -> None:  # fmt: skip
    """``runs`` transfers of a ``size``-byte file: median figures under ``name``_*."""
    source = directory / f"{name}.bin"
    expected = make_file(source, size)
    transfers, ends, ok = [], [], True
    busy = 0.0
    daemons_cpu = {"daemon0": 0.0, "daemon1": 0.0}
    for run in range(runs):
        inbox = directory / f"{name}-inbox-{run}"
        inbox.mkdir()
        timeout = 60 + size / (0.1 * MB)
        start = cpu.used()
        got = await one_transfer(sender, receiver, source, inbox, transport, timeout)
        used = cpu.used()
        busy += max(0.0, (used["machine"] - start["machine"]) - (used["ours"] - start["ours"]))
        for key in daemons_cpu:
            daemons_cpu[key] += used[key] - start[key]
        received = Path(got["path"])
        ok = ok and got["hash_verified"] and sha256_file(received) == expected
        transfers.append(got["transfer_s"])
        ends.append(got["end_to_end_s"])
        shutil.rmtree(inbox)
    source.unlink()
    transfer = statistics.median(transfers)
    end_to_end = statistics.median(ends)
    figures.update(
        {
            f"{name}_bytes": size,
            f"{name}_runs": runs,
            f"{name}_transfer_s": transfer,
            f"{name}_transfer_min_s": min(transfers),
            f"{name}_transfer_max_s": max(transfers),
            f"{name}_transfer_mb_per_s": size / MB / transfer,
            f"{name}_end_to_end_s": end_to_end,
            f"{name}_end_to_end_mb_per_s": size / MB / end_to_end,
            f"{name}_all_verified": ok,
            f"{name}_other_cpu_share": busy / sum(ends),
            # CPU seconds per transfer (end to end) of the first daemon (alice's, carol's)
            # and of the second (bob's)
            f"{name}_daemon0_cpu_s": daemons_cpu["daemon0"] / runs,
            f"{name}_daemon1_cpu_s": daemons_cpu["daemon1"] / runs,
        }
    )


async def connect(daemon: Daemon, prosody: Prosody, profiles: list[str]) -> list[Side]:
    bridge = await daemon.bridge()
    events = Recorder(bridge, ["connected", "action_new", "progress_finished", "progress_error"])
    sides = []
    for profile in profiles:
        await make_account(bridge, prosody, profile, profile)
        await bridge.connect(profile, "", {})
        connected = await events.wait("connected", lambda a, p=profile: a[1] == p)
        sides.append(Side(bridge, events, profile, connected[0]))
    await bridge.refresh()  # the plugins' methods (file_send)
    return sides


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    s5b_size = max(1, round(200 * MB * args.scale))
    ibb_size = max(1, round(20 * MB * args.scale))
    figures: dict[str, Any] = {
        "scale": args.scale,
        "commit": git_commit(),
        "cores": os.cpu_count(),
        "problems": [],
    }

    # the ceiling: a raw TCP copy of the same bytes, and the hash rate
    source = directory / "raw-source.bin"
    make_file(source, s5b_size)
    copies, hashed = [], []
    cpu = CPU({"ours": own_cpu_s, "machine": system_busy_s})
    for _ in range(args.runs):
        target = directory / "raw-copy.bin"
        copies.append(raw_copy(source, target))
        if target.stat().st_size != s5b_size:
            figures["problems"].append("the raw copy is incomplete")
        target.unlink()
    used = cpu.used()
    for _ in range(args.runs):
        target = directory / "raw-copy.bin"
        hashed.append(raw_copy(source, target, hashed=True))
        target.unlink()
    figures["raw_hashed_copy_mb_per_s"] = s5b_size / MB / statistics.median(hashed)
    figures["raw_copy_s"] = statistics.median(copies)
    figures["raw_copy_mb_per_s"] = s5b_size / MB / figures["raw_copy_s"]
    figures["raw_other_cpu_share"] = max(0.0, used["machine"] - used["ours"]) / sum(copies)
    figures["sha256_mb_per_s"] = hash_rate(source)
    source.unlink()

    prosody = Prosody()
    buses = [DBusDaemon(), DBusDaemon()]
    daemons: list[Daemon] = []
    try:
        prosody.start()
        for n, bus in enumerate(buses):
            bus.start()
            (directory / f"daemon{n}").mkdir()
            daemons.append(Daemon(directory / f"daemon{n}", bus.address, CONFIG))
            daemons[-1].start()
        sides: list[Side] = []
        try:
            alice, carol = await connect(daemons[0], prosody, ["alice", "carol"])
            (bob,) = await connect(daemons[1], prosody, ["bob"])
            sides = [alice, bob]
            assert prosody.process and all(d.process for d in daemons)
            daemon_pids = [d.process.pid for d in daemons if d.process]
            pids = [prosody.process.pid, *daemon_pids]
            pids += [b.process.pid for b in buses if b.process]
            cpu = CPU(
                {
                    "ours": lambda: sum(cpu_s(pid) for pid in pids) + own_cpu_s(),
                    "machine": system_busy_s,
                    "daemon0": lambda: cpu_s(daemon_pids[0]),
                    "daemon1": lambda: cpu_s(daemon_pids[1]),
                }
            )
            runs = args.runs
            await measure(alice, bob, directory, "s5b", s5b_size, "s5b", runs, cpu, figures)
            await measure(alice, carol, directory, "s5b_one", s5b_size, "s5b", runs, cpu, figures)
            await measure(alice, bob, directory, "ibb", ibb_size, "ibb", 1, cpu, figures)
        except Exception as e:
            figures["problems"].append(f"{type(e).__name__}: {e}")
        finally:
            for side in sides:
                await side.bridge.close()
            codes = [d.stop() for d in daemons]
            figures["daemon_exit_codes"] = codes
            if any("Traceback" in d.logs() for d in daemons):
                figures["problems"].append("a traceback in a daemon's log")
    finally:
        for bus in buses:
            bus.stop()
        prosody.stop()
    for name in ("s5b", "s5b_one", "ibb"):
        if f"{name}_transfer_mb_per_s" in figures:
            figures[f"{name}_ratio_to_raw"] = (
                figures[f"{name}_transfer_mb_per_s"] / figures["raw_copy_mb_per_s"]
            )
            figures[f"{name}_ratio_to_raw_hashed"] = (
                figures[f"{name}_transfer_mb_per_s"] / figures["raw_hashed_copy_mb_per_s"]
            )
            if not figures[f"{name}_all_verified"]:
                figures["problems"].append(f"{name}: a received file differs or is not verified")
    if figures["daemon_exit_codes"] != [0, 0]:
        figures["problems"].append(f"the daemons exited with {figures['daemon_exit_codes']}")
    ratio = figures.get("s5b_ratio_to_raw")
    figures["target_s5b_ratio"] = TARGET_RATIO
    figures["target_met"] = ratio is not None and ratio >= TARGET_RATIO
    return figures


def table(f: dict[str, Any]) -> str:
    rows = [
        ("machine", f"{f['cores']} cores"),
        (
            "raw TCP copy on 127.0.0.1 (the ceiling)",
            f"{f['raw_copy_mb_per_s']:,.0f} MB/s ({f['raw_copy_s']:.2f} s, median; "
            f"other processes: {f['raw_other_cpu_share']:.0%} of a core)",
        ),
        (
            "the same, the receiver hashing (sha-256)",
            f"{f['raw_hashed_copy_mb_per_s']:,.0f} MB/s (median)",
        ),
        ("sha-256 of this machine", f"{f['sha256_mb_per_s']:,.0f} MB/s"),
    ]
    labels = (
        ("s5b", "SOCKS5 direct, two daemons"),
        ("s5b_one", "SOCKS5 direct, one daemon"),
        ("ibb", "IBB, two daemons"),
    )
    for name, label in labels:
        if f"{name}_transfer_s" not in f:
            rows.append((label, "not measured"))
            continue
        size = f[f"{name}_bytes"] / MB
        rows += [
            (
                f"{label}: {size:,.1f} MB, accept -> received",
                f"{f[f'{name}_transfer_mb_per_s']:,.1f} MB/s ({f[f'{name}_transfer_s']:.2f} s "
                f"median of {f[f'{name}_runs']}, {f[f'{name}_ratio_to_raw']:.1%} of the raw "
                f"copy, {f[f'{name}_ratio_to_raw_hashed']:.1%} of the hashing one)",
            ),
            (
                f"{label}: file_send -> received",
                f"{f[f'{name}_end_to_end_mb_per_s']:,.1f} MB/s "
                f"({f[f'{name}_end_to_end_s']:.2f} s, with the sender's hash first; other "
                f"processes: {f[f'{name}_other_cpu_share']:.0%} of a core)",
            ),
            (
                f"{label}: CPU of the daemons per file",
                f"first {f[f'{name}_daemon0_cpu_s']:.2f} s, "
                f"second {f[f'{name}_daemon1_cpu_s']:.2f} s",
            ),
        ]
    if "s5b_ratio_to_raw" in f:
        verdict = "met" if f["target_met"] else "MISSED"
        rows.append(("target: SOCKS5 (two daemons) >= 50% of the raw copy", verdict))
    rows += [
        ("problems", "; ".join(f["problems"]) or "none"),
        ("commit", f["commit"]),
    ]
    return two_columns(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (default: 1)")
    parser.add_argument(
        "--runs", type=int, default=3, help="SOCKS5 transfers and raw copies (default: 3)"
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    args = parser.parse_args()
    if args.scale <= 0 or args.runs < 1:
        parser.error("--scale must be > 0 and --runs >= 1")
    figures = run_in_tempdir(bench, args, "libervia-bench-ft-")
    print_figures(figures, table, args.json)
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
