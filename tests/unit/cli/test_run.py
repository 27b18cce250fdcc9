"""One run of ``li`` against a fake bridge client: profile handling, errors and exit codes."""

from __future__ import annotations

import io
from typing import Any

import pytest

from libervia.cli import base
from libervia.cli import constants as C
from libervia.cli.base import Cli, build_parser
from libervia.frontends.bridge.client import BridgeError, BridgeTimeout, BridgeUnavailable
from tests.conftest import aio

ERROR = "org.libervia.Libervia.Error."


class FakeBridge:
    """Answers like the daemon for the few methods used here, and records the calls."""

    instances: list[FakeBridge] = []
    fail_connect: BridgeError | None = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.connected = {"alice": True, "bob": False}
        self.closed = False
        self.errors: dict[str, BaseException] = {}

    @classmethod
    async def open(cls, bus_address: str | None = None) -> FakeBridge:
        if cls.fail_connect is not None:
            raise cls.fail_connect
        bridge = cls()
        cls.instances.append(bridge)
        return bridge

    async def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        async def method(*args: Any, timeout: float | None = None) -> Any:
            self.calls.append((name, args))
            if name in self.errors:
                raise self.errors[name]
            return getattr(self, f"_{name}", lambda *a: None)(*args)

        return method

    def _profile_name_get(self, key: str) -> str:
        if key == "@DEFAULT@":
            return "alice"
        if key in self.connected:
            return key
        raise BridgeError(ERROR + "ProfileUnknown", f"unknown profile {key!r}")

    def _is_connected(self, profile: str) -> bool:
        return self.connected[profile]

    def _connect(self, profile: str, password: str, options: dict[str, str]) -> bool:
        was, self.connected[profile] = self.connected[profile], True
        return was

    def _contacts_get(self, profile: str) -> list[Any]:
        return [("bob@example.org", {"name": "Bob", "to": "true", "from": "true"}, [])]


@pytest.fixture(autouse=True)
def fake_bridge(monkeypatch: pytest.MonkeyPatch) -> type[FakeBridge]:
    FakeBridge.instances = []
    FakeBridge.fail_connect = None
    monkeypatch.setattr(base, "BridgeClient", FakeBridge)
    return FakeBridge


async def run(*argv: str, setup: Any = None) -> tuple[int, str, str, FakeBridge | None]:
    args = build_parser().parse_args(argv)
    stdout, stderr = io.StringIO(), io.StringIO()
    cli = Cli(args, stdout=stdout, stderr=stderr)
    if setup is not None:
        original = FakeBridge.open

        async def open_and_setup(bus_address: str | None = None) -> FakeBridge:
            bridge = await original(bus_address)
            setup(bridge)
            return bridge

        FakeBridge.open = open_and_setup  # type: ignore[method-assign,assignment]
        try:
            code = await cli.run()
        finally:
            FakeBridge.open = original  # type: ignore[method-assign]
    else:
        code = await cli.run()
    bridge = FakeBridge.instances[-1] if FakeBridge.instances else None
    return code, stdout.getvalue(), stderr.getvalue(), bridge


@aio
async def test_default_profile_and_output() -> None:
    code, out, err, bridge = await run("roster", "get", "-O", "json")
    assert (code, err) == (0, "")
    assert '"bob@example.org"' in out
    assert bridge is not None and bridge.closed
    assert [c[0] for c in bridge.calls] == [
        "wait_ready", "profile_name_get", "is_connected", "contacts_get"
    ]  # fmt: skip
    assert bridge.calls[1] == ("profile_name_get", ("@DEFAULT@",))


@aio
async def test_unknown_profile() -> None:
    code, out, err, _ = await run("roster", "get", "-p", "nobody")
    assert code == C.EXIT_NOT_FOUND and out == ""
    assert err == "li: error: unknown profile 'nobody' [ProfileUnknown]\n"


@aio
async def test_not_connected_then_connect_option() -> None:
    code, _, err, _ = await run("roster", "get", "-p", "bob")
    assert code == C.EXIT_ERROR and "not connected" in err and "-c" in err
    code, _, err, bridge = await run("roster", "get", "-p", "bob", "-c", "--pwd", "pw")
    assert (code, err) == (0, "")
    assert bridge is not None and ("connect", ("bob", "pw", {})) in bridge.calls


