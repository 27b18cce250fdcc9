"""Archive catch-up benchmark (XEP-0313): the daemon storing N archived messages at connection.

    .venv/bin/python bench/mam.py                      # 10,000 messages
    .venv/bin/python bench/mam.py --messages 200 --json

Everything is private and on 127.0.0.1: a Prosody started for the run (MAM on, ``nagle =
false``; tests/e2e/prosody.py), a private ``dbus-daemon`` and the daemon in a temporary
directory, as in bench/messaging.py. bob's profile exists but has never been connected (empty
history: the catch-up fetches the last ``mam_catch_up_days``); a bare Twisted client, bob's
other device, sends N messages to alice, which Prosody archives in bob's archive (a ping
answered afterwards: all are archived). They reach bob's daemon only through the catch-up
(messages *to* bob would also come from Prosody's offline storage at his presence).
Then, measured:

1. the baseline (the ceiling): a bare Twisted client of bob pages through his archive with
   the daemon's queries (the time filter on the first page, then RSM ``after``; pages of 100
   asked, Prosody answers at most 50), receiving the N results, storing nothing
   (``--baseline-again``: also after the daemon's catch-up);
2. the daemon: from bob's ``connect`` call to his N-th ``message_new`` (the messages are
   stored when it is emitted); then bob's history is checked to hold N messages, each once;
   messages/s, and the ratio to the baseline;
3. a second connection of bob: the catch-up finds nothing new (no ``message_new``), timed from
   ``connect`` to the daemon's log line.

The exit code is 0 when every message arrived once (a measurement: no target), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.words.protocols.jabber import xmlstream  # noqa: E402

from bench.messaging import (  # noqa: E402
    available,
    chat,
    git_commit,
    login,
    print_figures,
    run_in_tempdir,
    two_columns,
)
from libervia.backend.plugins.plugin_xep_0313 import CATCH_UP_DAYS, xmpp_datetime  # noqa: E402
from tests.dbus import DBusDaemon  # noqa: E402
from tests.e2e.daemon import Daemon, make_account  # noqa: E402
from tests.e2e.prosody import Prosody  # noqa: E402

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"


def close(xs: xmlstream.XmlStream) -> None:
    factory = getattr(xs, "factory", None)
    if factory is not None:
        factory.stopTrying()  # an XmlStreamFactory reconnects otherwise
    xs.sendFooter()
    xs.transport.loseConnection()


async def fill_archive(prosody: Prosody, bob_jid: str, alice_jid: str, count: int) -> float:
    """bob's other device sends ``count`` messages to alice; seconds until all are archived.

    (Messages *to* bob would also reach his daemon through Prosody's offline storage, at
    presence: they would not measure the catch-up.)
    """
    xs = await login(prosody, bob_jid, "xmpp-pass")
    try:
        await available(xs)
        start = time.perf_counter()
        for i in range(count):
            xs.send(chat(alice_jid, f"archived {i}"))
        # the server handles a session's stanzas in order: once this ping is answered, every
        # message before it was routed (and archived)
        iq = xmlstream.IQ(xs, "get")
        iq.addElement(("urn:xmpp:ping", "ping"))
        await iq.send().asFuture(asyncio.get_running_loop())
        return time.perf_counter() - start
    finally:
        close(xs)


async def baseline(prosody: Prosody, bob_jid: str) -> dict[str, Any]:
    """A bare client pages through bob's whole archive."""
    xs = await login(prosody, bob_jid, "xmpp-pass")
    results = 0
    pages = 0

    def on_result(_: Any) -> None:
        nonlocal results
        results += 1

    xs.addObserver(f"/message/result[@xmlns='{NS_MAM}']", on_result)

    start_filter = xmpp_datetime(time.time() - CATCH_UP_DAYS * 86400)
    try:
        start = time.perf_counter()
        after = None
        while True:
            iq = xmlstream.IQ(xs, "set")
            query = iq.addElement((NS_MAM, "query"))
            query["queryid"] = f"b{pages}"
            if not after:
                # the daemon's first query with an empty history: the same time filter
                form = query.addElement(("jabber:x:data", "x"))
                form["type"] = "submit"
                for var, value in (("FORM_TYPE", NS_MAM), ("start", start_filter)):
                    form_field = form.addElement("field")
                    form_field["var"] = var
                    form_field.addElement("value", content=value)
            rsm = query.addElement((NS_RSM, "set"))
            rsm.addElement("max", content="100")
            if after:
                rsm.addElement("after", content=after)
            answer = await iq.send().asFuture(asyncio.get_running_loop())
            pages += 1
            fin = next(answer.elements(NS_MAM, "fin"))
            last = next((c for c in fin.elements(NS_RSM, "set")), None)
            last_id = str(next(last.elements(NS_RSM, "last"))) if last is not None else ""
            if fin.getAttribute("complete") == "true" or not last_id:
                break
            after = last_id
        seconds = time.perf_counter() - start
    finally:
        close(xs)
    return {
        "baseline_results": results,
        "baseline_pages": pages,
        "baseline_s": seconds,
        "baseline_msgs_per_s": results / seconds,
    }


