"""WebRTC data-channel file transfer benchmark: 20 MB through the whole stack against two bare
aiortc peers exchanging the same bytes in the same run (the ceiling).

    .venv/bin/python -m bench.webrtc                 # 20 MB, 3 runs of each
    .venv/bin/python -m bench.webrtc --scale 0.05    # 1 MB
    .venv/bin/python -m bench.webrtc --json          # JSON on stdout, table on stderr

Everything is private and on 127.0.0.1 (host candidates 127.0.0.1 only, no STUN):

1. The ceiling: two processes, each one aiortc peer (the sender creates the channel, as
   Conversations does), the SDP exchanged through their pipes; the sender writes the file in
   64 KiB messages with back-pressure on ``bufferedAmount``; the receiver hashes what
   arrives. Timed from the moment the answer is handed to the sender to the receiver's last
   byte.
2. The whole stack: a Prosody started for the run, one daemon (alice and bob, on its own
   private ``dbus-daemon``), ``li file receive --webrtc`` for bob and ``li file send
   --webrtc`` for alice (two processes, like the ceiling). Timed from the daemon's
   ``call_setup`` (the answer reaches alice's frontend) to bob's ``progress_finished`` (the
   file verified and renamed); also end to end, from starting ``li file send`` to its exit.

Each received file is compared with the source (sha-256) and the stack's must say
``hash_verified``. The exit code is 0 when everything arrived (a measurement, not a test of
a target); 1 when something went wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.file_transfer import make_file, sha256_file  # noqa: E402
from bench.messaging import git_commit, print_figures, run_in_tempdir, two_columns  # noqa: E402
from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon, Recorder, make_account  # noqa: E402
from tests.e2e.prosody import Prosody  # noqa: E402

MB = 1_000_000
CHUNK = 64 * 1024
HIGH_WATER = 1024 * 1024
LI = [sys.executable, "-m", "libervia.cli"]
ICE = ["--webrtc", "--ice-address", "127.0.0.1"]


# --- the ceiling: two bare aiortc peers ----------------------------------------------------


async def _peer(role: str, path: str, size: int) -> None:
    """One bare aiortc peer (run in its own process by :func:`bare_transfer`)."""
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done = loop.create_future()

    def say(data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    if role == "send":
        channel = pc.createDataChannel("test", protocol="xmpp-jingle")
        low = asyncio.Event()
        channel.bufferedAmountLowThreshold = HIGH_WATER // 2
        channel.on("bufferedamountlow", low.set)

        async def send() -> None:
            with open(path, "rb") as source:
                while data := source.read(CHUNK):
                    while channel.bufferedAmount > HIGH_WATER:
                        low.clear()
                        await low.wait()
                    channel.send(data)
            await done

        channel.on("open", lambda: asyncio.ensure_future(send()))
        await pc.setLocalDescription(await pc.createOffer())
        say({"sdp": pc.localDescription.sdp})
        answer = json.loads(await reader.readline())
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await reader.readline()  # the parent says the receiver is done
        done.set_result(None)
    else:
        digest = hashlib.sha256()
        count = 0

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            @channel.on("message")
            def on_message(message: bytes) -> None:
                nonlocal count
                count += len(message)
                digest.update(message)
                if count >= size and not done.done():
                    done.set_result(None)

        offer = json.loads(await reader.readline())
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        say({"sdp": pc.localDescription.sdp})
        await done
        say({"bytes": count, "sha256": digest.hexdigest()})
    await pc.close()


async def bare_transfer(source: Path, size: int) -> tuple[float, str]:
    """Two bare aiortc peers in two processes: (seconds, sha-256 of what arrived)."""

    async def spawn(role: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.webrtc",
            "--peer",
            role,
            str(source),
            str(size),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )

    sender, receiver = await spawn("send"), await spawn("receive")
    try:
        assert sender.stdin and sender.stdout and receiver.stdin and receiver.stdout
        offer = await sender.stdout.readline()
        receiver.stdin.write(offer)
        await receiver.stdin.drain()
        answer = await receiver.stdout.readline()
        started = time.perf_counter()
        sender.stdin.write(answer)
        await sender.stdin.drain()
        result = json.loads(await receiver.stdout.readline())
        elapsed = time.perf_counter() - started
        sender.stdin.write(b"done\n")
        await sender.stdin.drain()
        await asyncio.wait_for(asyncio.gather(sender.wait(), receiver.wait()), 30)
        return elapsed, result["sha256"]
    finally:
        for process in (sender, receiver):
            if process.returncode is None:
                process.kill()
                await process.wait()


# --- the whole stack -----------------------------------------------------------------------


async def stack_transfer(
    env: dict[str, str],
    events: Recorder,
    bob_full: str,
    alice: str,
    source: Path,
    inbox: Path,
) -> dict[str, Any]:
    """``li file receive --webrtc`` then ``li file send --webrtc``: the figures of one file."""
    seen = len(events.events)
    receiver = await asyncio.create_subprocess_exec(
        *LI,
        "file",
        "receive",
        alice,
        "--yes",
        "--path",
        str(inbox),
        "-p",
        "bob",
        "-O",
        "json",
        *ICE,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        await asyncio.sleep(2)  # li connects to the bus and subscribes to the signals
        started = time.perf_counter()
        sender = await asyncio.create_subprocess_exec(
            *LI,
            "file",
            "send",
            bob_full,
            str(source),
            "-p",
            "alice",
            "-O",
            "json",
            *ICE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        sent_out, sent_err = await asyncio.wait_for(sender.communicate(), 300)
        end_to_end = time.perf_counter() - started
        out, err = await asyncio.wait_for(receiver.communicate(), 60)
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
    if sender.returncode != 0 or receiver.returncode != 0:
        raise RuntimeError(f"li failed: {sent_err.decode()[-2000:]} {err.decode()[-2000:]}")
    (sent,) = json.loads(sent_out)
    got = json.loads(out)
    times = {}
    for when, (name, args) in zip(events.times[seen:], events.events[seen:], strict=True):
        if name == "call_setup" and args[0] == sent["session_id"]:
            times.setdefault("setup", when)
        if name == "progress_finished" and args[-1] == "bob":
            times.setdefault("finished", when)
    return {
        "transport": sent.get("transport"),
        "hash_verified": got.get("hash_verified"),
        "transfer_s": times["finished"] - times["setup"],
        "end_to_end_s": end_to_end,
        "path": got.get("path"),
    }


class TimedRecorder(Recorder):
    """A Recorder noting when each signal arrived."""

    def __init__(self, bridge: Any, names: list[str]) -> None:
        self.times: list[float] = []
        super().__init__(bridge, names)

    def _make(self, name: str) -> Any:
        record = super()._make(name)

        def timed(*args: Any) -> None:
            self.times.append(time.perf_counter())
            record(*args)

        return timed


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    size = max(1, round(20 * MB * args.scale))
    figures: dict[str, Any] = {
        "scale": args.scale,
        "bytes": size,
        "runs": args.runs,
        "commit": git_commit(),
        "cores": os.cpu_count(),
        "problems": [],
    }
    source = directory / "source.bin"
    expected = make_file(source, size)
    bare = []
    for _ in range(args.runs):
        elapsed, digest = await bare_transfer(source, size)
        if digest != expected:
            figures["problems"].append("bare aiortc: the received bytes differ")
        bare.append(elapsed)
    figures["bare_s"] = statistics.median(bare)
    figures["bare_mb_per_s"] = size / MB / figures["bare_s"]

    prosody = Prosody()
    bus = DBusDaemon()
    daemon: Daemon | None = None
    try:
        prosody.start()
        bus.start()
        (directory / "daemon").mkdir()
        daemon = Daemon(directory / "daemon", bus.address, "webrtc_ice_timeout = 30\n")
        daemon.start()
        bridge = await daemon.bridge()
        await bridge.refresh()  # the plugins' signals (call_setup)
        events = TimedRecorder(bridge, ["connected", "call_setup", "progress_finished"])
        jids = {}
        for profile in ("alice", "bob"):
            jids[profile] = await make_account(bridge, prosody, profile, profile)
            await bridge.connect(profile, "", {})
            jids[profile + "_full"] = (
                await events.wait("connected", lambda a, p=profile: a[1] == p)
            )[0]
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": bus.address, "NO_COLOR": "1"}
        stack = []
        for run in range(args.runs):
            inbox = directory / f"inbox{run}"
            inbox.mkdir()
            result = await stack_transfer(
                env, events, jids["bob_full"], jids["alice"], source, inbox
            )
            if result["transport"] != "urn:xmpp:jingle:transports:webrtc-datachannel:1":
                figures["problems"].append(f"transport {result['transport']} used")
            if not result["hash_verified"] or sha256_file(Path(result["path"])) != expected:
                figures["problems"].append("the stack's file differs or was not verified")
            stack.append(result)
        await bridge.close()
    finally:
        if daemon is not None:
            figures["daemon_exit_code"] = daemon.stop()
        bus.stop()
        prosody.stop()
    figures["stack_s"] = statistics.median(r["transfer_s"] for r in stack)
    figures["stack_end_to_end_s"] = statistics.median(r["end_to_end_s"] for r in stack)
    figures["stack_mb_per_s"] = size / MB / figures["stack_s"]
    figures["ratio_to_bare"] = figures["stack_mb_per_s"] / figures["bare_mb_per_s"]
    return figures


def table(f: dict[str, Any]) -> str:
    rows = [
        ("file", f"{f['bytes'] / MB:g} MB, median of {f['runs']} runs, {f['cores']} cores"),
        ("bare aiortc peers (ceiling)", f"{f['bare_s']:.2f} s = {f['bare_mb_per_s']:.2f} MB/s"),
        ("whole stack (li, daemon)", f"{f['stack_s']:.2f} s = {f['stack_mb_per_s']:.2f} MB/s"),
        ("ratio to the ceiling", f"{f['ratio_to_bare']:.2f}"),
        ("whole stack end to end", f"{f['stack_end_to_end_s']:.2f} s (li start to exit)"),
        ("problems", "; ".join(f["problems"]) or "none"),
    ]
    return two_columns(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="file size x 20 MB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.add_argument("--peer", nargs=3, metavar=("ROLE", "FILE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        role, path, size = args.peer
        asyncio.run(_peer(role, path, int(size)))
        return 0
    figures = run_in_tempdir(bench, args, "libervia-bench-webrtc-")
    print_figures(figures, table, args.json)
    return 1 if figures["problems"] or figures.get("daemon_exit_code") else 0


if __name__ == "__main__":
    sys.exit(main())
