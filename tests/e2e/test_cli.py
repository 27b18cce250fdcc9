"""End to end: ``li`` as a user runs it, against the real daemon on a private bus and a real
Prosody. Everything goes through ``li`` subprocesses (only the fixtures start the processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libervia.cli import constants as C
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon
from tests.e2e.prosody import Prosody

pytestmark = pytest.mark.timeout(120)

_LI = Path(sys.executable).parent / "li"
LI = [str(_LI)] if _LI.exists() else [sys.executable, "-m", "libervia.cli"]


def li(
    bus: str, *args: str, input: str | None = None, check: int | None = C.EXIT_OK
) -> subprocess.CompletedProcess[str]:
    """Run ``li ARGS`` with the private bus as session bus; check its exit code."""
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": bus, "NO_COLOR": "1"}
    result = subprocess.run(
        [*LI, *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if check is not None:
        assert result.returncode == check, (args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def eventually(fn: Callable[[], Any], timeout: float = 15) -> Any:
    """Call ``fn`` until it returns something true (an assertion error retries too)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout} s: {fn}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def bus() -> Iterator[DBusDaemon]:
    with DBusDaemon() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def daemon(bus: DBusDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    process = Daemon(tmp_path_factory.mktemp("daemon"), bus.address)
    process.start()
    try:
        # until the daemon owns its bus name, li says it is not running
        eventually(
            lambda: li(bus.address, "info", "version", check=None).returncode == C.EXIT_OK, 30
        )
        yield process
    finally:
        code = process.stop()
        assert code == 0, process.logs()


def test_two_accounts_chat_through_li(daemon: Daemon, prosody: Prosody) -> None:
    bus = daemon.bus_address
    tag = uuid.uuid4().hex[:6]
    alice, bob = f"alice{tag}", f"bob{tag}"
    jids = {}
    for name in (alice, bob):
        jids[name] = prosody.adduser(name, "xmpp-pass")
        out = li(
            bus,
            "profile", "create", name,
            "-j", jids[name],
            "-x", "xmpp-pass",
            "--server", "127.0.0.1",
            "--port", str(prosody.c2s_port),
            "--no-check-certificate",
            "-C",
        )  # fmt: skip
        assert f"profile {name} created" in out.stdout
        assert f"profile {name} connected" in out.stdout
    alice_jid, bob_jid = jids[alice], jids[bob]

    profiles = json.loads(li(bus, "profile", "list", "-O", "json").stdout)
    assert {alice, bob} <= set(profiles)
    info = json.loads(li(bus, "profile", "info", "-p", alice, "-O", "json").stdout)
    assert info["jid"] == alice_jid and info["connected"] is True
    assert info["server"] == "127.0.0.1" and info["check_certificate"] is False

    # both ways: text as arguments, and standard input split into lines
    li(bus, "message", "send", "-p", alice, bob_jid, "hello", "bob ✓")
    li(bus, "message", "send", "-p", bob, alice_jid, "--separate", input="first\n\nsecond\n")

    def history(profile: str, peer: str) -> list[dict[str, Any]]:
        out = li(bus, "message", "history", "-p", profile, peer, "-O", "json").stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def texts(profile: str, peer: str) -> list[str]:
        return [m["message"][""] for m in history(profile, peer)]

    expected = ["hello bob ✓", "first", "second"]
    eventually(lambda: texts(alice, bob_jid) == expected)
    eventually(lambda: texts(bob, alice_jid) == expected)
    messages = history(bob, alice_jid)
    assert messages[0]["from"].startswith(alice_jid) and messages[0]["to"].startswith(bob_jid)
    assert messages[0]["type"] == "chat" and isinstance(messages[0]["timestamp"], float)
    assert messages[0]["timestamp"] <= messages[1]["timestamp"] <= messages[2]["timestamp"]
    assert set(messages[0]) == {"uid", "timestamp", "from", "to", "message", "subject", "type",
                                "extra"}  # fmt: skip
    limited = li(bus, "message", "history", "-p", bob, alice_jid, "-n", "1", "-O", "json")
    assert [m["message"][""] for m in json.loads(limited.stdout)] == ["second"]
    found = li(bus, "message", "history", "-p", bob, alice_jid, "--search", "first", "-O", "json")
    assert [m["message"][""] for m in json.loads(found.stdout)] == ["first"]

    # the text form (stdout is not a terminal: plain lines)
    text = li(bus, "message", "history", "-p", alice, bob_jid).stdout
    lines = text.splitlines()
    assert len(lines) == 3, text
    assert lines[0].endswith(f"{bob_jid}: hello bob ✓") and f"] {alice_jid}" in lines[0]
    assert lines[2].endswith(": second") and f"] {bob_jid}" in lines[2]

    # roster
    li(bus, "roster", "add", "-p", alice, bob_jid, "-n", "Bob", "-g", "friends")

    def bob_in_roster() -> dict[str, Any] | None:
        contacts = json.loads(li(bus, "roster", "get", "-p", alice, "-O", "json").stdout)
        return next((c for c in contacts if c["jid"] == bob_jid and c["name"] == "Bob"), None)

    contact = eventually(bob_in_roster)
    assert contact["groups"] == ["friends"]
    table = li(bus, "roster", "get", "-p", alice, "-O", "simple").stdout
    assert f"{bob_jid}\tBob\t" in table

    disco = json.loads(li(bus, "info", "disco", "-p", alice, "localhost", "-O", "json").stdout)
    assert "jabber:iq:version" in disco["features"]
    assert {"category": "server", "type": "im", "name": "Prosody"} in disco["identities"]

    # errors: one line, a documented exit code
    again = li(bus, "profile", "create", alice, "-j", alice_jid, check=C.EXIT_CONFLICT)
    assert again.stderr.count("\n") == 1 and "ProfileExists" in again.stderr
    li(bus, "profile", "disconnect", "-p", bob)
    offline = li(bus, "message", "send", "-p", bob, alice_jid, "hi", check=C.EXIT_ERROR)
    assert "not connected" in offline.stderr and "-c" in offline.stderr
    li(bus, "message", "send", "-p", bob, "-c", alice_jid, "back")  # -c connects first
    eventually(lambda: texts(alice, bob_jid)[-1:] == ["back"])

    li(bus, "profile", "delete", bob, "-f")
    assert bob not in json.loads(li(bus, "profile", "list", "-O", "json").stdout)


def test_protected_profile_and_refused_login(daemon: Daemon, prosody: Prosody) -> None:
    bus = daemon.bus_address
    name = f"carol{uuid.uuid4().hex[:6]}"
    jid = prosody.adduser(name, "xmpp-pass")
    local = ("--server", "127.0.0.1", "--port", str(prosody.c2s_port), "--no-check-certificate")
    li(bus, "profile", "create", name, "-j", jid, "-x", "xmpp-pass", "-p", "secret", *local)
    wrong = li(bus, "profile", "connect", "-p", name, "--pwd", "nope", check=C.EXIT_CANCELLED)
    assert "[PasswordError]" in wrong.stderr and wrong.stderr.count("\n") == 1
    li(bus, "profile", "connect", "-p", name, "--pwd", "secret")
    info = json.loads(li(bus, "profile", "info", "-p", name, "-O", "json").stdout)
    assert info["connected"] is True and info["session_started"] is True

    # a new profile password: the old one is refused afterwards, the new one accepted
    li(bus, "profile", "modify", "-p", name, "--pwd", "secret", "-w", "new secret")
    old = li(
        bus, "profile", "modify", "-p", name, "--pwd", "secret", "-w", "x", check=C.EXIT_CANCELLED
    )
    assert "[PasswordError]" in old.stderr
    li(bus, "profile", "connect", "-p", name, "--pwd", "new secret")

    # a wrong XMPP password: the profile is made, the login is refused
    other = f"dave{uuid.uuid4().hex[:6]}"
    refused = li(
        bus, "profile", "create", other, "-j", prosody.adduser(other, "right"), "-x", "wrong",
        *local, "-C", check=C.EXIT_CANCELLED,
    )  # fmt: skip
    assert f"profile {other} created" in refused.stdout
    assert "[AuthenticationFailed]" in refused.stderr and refused.stderr.count("\n") == 1


def test_wrong_profile_is_a_clear_error(daemon: Daemon) -> None:
    result = li(
        daemon.bus_address, "message", "history", "-p", "nobody", "x@localhost",
        check=C.EXIT_NOT_FOUND,
    )  # fmt: skip
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "nobody" in result.stderr and "[ProfileUnknown]" in result.stderr
    usage = li(daemon.bus_address, "message", "history", check=C.EXIT_USAGE)
    assert "JID" in usage.stderr


def test_daemon_not_running(tmp_path: Path) -> None:
    with DBusDaemon() as empty_bus:  # a session bus where nobody runs the daemon
        result = li(empty_bus.address, "profile", "list", check=C.EXIT_DAEMON_UNAVAILABLE)
    assert result.stderr.count("\n") == 1
    assert "not running" in result.stderr and "libervia-backend start" in result.stderr
    no_bus = li(f"unix:path={tmp_path / 'none'}", "profile", "list", check=None)
    assert no_bus.returncode == C.EXIT_DAEMON_UNAVAILABLE
    assert no_bus.stderr.count("\n") == 1 and "libervia-backend start" in no_bus.stderr


def test_li_script_is_installed() -> None:
    assert shutil.which("li", path=str(Path(sys.executable).parent)), "pip install -e ."


def test_ping_and_software_version(daemon: Daemon, prosody: Prosody) -> None:
    """``li ping`` and ``li info version JID``: answered by Prosody and by the daemon."""
    bus = daemon.bus_address
    tag = uuid.uuid4().hex[:6]
    erin, fred = f"erin{tag}", f"fred{tag}"
    local = ("--server", "127.0.0.1", "--port", str(prosody.c2s_port), "--no-check-certificate")
    for name in (erin, fred):
        jid = prosody.adduser(name, "xmpp-pass")
        li(bus, "profile", "create", name, "-j", jid, "-x", "xmpp-pass", *local, "-C")

    pong = li(bus, "ping", "-p", erin, "localhost").stdout
    assert pong.startswith("pong from localhost: ") and pong.endswith(" ms\n"), pong
    pings = json.loads(
        li(bus, "ping", "-p", erin, "localhost", "-n", "2", "-i", "0", "-O", "json").stdout
    )
    assert pings["jid"] == "localhost" and len(pings["rtt_ms"]) == 2
    assert 0 < pings["min_ms"] <= pings["max_ms"] < 5000
    # an account: its server answers for the bare JID, the daemon for the full JID
    fred_jid = f"{fred}@localhost"
    assert 0 < float(li(bus, "ping", "-p", erin, fred_jid, "-d").stdout) < 5000
    li(bus, "message", "send", "-p", fred, f"{erin}@localhost", "hi")

    def fred_full() -> str | None:
        out = li(bus, "message", "history", "-p", erin, fred_jid, "-O", "json").stdout
        return next((m["from"] for m in json.loads(out) if "/" in m["from"]), None)

    full = eventually(fred_full)
    assert 0 < float(li(bus, "ping", "-p", erin, full, "-d").stdout) < 5000

    server = json.loads(li(bus, "info", "version", "-p", erin, "localhost", "-O", "json").stdout)
    assert server["jid"] == "localhost" and server["name"] == "Prosody" and server["version"]
    assert "name: Prosody" in li(bus, "info", "version", "-p", erin, "localhost").stdout
    client = json.loads(li(bus, "info", "version", "-p", erin, full, "-O", "json").stdout)
    assert client["name"] == "Libervia"
    assert (
        client["version"] == json.loads(li(bus, "info", "version", "-O", "json").stdout)["daemon"]
    )

    # errors: one line, a documented exit code
    gone = li(bus, "ping", "-p", erin, f"{fred_jid}/nowhere", check=C.EXIT_BRIDGE_ERROR)
    assert "[XMPPError]" in gone.stderr and gone.stderr.count("\n") == 1
    li(bus, "profile", "disconnect", "-p", fred)
    offline = li(bus, "info", "version", "-p", fred, "localhost", check=C.EXIT_ERROR)
    assert "not connected" in offline.stderr