async def bench(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"messages": args.messages, "commit": git_commit()}
    prosody = Prosody()
    bus = DBusDaemon()
    try:
        prosody.start()
        bus.start()
        (directory / "daemon").mkdir()
        daemon = Daemon(directory / "daemon", bus.address)
        daemon.start()
        bridge = await daemon.bridge()
        try:
            alice_jid = await make_account(bridge, prosody, "alice", "alice")
            bob_jid = await make_account(bridge, prosody, "bob", "bob")
            figures["fill_s"] = await fill_archive(prosody, bob_jid, alice_jid, args.messages)
            figures.update(await baseline(prosody, bob_jid))

            loop = asyncio.get_running_loop()
            received: list[str] = []
            done = loop.create_future()

            def on_message_new(*a: Any) -> None:
                if a[8] != "bob":
                    return
                received.append(a[4].get("", ""))
                if len(received) >= args.messages and not done.done():
                    done.set_result(time.perf_counter())

            bridge.on_signal("message_new", on_message_new)
            start = time.perf_counter()
            await bridge.connect("bob", "", {})
            connected = time.perf_counter()
            end = await asyncio.wait_for(done, args.timeout)
            figures["daemon_connect_s"] = connected - start
            figures["daemon_catch_up_s"] = end - start
            figures["daemon_msgs_per_s"] = args.messages / (end - start)
            figures["ratio_to_baseline"] = (
                figures["daemon_msgs_per_s"] / figures["baseline_msgs_per_s"]
            )
            history = await bridge.history_get("", "", -1, False, {}, "bob")
            texts = [h[4].get("", "") for h in history]
            figures["in_history"] = len(texts)
            figures["distinct_in_history"] = len(set(texts))
            figures["signals"] = len(received)

            if args.baseline_again:
                figures.update(
                    {f"{k}_after": v for k, v in (await baseline(prosody, bob_jid)).items()}
                )

            # the next connection: nothing new
            await bridge.disconnect("bob")
            log_mark = daemon.logs().count("messages caught up from the archive")
            before = len(received)
            start = time.perf_counter()
            await bridge.connect("bob", "", {})
            while daemon.logs().count("messages caught up from the archive") == log_mark:
                if time.perf_counter() - start > args.timeout:
                    raise TimeoutError("no catch-up on the second connection")
                await asyncio.sleep(0.01)
            figures["second_catch_up_s"] = time.perf_counter() - start
            figures["second_signals"] = len(received) - before
        finally:
            await bridge.close()
            figures["daemon_exit_code"] = daemon.stop()
    finally:
        bus.stop()
        prosody.stop()
    figures["all_once"] = (
        figures.get("in_history") == args.messages
        and figures.get("distinct_in_history") == args.messages
        and figures.get("signals") == args.messages
        and figures.get("second_signals") == 0
        and figures.get("baseline_results") == args.messages
    )
    return figures


def table(f: dict[str, Any]) -> str:
    rows = [
        ("archived messages", f"{f['messages']:,}"),
        ("filling the archive", f"{f['fill_s']:.2f} s"),
        (
            "baseline: bare client pages the archive",
            f"{f['baseline_s']:.2f} s, {f['baseline_pages']} pages, "
            f"{f['baseline_msgs_per_s']:,.0f} msgs/s",
        ),
        (
            "daemon: connect -> last message_new",
            f"{f['daemon_catch_up_s']:.2f} s ({f['daemon_msgs_per_s']:,.0f} msgs/s stored, "
            f"{f['ratio_to_baseline']:.0%} of the baseline)",
        ),
        ("daemon: connect call returned after", f"{f['daemon_connect_s'] * 1000:.0f} ms"),
        (
            "bob's history",
            f"{f['in_history']:,} messages, {f['distinct_in_history']:,} distinct",
        ),
        (
            "second connection: catch-up done after",
            f"{f['second_catch_up_s'] * 1000:.0f} ms, {f['second_signals']} message_new",
        ),
        ("every message stored once", "yes" if f["all_once"] else "NO"),
        ("commit", f["commit"]),
    ]
    return two_columns(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="default: 10000")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds to wait for the catch-up"
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    parser.add_argument(
        "--baseline-again", action="store_true", help="run the baseline after the daemon too"
    )
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages must be >= 1")
    figures = run_in_tempdir(bench, args, "libervia-bench-mam-")
    print_figures(figures, table, args.json)
    return 0 if figures["all_once"] and figures["daemon_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
