"""Daemon benchmark: time from ``libervia-backend fg`` to ``ready_get`` answering, memory at idle.

    .venv/bin/python bench/daemon.py              # 5 starts on an existing database
    .venv/bin/python bench/daemon.py --runs 10 --json figures.json

Runs on a private ``dbus-daemon`` and a temporary ``local_dir`` (nothing touches the user's
session bus or data). Measures:

1. the first start (database created by the migrations): spawn to ``ready_get`` answered;
2. later starts on that database: spawn to ``ready_get`` answered (median, min, max; target
   <= 0.5 s), and the same for a bare ``python -c pass`` and for importing the daemon's modules
   (the floor any start pays);
3. the resident memory (VmRSS) of the idle daemon, 1 s after it became ready;
4. SIGTERM to exit (clean shutdown, database closed);
5. the floor of the stack the daemon is built on: a fresh interpreter installing Twisted's
   asyncio reactor and importing SQLAlchemy's asyncio ORM with aiosqlite and dbus-fast (no
   code of ours): its time and resident memory, and the daemon's cost above them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbus_fast import Message, MessageType  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

BUS_NAME = "org.libervia.Libervia"
OBJECT_PATH = "/org/libervia/Libervia/bridge"
INTERFACE = "org.libervia.Libervia.core"
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/>
  </policy>
</busconfig>
"""
# what fg imports before it can serve: the reactor, the daemon, the host and the bridge
IMPORTS = (
    "from twisted.internet import asyncioreactor; asyncioreactor.install(); "
    "import libervia.backend.daemon, libervia.backend.core.main, "
    "libervia.backend.bridge.dbus, libervia.backend.bridge.adapters"
)

# the stack's floor: what any daemon on Twisted's asyncio reactor, SQLAlchemy 2's asyncio ORM
# over aiosqlite and dbus-fast imports before a line of its own code runs
STACK_FLOOR = (
    "from twisted.internet import asyncioreactor; asyncioreactor.install(); "
    "import sqlalchemy.ext.asyncio, sqlalchemy.orm, sqlalchemy.dialects.sqlite.aiosqlite, "
    "aiosqlite, dbus_fast.aio"
)
PRINT_RSS = "\nprint(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"


async def time_to_ready(bus: MessageBus, command: list[str], env: dict[str, str]) -> tuple:
    """Spawn the daemon; seconds until ready_get answers, and the process."""
    t0 = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    call = Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member="ready_get")
    while True:
        reply = await bus.call(call)
        if reply.message_type is MessageType.METHOD_RETURN:
            return time.perf_counter() - t0, process
        if reply.error_name != "org.freedesktop.DBus.Error.ServiceUnknown":
            process.kill()
            process.wait()
            raise RuntimeError(f"ready_get failed: {reply.error_name}: {reply.body}")
        if process.poll() is not None:
            raise RuntimeError(f"the daemon exited with code {process.returncode}")
        await asyncio.sleep(0.002)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def stop(process: subprocess.Popen[bytes]) -> float:
    t0 = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    if code != 0:
        raise RuntimeError(f"the daemon exited with code {code} on SIGTERM")
    return time.perf_counter() - t0


def subprocess_seconds(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, env=env)
    return time.perf_counter() - t0


