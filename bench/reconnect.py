"""Reconnection benchmark: time for the daemon's profiles to come back after a server restart.

    .venv/bin/python bench/reconnect.py                    # 10 profiles, 5 restarts
    .venv/bin/python bench/reconnect.py --profiles 50 --restarts 3 --delay 0.2 --json

A private Prosody (tests/e2e/prosody.py), a private ``dbus-daemon`` and the real daemon
(``libervia-backend fg``) in a temporary directory. ``--profiles`` profiles are connected, then
Prosody is restarted (SIGTERM, start again on the same port and data) ``--restarts`` times.
For each restart it measures: the server's downtime (SIGTERM to listening again), and for each
profile the time from the server listening again to its ``connected`` signal (the backoff's
first delay, ``reconnect_delay`` ±20 % jitter, is part of it: ``--delay`` sets it, default the
daemon's 1 s), and the time until every profile is back. Restarts are ``--stable`` + 0.5 s
apart and the daemon's ``reconnect_stable`` is set to ``--stable``, so that each restart finds
the backoff reset (closer restarts see the growing delays of the backoff, as they should).
The floor of a reconnection is the ``--delay`` minus the jitter; what is above is connect +
TLS + SASL + roster + plugins.

Then (as root, with ``ss``) the client connections are killed ``--kills`` times (``ss -K``,
a reset both ways, the server keeps the sessions): the time until every profile is connected again
(``is_connected`` polled every 5 ms), with the number of sessions resumed (XEP-0198: back
without a ``disconnected`` signal) and of fresh sessions (``disconnected`` signals).

Exit code 0 when every profile came back every time, 1 otherwise.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon, make_account  # noqa: E402
from tests.e2e.prosody import Prosody  # noqa: E402


async def kill_sockets(
    daemon: Daemon,
    prosody: Prosody,
    bridge: Any,
    profiles: list[str],
    args: argparse.Namespace,
    disconnected: list[str],
) -> dict[str, Any]:
    """Kill every client connection (``ss -K``): time until every profile is connected again,
    and how many sessions were resumed (the others got a fresh session)."""
    lost_before = len(disconnected)
    killed = time.monotonic()
    subprocess.run(
        ["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{prosody.c2s_port}"],
        capture_output=True,
        check=True,
    )
    deadline = killed + args.timeout
    await asyncio.sleep(0.01)  # the daemon sees the resets
    while time.monotonic() < deadline:
        states = await asyncio.gather(*(bridge.is_connected(p) for p in profiles))
        if all(states):
            break
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - killed
    return {
        "all_back_s": elapsed,
        # a profile back without a disconnected signal was resumed
        "resumed": len(profiles) - len(set(disconnected[lost_before:])),
        "fresh_sessions": len(disconnected) - lost_before,
        "back": sum(await asyncio.gather(*(bridge.is_connected(p) for p in profiles))),
    }


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    prosody = Prosody()
    prosody.start()
    bus = DBusDaemon()
    bus.start()
    daemon = Daemon(
        directory,
        bus.address,
        f"reconnect_delay = {args.delay}\nreconnect_stable = {args.stable}\n",
    )
    daemon.start()
    try:
        bridge = await daemon.bridge()
        connected: dict[str, float] = {}
        changed = asyncio.Event()

        def on_connected(jid: str, profile: str) -> None:
            connected[profile] = time.monotonic()
            changed.set()

        bridge.on_signal("connected", on_connected)
        disconnected: list[str] = []
        bridge.on_signal("disconnected", disconnected.append)
        profiles = [f"p{i}" for i in range(args.profiles)]
        for profile in profiles:
            await make_account(bridge, prosody, profile, profile)
        await asyncio.gather(*(bridge.connect(p, "", {}) for p in profiles))
        runs = []
        for _ in range(args.restarts):
            connected.clear()
            stopped = time.monotonic()
            prosody.restart()
            listening = time.monotonic()
            deadline = listening + args.timeout
            while len(connected) < len(profiles) and time.monotonic() < deadline:
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
            back = [connected[p] - listening for p in profiles if p in connected]
            runs.append(
                {
                    "downtime_s": listening - stopped,
                    "back": len(back),
                    "median_s": statistics.median(back) if back else None,
                    "min_s": min(back) if back else None,
                    "all_back_s": max(back) if len(back) == len(profiles) else None,
                }
            )
            await asyncio.sleep(args.stable + 0.5)  # stable again: the backoff starts over
        kills = []
        if args.kills and shutil.which("ss") and os.geteuid() == 0:
            for _ in range(args.kills):
                kills.append(
                    await kill_sockets(daemon, prosody, bridge, profiles, args, disconnected)
                )
                await asyncio.sleep(0.5)
        await bridge.close()
        return {
            "profiles": args.profiles,
            "delay_s": args.delay,
            "runs": runs,
            "kills": kills,
            "ok": all(r["back"] == args.profiles for r in runs)
            and all(k["back"] == args.profiles for k in kills),
        }
    finally:
        try:
            daemon.stop()
        finally:
            bus.stop()
            prosody.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=10, help="connected profiles (10)")
    parser.add_argument("--restarts", type=int, default=5, help="server restarts (5)")
    parser.add_argument(
        "--delay", type=float, default=1.0, help="the daemon's reconnect_delay in seconds (1)"
    )
    parser.add_argument(
        "--stable",
        type=float,
        default=1.0,
        help="the daemon's reconnect_stable (1 s; waited between restarts so that each one "
        "starts from the first delay; the daemon's default is 120 s)",
    )
    parser.add_argument(
        "--kills",
        type=int,
        default=3,
        help="then kill the TCP connections (ss -K, root) this many times and time the "
        "XEP-0198 resumptions (3; 0: no)",
    )
    parser.add_argument("--timeout", type=float, default=60, help="give up after (60 s)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.profiles < 1 or args.restarts < 1:
        parser.error("--profiles and --restarts must be >= 1")
    directory = Path(tempfile.mkdtemp(prefix="libervia-bench-reconnect-"))
    try:
        figures = asyncio.run(bench(args, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{figures['profiles']} profiles, reconnect_delay {figures['delay_s']:g} s")
        print("restart  downtime  back  first   median  all back   (s after listening again)")
        for n, run in enumerate(figures["runs"], 1):

            def fmt(value: float | None) -> str:
                return "-" if value is None else f"{value:.3f}"

            print(
                f"{n:7d}  {run['downtime_s']:8.3f}  {run['back']:4d}  {fmt(run['min_s']):>6}"
                f"  {fmt(run['median_s']):>6}  {fmt(run['all_back_s']):>8}"
            )
        for n, kill in enumerate(figures["kills"], 1):
            print(
                f"sockets killed ({n}): all {kill['back']} back within {kill['all_back_s']:.3f} s"
                f" ({kill['resumed']} resumed, {kill['fresh_sessions']} fresh sessions)"
            )
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
