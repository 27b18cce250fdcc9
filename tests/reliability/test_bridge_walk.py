"""Bridge input: walk the whole introspected API of a running daemon and call every method
with wrong types, invalid JIDs, malformed JSON, hostile strings and unknown profiles.

A real daemon process (tests/e2e/daemon.py) on a private bus; the calls are raw dbus-fast
messages (so that any signature can be sent, not only the declared one). What is proved:

- every call is answered (no timeout) by a method return or an ``org.libervia.Libervia.Error.*``
  error other than ``InternalError`` (which means an exception that is not a
  ``LiberviaError`` escaped: a bug);
- a call whose D-Bus signature does not match the declaration is refused before reaching the
  method with ``org.libervia.Libervia.Error.InvalidInput`` naming both signatures
  (libervia/backend/bridge/errors.py);
- the daemon's log holds no traceback, and the daemon is still alive and answering at the end.

Methods called with the walk's own profile only when harmless; see :data:`RESTRICTED`.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.signature import SignatureType, get_signature_tree

from libervia.backend.bridge.api import BUS_NAME, ERROR_PREFIX, INTERFACE_PREFIX, OBJECT_PATH
from libervia.backend.bridge.errors import error_name
from libervia.backend.core.exceptions import ErrorCode
from tests.conftest import aio, run
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, make_account, unique
from tests.e2e.prosody import Prosody

pytestmark = pytest.mark.timeout(150)

#: the answer to a call whose signature does not match the method
INVALID_ARGS = "org.libervia.Libervia.Error.InvalidInput"
INTERNAL = error_name(ErrorCode.INTERNAL)
WALKER = "walker"
UNKNOWN_PROFILE = "no_such_profile_zz"
PROFILE_ARGS = {"profile", "profile_key"}
#: hostile values for every string argument (besides the profile)
HOSTILE_STRINGS = [
    "",  # empty
    "a@@b",  # invalid JID
    "alice@" + "h" * 1100,  # JID part over 1023 bytes
    "{",  # malformed JSON
    '{"unknown": [1, {"deep": null}]}',  # JSON of the wrong shape
    "[]",  # JSON of the wrong type
    "../../../../etc/passwd",  # path traversal
    "x" * 100_000,  # oversized
    "\u202e\ufeff\U0001f600<iq/>&amp;",  # bidi, BOM, emoji, markup
]
#: methods never called with the walk's (existing) profile, and why; they are still called
#: with an unknown profile and with wrong types
RESTRICTED = {
    "profile_delete_async": "would delete the profile the rest of the walk uses",
}
#: methods not called at all, and why (none: no bridge method stops the daemon; stopping is
#: SIGTERM / ``libervia-backend stop``)
SKIPPED: dict[str, str] = {}


@dataclass(frozen=True)
class RemoteMethod:
    interface: str
    name: str
    arg_names: tuple[str, ...]
    signature: str


def introspected(xml: str) -> list[RemoteMethod]:
    """The methods of the Libervia interfaces in an introspection document."""
    methods = []
    for interface in ET.fromstring(xml).iter("interface"):
        name = interface.get("name", "")
        if not name.startswith(INTERFACE_PREFIX):
            continue
        for method in interface.iter("method"):
            args = [a for a in method.iter("arg") if a.get("direction", "in") == "in"]
            methods.append(
                RemoteMethod(
                    name,
                    method.get("name", ""),
                    tuple(a.get("name", "") for a in args),
                    "".join(a.get("type", "") for a in args),
                )
            )
    return methods


def value_for(t: SignatureType, text: str = "x") -> Any:
    """A value of D-Bus type ``t`` (strings are ``text``)."""
    code = t.token
    if code in ("s", "o", "g"):
        return text if code == "s" else ("/x" if code == "o" else "s")
    if code == "b":
        return False
    if code in "ynqiuxt":
        return 0
    if code == "d":
        return 0.0
    if code == "h":
        return 0
    if code == "v":
        return Variant("s", text)
    if code == "a":
        return {} if t.children[0].token == "{" else []
    if code == "(":
        return [value_for(c, text) for c in t.children]
    raise AssertionError(f"unexpected D-Bus type {t.signature}")


def _baseline(method: RemoteMethod, profile: str, text: str = "x") -> list[Any]:
    types = get_signature_tree(method.signature).types
    return [
        profile if name in PROFILE_ARGS else value_for(t, text)
        for name, t in zip(method.arg_names, types, strict=True)
    ]


def calls_for(
    method: RemoteMethod, walker: str = WALKER, text: str = "x"
) -> Iterator[tuple[str, str, list[Any]]]:
    """(what, signature, body) of every call made to ``method``; ``walker`` is the existing
    profile used, ``text`` the plausible value of the other string arguments."""

    def baseline(method: RemoteMethod, profile: str) -> list[Any]:
        return _baseline(method, profile, text)

    types = get_signature_tree(method.signature).types
    yield "unknown profile", method.signature, baseline(method, UNKNOWN_PROFILE)
    # wrong types: no argument, one more, every argument an int, strings where dicts are
    if method.signature:
        yield "wrong types", "", []
        yield "wrong types", "i" * len(types), [0] * len(types)
        yield "wrong types", method.signature + "s", [*baseline(method, walker), "x"]
    else:
        yield "wrong types", "s", ["x"]
    if "a{ss}" in method.signature:
        yield (
            "wrong types",
            method.signature.replace("a{ss}", "s"),
            [
                "{" if t.signature == "a{ss}" else v
                for t, v in zip(types, baseline(method, walker), strict=True)
            ],
        )
    if method.name in RESTRICTED:
        return
    for index, (name, t) in enumerate(zip(method.arg_names, types, strict=True)):
        if t.token == "s" and name not in PROFILE_ARGS:
            for hostile in HOSTILE_STRINGS:
                body = baseline(method, walker)
                body[index] = hostile
                yield f"hostile {name}", method.signature, body
        elif t.signature == "a{ss}":
            for hostile in HOSTILE_STRINGS[:4]:
                body = baseline(method, walker)
                body[index] = {hostile: hostile, "extra": "{", "": "a@@b"}
                yield f"hostile {name}", method.signature, body
        elif t.token in "inx":
            for number in (-1, -(2**31) if t.token != "n" else -(2**15), 2**31 - 1 if t.token
                           != "n" else 2**15 - 1):  # fmt: skip
                body = baseline(method, walker)
                body[index] = number
                yield f"hostile {name}", method.signature, body


async def call(bus: MessageBus, method: RemoteMethod, signature: str, body: list[Any]) -> Message:
    message = Message(
        destination=BUS_NAME,
        path=OBJECT_PATH,
        interface=method.interface,
        member=method.name,
        signature=signature,
        body=body,
    )
    reply = await asyncio.wait_for(bus.call(message), 20)
    assert reply is not None
    return reply


CONNECTED = "cwalker"


@pytest.fixture(scope="module")
def walk_daemon(tmp_path_factory: pytest.TempPathFactory, prosody: Prosody) -> Iterator[Daemon]:
    with DBusDaemon() as bus:
        daemon = Daemon(tmp_path_factory.mktemp("walk"), bus.address)
        daemon.start()
        try:
            run(_prepare(daemon, prosody))
            yield daemon
        finally:
            code = daemon.stop()
            assert code == 0, daemon.logs()


async def _prepare(daemon: Daemon, prosody: Prosody) -> None:
    """Two profiles: ``walker`` pointing at a closed local port (a connect fails at once),
    ``cwalker`` connected to the real Prosody (calls reach the network code)."""
    bridge = await daemon.bridge()
    try:
        await bridge.profile_create(WALKER, "", "")
        for name, value in (
            ("JabberID", "walker@localhost"),
            ("Password", "pw"),
            ("Force server", "127.0.0.1"),
            ("Force port", "1"),
        ):
            await bridge.param_set(name, value, "Connection", -1, WALKER)
        await make_account(bridge, prosody, CONNECTED, unique("cwalker"))
        await bridge.connect(CONNECTED, "", {})
        await bridge.refresh()
    finally:
        await bridge.close()


async def _walk(
    bus: MessageBus, methods: list[RemoteMethod], walker: str, text: str, in_flight: int = 1
) -> tuple[int, Counter[str], list[str], float]:
    """Every call of every method, ``in_flight`` at once; (calls, outcomes, bad outcomes, max
    latency)."""
    outcomes: Counter[str] = Counter()
    bad: list[str] = []
    latencies: list[float] = []
    semaphore = asyncio.Semaphore(in_flight)

    async def one(method: RemoteMethod, what: str, signature: str, body: list[Any]) -> None:
        async with semaphore:
            started = time.monotonic()
            answer = await call(bus, method, signature, body)
            latencies.append(time.monotonic() - started)
        described = f"{method.name}({signature}) {what}"
        if answer.message_type is MessageType.METHOD_RETURN:
            outcomes["return"] += 1
            return
        name = answer.error_name or "?"
        outcomes[name] += 1
        if signature != method.signature:
            if name != INVALID_ARGS:
                bad.append(f"{described}: {name} {answer.body}")
        elif not name.startswith(ERROR_PREFIX) or name == INTERNAL:
            bad.append(f"{described}: {name} {str(answer.body)[:300]}")

    jobs = [
        one(method, what, signature, body)
        for method in methods
        if method.name not in SKIPPED
        for what, signature, body in calls_for(method, walker, text)
    ]
    await asyncio.gather(*jobs)
    return len(jobs), outcomes, bad, max(latencies)


@pytest.mark.parametrize(
    ("walker", "text"),
    [(WALKER, "x"), (CONNECTED, "nobody@localhost")],
    ids=["offline-profile", "connected-profile"],
)
@aio
async def test_walk_the_whole_api(walk_daemon: Daemon, walker: str, text: str) -> None:
    daemon = walk_daemon
    bus = await MessageBus(bus_address=daemon.bus_address).connect()
    try:
        reply = await bus.call(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface="org.freedesktop.DBus.Introspectable",
                member="Introspect",
            )
        )
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN
        methods = introspected(reply.body[0])
        interfaces = {m.interface for m in methods}
        assert interfaces == {f"{INTERFACE_PREFIX}core", f"{INTERFACE_PREFIX}plugin"}, interfaces
        assert not set(SKIPPED) - {m.name for m in methods}
        started = time.monotonic()
        total, outcomes, bad, slowest = await _walk(bus, methods, walker, text)
        elapsed = time.monotonic() - started
        print(f"\nbridge walk ({walker}): {len(methods)} methods, {total} calls in "
              f"{elapsed:.1f} s, slowest answer {slowest:.2f} s: {dict(outcomes)}")  # fmt: skip
        assert not bad, "\n".join(bad)
        assert len(methods) >= 60 and total >= 1000
        # still alive and answering
        for _ in range(3):
            ready = await call(bus, methods_named(methods, "ready_get"), "", [])
            assert ready.message_type is MessageType.METHOD_RETURN
        started_reply = await call(
            bus, methods_named(methods, "profile_is_session_started"), "s", [walker]
        )
        assert started_reply.message_type is MessageType.METHOD_RETURN
        assert daemon.process is not None and daemon.process.poll() is None
        logs = daemon.logs()
        assert "Traceback" not in logs and "unexpected error in bridge call" not in logs, logs
    finally:
        bus.disconnect()


def methods_named(methods: list[RemoteMethod], name: str) -> RemoteMethod:
    return next(m for m in methods if m.name == name)


def test_restricted_and_skipped_are_documented() -> None:
    for reasons in (RESTRICTED, SKIPPED):
        assert all(isinstance(r, str) and r for r in reasons.values())


def test_calls_cover_every_kind_of_bad_input() -> None:
    method = RemoteMethod(
        f"{INTERFACE_PREFIX}core",
        "message_send",
        ("to_jid", "message", "subject", "mess_type", "extra", "profile_key"),
        "sa{ss}a{ss}sss",
    )
    kinds = Counter(what.split()[0] for what, _, _ in calls_for(method))
    assert kinds["unknown"] == 1 and kinds["wrong"] == 4 and kinds["hostile"] > 20
    bodies = [body for _, _, body in calls_for(method)]
    assert ["a@@b", {}, {}, "x", "x", WALKER] in bodies
    assert ["x", {}, {}, "x", "{", WALKER] in bodies


@aio
async def test_concurrent_walk_has_no_internal_errors(tmp_path: Path, prosody: Prosody) -> None:
    """The walk of the offline profile with 24 calls in flight at once, on a daemon of its
    own (its log gets the storage traceback): no call may end in an InternalError. Found
    1 InternalError (ps_cache_purge: 'database is locked') per run of 1,334 calls before
    writing transactions took SQLite's write lock first (memory/engine.py READ_ONLY)."""
    with DBusDaemon() as bus_daemon:
        daemon = Daemon(tmp_path, bus_daemon.address)
        daemon.start()
        try:
            await _prepare(daemon, prosody)
            bus = await MessageBus(bus_address=daemon.bus_address).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination=BUS_NAME,
                        path=OBJECT_PATH,
                        interface="org.freedesktop.DBus.Introspectable",
                        member="Introspect",
                    )
                )
                assert reply is not None
                methods = introspected(reply.body[0])
                _, outcomes, bad, _ = await _walk(bus, methods, WALKER, "x", in_flight=24)
            finally:
                bus.disconnect()
        finally:
            assert daemon.stop() == 0, daemon.logs()
    assert not bad, bad