@aio
async def test_pwd_starts_the_session() -> None:
    code, _, _, bridge = await run("param", "get", "Connection", "JabberID", "--pwd", "secret")
    assert code == 0 and bridge is not None
    assert ("profile_start_session", ("secret", "alice")) in bridge.calls


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BridgeError(ERROR + "ProfileExists", "profile 'a' exists"), C.EXIT_CONFLICT),
        (BridgeError(ERROR + "PasswordError", "wrong password"), C.EXIT_CANCELLED),
        (BridgeError(ERROR + "AuthenticationFailed", "not authorized"), C.EXIT_CANCELLED),
        (BridgeError(ERROR + "Cancelled", "declined by the user"), C.EXIT_CANCELLED),
        (BridgeError(ERROR + "InvalidInput", "invalid JID\n'x'"), C.EXIT_BRIDGE_ERROR),
        (BridgeError(ERROR + "Timeout", "login timed out"), C.EXIT_TIMEOUT),
        (BridgeTimeout("no answer to x within 60 s"), C.EXIT_TIMEOUT),
        (
            BridgeError("org.freedesktop.DBus.Error.UnknownMethod", "no method"),
            C.EXIT_MISSING_FEATURE,
        ),
        (BridgeUnavailable("the connection to D-Bus is closed"), C.EXIT_DAEMON_UNAVAILABLE),
        (ValueError("oops"), C.EXIT_INTERNAL_ERROR),
    ],
)
@aio
async def test_errors_are_one_line_with_their_exit_code(error: BaseException, code: int) -> None:
    def setup(bridge: FakeBridge) -> None:
        bridge.errors["profile_create"] = error

    result, out, err, _ = await run("profile", "create", "a", setup=setup)
    assert result == code
    assert out == "" and err.startswith("li: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


@aio
async def test_internal_error_traceback_only_with_verbose() -> None:
    def setup(bridge: FakeBridge) -> None:
        bridge.errors["profile_create"] = ValueError("oops")

    code, _, err, _ = await run("profile", "create", "a", "-v", setup=setup)
    assert code == C.EXIT_INTERNAL_ERROR and "Traceback" in err and "ValueError: oops" in err


@aio
async def test_daemon_not_running() -> None:
    FakeBridge.fail_connect = BridgeUnavailable("the Libervia daemon is not running")
    code, out, err, _ = await run("profile", "list")
    assert code == C.EXIT_DAEMON_UNAVAILABLE and out == ""
    assert err == (
        "li: error: the Libervia daemon is not running (start it with: libervia-backend start)\n"
    )


@aio
async def test_profile_create_sets_the_connection_params_and_rolls_back() -> None:
    code, out, _, bridge = await run(
        "profile", "create", "carol", "-j", "carol@localhost", "-x", "xp", "--server",
        "127.0.0.1", "--port", "5222", "--no-check-certificate", "-A",
    )  # fmt: skip
    assert code == 0 and out == "profile carol created\n" and bridge is not None
    assert bridge.calls[1:] == [
        ("profile_create", ("carol", "", "")),
        ("param_set", ("JabberID", "carol@localhost", "Connection", -1, "carol")),
        ("param_set", ("Force server", "127.0.0.1", "Connection", -1, "carol")),
        ("param_set", ("Force port", "5222", "Connection", -1, "carol")),
        ("param_set", ("check_certificate", "false", "Connection", -1, "carol")),
        ("param_set", ("autoconnect", "true", "Connection", -1, "carol")),
        ("param_set", ("Password", "xp", "Connection", -1, "carol")),
    ]

    def setup(bridge: FakeBridge) -> None:
        bridge.errors["param_set"] = BridgeError(ERROR + "InvalidInput", "bad JID")

    code, _, err, bridge = await run("profile", "create", "dave", "-j", "x", setup=setup)
    assert code == C.EXIT_BRIDGE_ERROR and "bad JID [InvalidInput]" in err
    assert bridge is not None and bridge.calls[-1] == ("profile_delete_async", ("dave",))


@aio
async def test_confirmation_without_terminal_is_refused() -> None:
    code, _, err, bridge = await run("profile", "delete", "bob")
    assert code == C.EXIT_CANCELLED and "-f" in err
    assert bridge is not None and "profile_delete_async" not in [c[0] for c in bridge.calls]
    code, _, _, bridge = await run("profile", "delete", "bob", "-f")
    assert code == 0 and bridge is not None
    assert bridge.calls[-1] == ("profile_delete_async", ("bob",))


@aio
async def test_in_thread() -> None:
    assert await base.in_thread(lambda: 42) == 42
    with pytest.raises(EOFError):
        await base.in_thread(input_eof)


def input_eof() -> str:
    raise EOFError


def test_monitor_stops_cleanly_on_ctrl_c() -> None:
    from libervia.cli.cmd_debug import DebugMonitor
    from libervia.cli.cmd_message import MessageSend

    assert DebugMonitor.stops_on_interrupt and not MessageSend.stops_on_interrupt
