"""``li ping`` and ``li info version JID`` against a fake bridge (the plugin methods ``ping``
and ``software_version_get``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from libervia.cli import base
from libervia.cli import constants as C
from libervia.cli.base import build_parser
from libervia.cli.cmd_ping import ping_dict
from libervia.frontends.bridge.client import BridgeError, BridgeTimeout
from tests.conftest import aio
from tests.unit.cli.test_run import FakeBridge, run

ERROR = "org.libervia.Libervia.Error."


class PluginBridge(FakeBridge):
    rtts = [0.0012, 0.0034, 0.0023]
    fail: dict[str, BaseException] = {}

    def __init__(self) -> None:
        super().__init__()
        self.pings = iter(self.rtts)
        self.errors.update(self.fail)

    def _ping(self, jid: str, profile: str) -> float:
        return next(self.pings)

    def _software_version_get(self, jid: str, profile: str) -> tuple[str, str, str]:
        return ("Prosody", "0.12.3", "Linux") if jid == "example.org" else ("", "", "")


@pytest.fixture(autouse=True)
def plugin_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBridge.instances = []
    FakeBridge.fail_connect = None
    monkeypatch.setattr(PluginBridge, "fail", {})
    monkeypatch.setattr(base, "BridgeClient", PluginBridge)


def calls(bridge: Any, name: str) -> list[tuple[Any, ...]]:
    return [args for method, args in bridge.calls if method == name]


@aio
async def test_ping_once() -> None:
    code, out, err, bridge = await run("ping", "example.org")
    assert (code, err) == (0, "")
    assert out == "pong from example.org: 1.20 ms\n"
    assert calls(bridge, "ping") == [("example.org", "alice")]
    assert calls(bridge, "is_connected") == [("alice",)]  # it needs a connected profile


@aio
async def test_ping_count_summary_and_delay_only() -> None:
    code, out, _, bridge = await run("ping", "example.org", "-n", "3", "-i", "0", "-p", "alice")
    assert code == 0
    assert out.splitlines() == [
        "pong from example.org: 1.20 ms",
        "pong from example.org: 3.40 ms",
        "pong from example.org: 2.30 ms",
        "3 pings: min 1.20 / avg 2.30 / max 3.40 ms",
    ]
    assert len(calls(bridge, "ping")) == 3
    code, out, _, _ = await run("ping", "example.org", "-n", "2", "-i", "0", "-d")
    assert (code, out) == (0, "1.20\n3.40\n")


@aio
async def test_ping_json() -> None:
    code, out, _, _ = await run("ping", "example.org", "-n", "2", "-i", "0", "-O", "json")
    assert code == 0
    assert json.loads(out) == {
        "jid": "example.org",
        "rtt_ms": [1.2, 3.4],
        "min_ms": 1.2,
        "avg_ms": 2.3,
        "max_ms": 3.4,
    }
    assert ping_dict("x", [1.0])["avg_ms"] == 1.0


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BridgeError(ERROR + "XMPPError", "bob@x/y answered service-unavailable"), 3),
        (BridgeError(ERROR + "Timeout", "no answer from bob@x/y in 30 s"), C.EXIT_TIMEOUT),
        (BridgeTimeout("no answer from the daemon"), C.EXIT_TIMEOUT),
        (BridgeError("org.freedesktop.DBus.Error.UnknownMethod", "no method 'ping'"), 17),
    ],
)
@aio
async def test_ping_errors(error: BaseException, code: int) -> None:
    PluginBridge.fail["ping"] = error
    result, out, err, _ = await run("ping", "bob@x/y")
    assert (result, out) == (code, "")
    assert err.startswith("li: error: ") and err.count("\n") == 1


def test_ping_arguments_are_checked() -> None:
    for bad in (["-n", "0"], ["-n", "x"], ["-i", "-1"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["ping", "example.org", *bad])


@aio
async def test_ping_needs_a_connected_profile() -> None:
    code, _, err, bridge = await run("ping", "example.org", "-p", "bob")
    assert code == C.EXIT_ERROR and "not connected" in err
    assert calls(bridge, "ping") == []


@aio
async def test_info_version_of_an_entity() -> None:
    code, out, err, bridge = await run("info", "version", "example.org")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["name: Prosody", "version: 0.12.3", "os: Linux"]
    assert calls(bridge, "software_version_get") == [("example.org", "alice")]
    code, out, _, _ = await run("info", "version", "example.org", "-O", "json")
    assert json.loads(out) == {
        "jid": "example.org", "name": "Prosody", "version": "0.12.3", "os": "Linux"
    }  # fmt: skip
    code, out, _, _ = await run("info", "version", "bob@example.org/phone")
    assert (code, out) == (0, "bob@example.org/phone does not tell its software version\n")


@aio
async def test_info_version_without_jid_needs_no_profile() -> None:
    code, out, err, bridge = await run("info", "version", "-O", "json")
    assert (code, err) == (0, "")
    assert set(json.loads(out)) == {"li", "daemon"}
    assert calls(bridge, "profile_name_get") == []


@aio
async def test_info_version_of_an_entity_needs_a_connected_profile() -> None:
    code, _, err, _ = await run("info", "version", "example.org", "-p", "bob")
    assert code == C.EXIT_ERROR and "not connected" in err
    code, _, err, bridge = await run("info", "version", "example.org", "-p", "bob", "-c")
    assert code == 0 and calls(bridge, "connect")