def floor_rss_kib(code: str, env: dict[str, str]) -> int:
    """Resident memory (KiB) of a fresh interpreter once ``code`` has run."""
    result = subprocess.run(
        [sys.executable, "-c", code + PRINT_RSS],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return int(result.stdout.split()[-1])


async def bench(runs: int, directory: Path, address: str) -> dict[str, Any]:
    config = directory / "libervia.conf"
    config.write_text(f"[DEFAULT]\nlocal_dir = {directory / 'local'}\nlog_level = WARNING\n")
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address}
    env.pop("LIBERVIA_CONFIG", None)
    # as an installed daemon: compiled bytecode (pip and Debian write it at installation time;
    # a checkout run with PYTHONDONTWRITEBYTECODE would compile our modules at every start),
    # kept in the run's directory rather than beside the sources
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
    command = [sys.executable, "-m", "libervia.backend", "-c", str(config), "fg"]
    bus = await MessageBus(bus_address=address).connect()
    try:
        # warm-up: writes the bytecode of everything the first start imports (Alembic too),
        # then the database it created is removed for the measured first start
        _, process = await time_to_ready(bus, command, env)
        stop(process)
        shutil.rmtree(directory / "local")
        first, process = await time_to_ready(bus, command, env)
        stop(process)
        # each run measures the daemon's start and the floors one after the other, so that
        # the machine's noise falls on both sides of the comparison alike
        starts, rss, stops, python, imports, stack = [], [], [], [], [], []
        for _ in range(runs):
            seconds, process = await time_to_ready(bus, command, env)
            starts.append(seconds)
            await asyncio.sleep(1)
            rss.append(rss_kib(process.pid))
            stops.append(stop(process))
            python.append(subprocess_seconds([sys.executable, "-c", "pass"], env))
            imports.append(subprocess_seconds([sys.executable, "-c", IMPORTS], env))
            stack.append(subprocess_seconds([sys.executable, "-c", STACK_FLOOR], env))
    finally:
        bus.disconnect()
    return {
        "first_start_create_db_s": first,
        "start_to_ready_median_s": statistics.median(starts),
        "start_to_ready_min_s": min(starts),
        "start_to_ready_max_s": max(starts),
        "python_startup_median_s": statistics.median(python),
        "imports_median_s": statistics.median(imports),
        "idle_rss_median_mib": statistics.median(rss) / 1024,
        "sigterm_to_exit_median_s": statistics.median(stops),
        "stack_floor_median_s": statistics.median(stack),
        "stack_floor_min_s": min(stack),
        "stack_floor_rss_mib": floor_rss_kib(STACK_FLOOR, env) / 1024,
        "python_rss_mib": floor_rss_kib("pass", env) / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts to measure (default: 5)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="libervia-bench-daemon-"))
    socket_path = directory / "bus"
    (directory / "bus.conf").write_text(BUS_CONFIG.format(socket=socket_path))
    bus = subprocess.Popen(
        ["dbus-daemon", "--nofork", f"--config-file={directory / 'bus.conf'}", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert bus.stdout is not None
        bus.stdout.readline()
        figures = asyncio.run(bench(args.runs, directory, f"unix:path={socket_path}"))
    finally:
        bus.terminate()
        bus.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
    print(f"first start (database created):  {figures['first_start_create_db_s'] * 1000:7.0f} ms")
    print(
        f"fg -> ready_get, existing db:     {figures['start_to_ready_median_s'] * 1000:7.0f} ms "
        f"median ({figures['start_to_ready_min_s'] * 1000:.0f}-"
        f"{figures['start_to_ready_max_s'] * 1000:.0f}; target <= 500)"
    )
    print(f"  of which python startup:       {figures['python_startup_median_s'] * 1000:7.0f} ms")
    print(f"  python + imports of the daemon: {figures['imports_median_s'] * 1000:7.0f} ms")
    print(f"idle RSS:                         {figures['idle_rss_median_mib']:7.1f} MiB")
    print(f"SIGTERM -> exit:                  {figures['sigterm_to_exit_median_s'] * 1000:7.0f} ms")
    ratio = figures["imports_median_s"] / figures["start_to_ready_median_s"]
    print(f"ratio imports / start-to-ready:   {ratio:7.2f}")
    floor_s, floor_mib = figures["stack_floor_median_s"], figures["stack_floor_rss_mib"]
    print(
        f"stack floor (reactor + SQLAlchemy asyncio ORM/aiosqlite + dbus-fast, no code of ours):"
        f"\n  start {floor_s * 1000:.0f} ms median (min {figures['stack_floor_min_s'] * 1000:.0f}),"
        f" RSS {floor_mib:.1f} MiB (python alone {figures['python_rss_mib']:.1f} MiB)"
    )
    print(
        f"daemon above the floor:           "
        f"{(figures['start_to_ready_median_s'] - floor_s) * 1000:+7.0f} ms, "
        f"{figures['idle_rss_median_mib'] - floor_mib:+.1f} MiB "
        f"(start ratio {figures['start_to_ready_median_s'] / floor_s:.2f})"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
