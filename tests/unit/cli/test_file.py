"""``li file send`` and ``li file receive`` against a fake bridge: the exact bridge calls
(file_send, action_launch, progress_get), the offers chosen from action_new, the questions,
--yes, offers withdrawn (action_update), the summaries, the JSON output, the progress bar and
the exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libervia.cli import base, cmd_file
from libervia.cli import constants as C
from libervia.cli.base import Cli, build_parser, parse_args
from libervia.cli.cmd_file import hash_text, human_size, jid_matches, summary
from libervia.frontends.bridge.client import BridgeError
from tests.conftest import aio
from tests.unit.cli.test_run import FakeBridge

ERROR = "org.libervia.Libervia.Error."
PROLOGUE = ("wait_ready", "profile_name_get", "is_connected")
BOB = "bob@example.org/laptop"
IBB = "urn:xmpp:jingle:transports:ibb:1"
WEBRTC = "urn:xmpp:jingle:transports:webrtc-datachannel:1"
FINISHED = {"size": 2_300_000, "hash_algo": "sha-256", "hash_verified": True, "duration": 1.0}


class Handle:
    def __init__(self, bridge: FileBridge, name: str, cb: Any) -> None:
        self.bridge, self.name, self.cb = bridge, name, cb

    def remove(self) -> None:
        if self.cb in self.bridge.handlers.get(self.name, []):
            self.bridge.handlers[self.name].remove(self.cb)


@dataclass
class Script:
    """What the fake daemon does: the file offers it announces once li listens, how each
    transfer ends (by file name: ("finished", metadata) or ("error", text)), the positions
    progress_get answers, the actions it withdraws, the errors of action_launch."""

    offers: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    outcomes: dict[str, tuple[str, Any]] = field(default_factory=dict)
    positions: list[Any] = field(default_factory=list)
    withdraw: dict[str, str] = field(default_factory=dict)
    withdraw_on_launch: dict[str, str] = field(default_factory=dict)


class FileBridge(FakeBridge):
    """The rest of FakeBridge, plus signals and the file transfer methods."""

    script = Script()

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[str, list[Any]] = {}
        self.sent = 0
        self.polls = 0

    def on_signal(self, name: str, cb: Any) -> Handle:
        self.handlers.setdefault(name, []).append(cb)
        if name == "action_new":
            asyncio.get_running_loop().call_soon(self._announce)
        return Handle(self, name, cb)

    def emit(self, name: str, *args: Any) -> None:
        for cb in list(self.handlers.get(name, [])):
            cb(*args)

    def later(self, name: str, *args: Any) -> None:
        asyncio.get_running_loop().call_soon(self.emit, name, *args)

    def _announce(self) -> None:
        for action_id, data, profile in self.script.offers:
            self.emit("action_new", json.dumps(data), action_id, 0, profile)
            if action_id in self.script.withdraw:
                reason = self.script.withdraw[action_id]
                update = json.dumps({"status": "cancelled", "reason": reason})
                self.later("action_update", action_id, update, profile)

    def _end(self, progress_id: str, name: str) -> None:
        status, value = self.script.outcomes.get(name, ("finished", FINISHED))
        self.later("progress_started", progress_id, json.dumps({"name": name}), "alice")
        if status == "finished":
            self.later("progress_finished", progress_id, json.dumps(value), "alice")
        elif status == "error":
            self.later("progress_error", progress_id, value, "alice")

    def _file_send(self, peer: str, path: str, name: str, *rest: str) -> str:
        self.sent += 1
        progress_id = f"p{self.sent}"
        self._end(progress_id, name)
        return json.dumps(
            {"progress": progress_id, "session_id": f"s{self.sent}", "transport": IBB}
        )

    def _action_launch(self, action_id: str, data: str, profile: str) -> str:
        if action_id in self.script.withdraw_on_launch:
            update = json.dumps(
                {"status": "cancelled", "reason": self.script.withdraw_on_launch[action_id]}
            )
            self.emit("action_update", action_id, update, profile)
            raise BridgeError(ERROR + "NotFound", f"no pending action {action_id!r}")
        offer = next(o for i, o, _p in self.script.offers if i == action_id)
        if json.loads(data)["accept"]:
            self._end(offer["progress_id"], offer["file"]["name"])
        return "{}"

    def _progress_get(self, progress_id: str, profile: str) -> dict[str, str]:
        self.polls += 1
        if not self.script.positions:
            raise BridgeError(ERROR + "NotFound", "no running progress")
        position = self.script.positions.pop(0)
        if isinstance(position, BaseException):
            raise position
        if not self.script.positions:
            self.later("progress_finished", progress_id, json.dumps(FINISHED), "alice")
        return {"position": str(position), "size": "2300000"}


def offer(
    action_id: str,
    sender: str = BOB,
    name: str = "report.pdf",
    in_roster: bool = True,
    profile: str = "alice",
    **extra: Any,
) -> tuple[str, dict[str, Any], str]:
    data = {
        "type": "file",
        "subtype": "jingle",
        "from_jid": sender,
        "session_id": f"sid-{action_id}",
        "progress_id": f"prog-{action_id}",
        "in_roster": in_roster,
        "file": {"name": name, "size": 2_300_000, "desc": "Q3 numbers", "hash_algo": "sha-256"},
        "message": f'{sender.split("/")[0]} wants to send you "{name}" (2.3 MB): Q3 numbers',
        **extra,
    }
    return action_id, data, profile


class Terminal(io.StringIO):
    """Standard input or error on a terminal."""

    def isatty(self) -> bool:
        return True


class BlockedTerminal(Terminal):
    """A terminal nobody types on (until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def readline(self, *args: Any) -> str:
        self.release.wait(10)
        return ""


@pytest.fixture(autouse=True)
def file_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBridge.instances = []
    FakeBridge.fail_connect = None
    monkeypatch.setattr(FileBridge, "script", Script())
    monkeypatch.setattr(base, "BridgeClient", FileBridge)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


@dataclass
class Result:
    code: int
    out: str
    err: str
    calls: list[tuple[str, tuple[Any, ...]]]

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for method, args in self.calls if method == name]

    @property
    def bridge_calls(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [c for c in self.calls if c[0] not in PROLOGUE]


async def li(*argv: str, stderr: io.StringIO | None = None) -> Result:
    args = parse_args(build_parser(), argv)
    stdout, stderr = io.StringIO(), stderr or io.StringIO()
    code = await Cli(args, stdout=stdout, stderr=stderr).run()
    calls = FakeBridge.instances[-1].calls if FakeBridge.instances else []
    return Result(code, stdout.getvalue(), stderr.getvalue(), calls)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = []
    for name, size in (("report.pdf", 2_300_000), ("b.txt", 3)):
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        paths.append(path)
    return paths


# --- helpers -------------------------------------------------------------------------------


def test_helpers() -> None:
    """Sizes, JID matching, hash check and summary texts."""
    assert human_size(2_300_000) == "2.3 MB" and human_size(None) == "?"
    assert jid_matches("", "x@y/z")
    assert jid_matches("Bob@Example.org", BOB)
    assert jid_matches(BOB, BOB) and not jid_matches("bob@example.org/phone", BOB)
    assert not jid_matches("carol@example.org", BOB)
    assert hash_text({"hash_algo": "sha-256", "hash_verified": True}) == "sha-256 hash verified"
    assert hash_text({"hash_algo": "sha-256"}) == "sha-256 hash NOT verified"
    assert hash_text({}) == "no hash checked"
    assert summary(FINISHED, "sent to x") == (
        "2.3 MB sent to x in 1.0 s (2.3 MB/s), sha-256 hash verified"
    )
    assert summary({"size": 10}, "received") == "10 bytes received, no hash checked"


# --- send ----------------------------------------------------------------------------------


@aio
async def test_send_one_file(files: list[Path]) -> None:
    """file_send with the absolute path, its name, the transport; then the summary."""
    r = await li("file", "send", BOB, str(files[0]))
    assert (r.code, r.err) == (0, "")
    assert r.bridge_calls == [
        ("file_send", (BOB, str(files[0]), "report.pdf", "", '{"transport": "auto"}', "alice"))
    ]
    assert r.out == (
        f"offering report.pdf (2.3 MB) to {BOB}…\n"
        f"report.pdf: 2.3 MB sent to {BOB} in 1.0 s (2.3 MB/s), sha-256 hash verified\n"
    )


@aio
async def test_send_several_files_one_declined(files: list[Path]) -> None:
    """Each file in turn with the description and transport; a failed one is reported and
    the exit code is 1."""
    FileBridge.script.outcomes["b.txt"] = ("error", "the peer declined the file")
    r = await li("file", "send", BOB, *map(str, files), "-d", "numbers", "--transport", "ibb", "-q")
    assert r.code == C.EXIT_ERROR
    assert r.called("file_send") == [
        (BOB, str(files[0]), "report.pdf", "numbers", '{"transport": "ibb"}', "alice"),
        (BOB, str(files[1]), "b.txt", "numbers", '{"transport": "ibb"}', "alice"),
    ]
    assert r.out.startswith("report.pdf: 2.3 MB sent to")
    assert r.err == (
        "li: error: b.txt: the peer declined the file\n"
        "li: error: 1 of 2 files not sent: b.txt (the peer declined the file)\n"
    )


@aio
async def test_send_json(files: list[Path]) -> None:
    """-O json: one document, a result per file with the progress metadata and the speed."""
    FileBridge.script.outcomes["b.txt"] = ("error", "connection lost")
    r = await li("file", "send", BOB, *map(str, files), "-O", "json")
    assert r.code == C.EXIT_ERROR
    assert json.loads(r.out) == [
        {
            "file": str(files[0]),
            "name": "report.pdf",
            "to": BOB,
            "progress": "p1",
            "session_id": "s1",
            "transport": IBB,
            "status": "finished",
            "speed": 2_300_000.0,
            **FINISHED,
        },
        {
            "file": str(files[1]),
            "name": "b.txt",
            "to": BOB,
            "progress": "p2",
            "session_id": "s2",
            "transport": IBB,
            "status": "failed",
            "error": "connection lost",
        },
    ]
    assert r.err == "li: error: 1 of 2 files not sent: b.txt (connection lost)\n"


@aio
async def test_send_refuses_bad_arguments_before_sending(files: list[Path], tmp_path: Path) -> None:
    """--name with several files, a missing file: nothing is sent."""
    r = await li("file", "send", BOB, *map(str, files), "--name", "x")
    assert r.code == C.EXIT_USAGE and "--name is only for one file" in r.err
    r = await li("file", "send", BOB, str(files[0]), str(tmp_path / "nope"))
    assert r.code == C.EXIT_NOT_FOUND and "nope: no such file" in r.err
    assert r.called("file_send") == []
    r = await li("file", "send", BOB, str(files[1]), "--name", "todo.txt")
    assert r.called("file_send")[0][2] == "todo.txt"


@aio
async def test_send_bridge_error(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """An error of file_send itself is one line with its code (e.g. s5b not available)."""
    original = FileBridge.open

    async def failing(bus_address: str | None = None) -> FakeBridge:
        bridge = await original(bus_address)
        bridge.errors["file_send"] = BridgeError(ERROR + "InvalidInput", "s5b is not available")
        return bridge

    monkeypatch.setattr(FileBridge, "open", failing)
    r = await li("file", "send", BOB, str(files[0]), "--transport", "s5b")
    assert r.code == C.EXIT_BRIDGE_ERROR
    assert r.err == "li: error: s5b is not available [InvalidInput]\n"


@aio
async def test_send_progress_bar(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal: a bar polled with progress_get (NotFound before the transfer starts
    is 0), with the name, sizes and 100% at the end."""
    monkeypatch.setattr(cmd_file, "PROGRESS_INTERVAL", 0)
    FileBridge.script.outcomes["report.pdf"] = ("started only", None)
    FileBridge.script.positions = [
        BridgeError(ERROR + "NotFound", "not started"),
        1_000_000,
        2_300_000,
    ]
    terminal = Terminal()
    r = await li("file", "send", BOB, str(files[0]), stderr=terminal)
    assert r.code == 0, r.err
    assert r.called("progress_get") == [("p1", "alice")] * 3
    assert "report.pdf" in r.err and "2.3 MB" in r.err and "100%" in r.err
    assert "sha-256 hash verified" in r.out


# --- receive -------------------------------------------------------------------------------


@aio
async def test_receive_yes_from_a_contact(tmp_path: Path) -> None:
    """--yes accepts a contact's offer to --path; only the first offer without -m."""
    FileBridge.script.offers = [offer("a1"), offer("a2", name="second.pdf")]
    r = await li("file", "receive", "--yes", "--path", str(tmp_path))
    assert r.code == 0, r.err
    assert r.bridge_calls == [
        ("action_launch", ("a1", json.dumps({"accept": True, "path": str(tmp_path)}), "alice"))
    ]
    assert r.out.splitlines() == [
        "waiting for a file… (Ctrl-C to stop)",
        'bob@example.org wants to send you "report.pdf" (2.3 MB): Q3 numbers: accepted',
        f"report.pdf: 2.3 MB received from {BOB} in 1.0 s (2.3 MB/s), sha-256 hash verified",
    ]


@aio
async def test_receive_only_from_jid_and_for_the_profile() -> None:
    """Offers of another profile, other actions and offers from others are left alone."""
    FileBridge.script.offers = [
        offer("other-profile", profile="bob"),
        ("sub", {"type": "subscription", "from_jid": BOB}, "alice"),
        offer("carol", sender="carol@example.org/pc"),
        offer("bob", sender="Bob@example.org/phone", in_roster=False),
    ]
    r = await li("file", "receive", "bob@example.org", "-y", "--overwrite")
    assert r.code == 0, r.err
    # bob is not a contact, but was named on the command line: accepted without asking
    assert r.bridge_calls == [
        ("action_launch", ("bob", '{"accept": true, "overwrite": true}', "alice"))
    ]


@aio
async def test_receive_asks_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --yes the offer is asked on stderr (strangers flagged); y accepts."""
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    FileBridge.script.offers = [offer("a1", in_roster=False)]
    r = await li("file", "receive")
    assert r.code == 0, r.err
    assert r.err == (
        'bob@example.org wants to send you "report.pdf" (2.3 MB): Q3 numbers '
        "[not in your contacts]. Accept? [y/N] "
    )
    assert r.called("action_launch") == [("a1", '{"accept": true}', "alice")]


@aio
async def test_receive_declined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other answer declines ({"accept": false}); exit code 20."""
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    FileBridge.script.offers = [offer("a1")]
    r = await li("file", "receive")
    assert r.code == C.EXIT_CANCELLED
    assert r.called("action_launch") == [("a1", '{"accept": false}', "alice")]
    assert r.err.endswith(f"li: error: report.pdf from {BOB}: declined\n")


@aio
async def test_receive_without_terminal() -> None:
    """No terminal and no --yes: refused at once; --yes declines strangers' offers."""
    FileBridge.script.offers = [offer("a1", in_roster=False)]
    r = await li("file", "receive")
    assert r.code == C.EXIT_CANCELLED and "add --yes" in r.err
    assert r.bridge_calls == []
    r = await li("file", "receive", "-y")
    assert r.code == C.EXIT_CANCELLED
    assert r.called("action_launch") == [("a1", '{"accept": false}', "alice")]
    assert "declined (not asking without a terminal)" in r.err


@aio
async def test_receive_offer_withdrawn_while_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    """action_update "cancelled" while the question is asked: told, exit code 20, no answer."""
    terminal = BlockedTerminal()
    monkeypatch.setattr(sys, "stdin", terminal)
    FileBridge.script.offers = [offer("a1")]
    FileBridge.script.withdraw = {"a1": "accepted on another device"}
    try:
        r = await li("file", "receive")
    finally:
        terminal.release.set()
    assert r.code == C.EXIT_CANCELLED
    assert r.called("action_launch") == []
    assert r.err.endswith(
        f"li: error: report.pdf from {BOB}: the offer was withdrawn (the sender cancelled it, "
        "or another device of yours took it): accepted on another device\n"
    )


@aio
async def test_receive_offer_withdrawn_before_the_answer(tmp_path: Path) -> None:
    """The answer comes too late (NotFound after action_update): reported as withdrawn."""
    FileBridge.script.offers = [offer("a1")]
    FileBridge.script.withdraw_on_launch = {"a1": "disconnected"}
    r = await li("file", "receive", "-y", "-O", "json")
    assert r.code == C.EXIT_CANCELLED
    assert json.loads(r.out) == {
        "from": BOB,
        "name": "report.pdf",
        "size": 2_300_000,
        "progress": "prog-a1",
        "session_id": "sid-a1",
        "status": "cancelled",
        "reason": "disconnected",
    }
    assert "the profile was disconnected" in r.err


@aio
async def test_receive_transfer_failed() -> None:
    """progress_error after the acceptance: the error, exit code 1."""
    FileBridge.script.offers = [offer("a1")]
    FileBridge.script.outcomes["report.pdf"] = ("error", "hash mismatch: the file was removed")
    r = await li("file", "receive", "-y")
    assert r.code == C.EXIT_ERROR
    assert r.err == f"li: error: report.pdf from {BOB}: hash mismatch: the file was removed\n"


@aio
async def test_receive_multiple_json() -> None:
    """-m: every offer in turn, one JSON line each (finished, withdrawn while queued,
    failed), until interrupted."""
    FileBridge.script.offers = [
        offer("a1"),
        offer("a2", name="gone.pdf"),
        offer("a3", name="bad.pdf"),
        offer("a4", name="last.pdf"),
    ]
    FileBridge.script.withdraw = {"a2": "cancelled by the sender"}
    FileBridge.script.outcomes["bad.pdf"] = ("error", "peer disconnected")
    args = parse_args(build_parser(), ["file", "receive", "-m", "-y", "-O", "json"])
    stdout, stderr = io.StringIO(), io.StringIO()
    task = asyncio.ensure_future(Cli(args, stdout=stdout, stderr=stderr).run())
    for _ in range(200):
        await asyncio.sleep(0)
        if stdout.getvalue().count("\n") == 4:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [(x["name"], x["status"]) for x in lines] == [
        ("report.pdf", "finished"),
        ("gone.pdf", "cancelled"),
        ("bad.pdf", "failed"),
        ("last.pdf", "finished"),
    ]
    assert lines[0]["hash_verified"] is True and lines[0]["speed"] == 2_300_000.0
    assert lines[1]["reason"] == "cancelled by the sender"
    assert lines[2]["error"] == "peer disconnected"
    calls = FakeBridge.instances[-1].calls
    assert [a[0] for m, a in calls if m == "action_launch"] == ["a1", "a3", "a4"]
    assert "gone.pdf" in stderr.getvalue() and "peer disconnected" in stderr.getvalue()


@aio
async def test_receive_bad_path(tmp_path: Path) -> None:
    """--path must be an existing directory (checked before waiting)."""
    r = await li("file", "receive", "-y", "--path", str(tmp_path / "nope"))
    assert r.code == C.EXIT_NOT_FOUND and "no such directory" in r.err
    assert r.bridge_calls == []


@aio
async def test_send_with_jmi(files: list[Path]) -> None:
    """--jmi asks the daemon to propose the file to every device of the JID first."""
    r = await li("file", "send", "bob@localhost", str(files[0]), "--jmi", "-q")
    assert r.code == 0, r.err
    assert r.bridge_calls[0] == (
        "file_send",
        ("bob@localhost", str(files[0]), "report.pdf", "", '{"transport": "auto", "jmi": true}',
         "alice"),
    )  # fmt: skip


# --- WebRTC --------------------------------------------------------------------------------


class FakeEndpoint:
    """Stands for the aiortc endpoints of libervia.frontends.webrtc (no peer connection):
    the same bridge calls, a chosen transport, a position."""

    instances: list[FakeEndpoint] = []
    transport = WEBRTC

    def __init__(self, bridge: Any, profile: str, config: Any, on_progress: Any = None) -> None:
        self.bridge, self.profile, self.config = bridge, profile, config
        self.position = 0
        self.fallback = False
        self.closed = False
        self.accepted: tuple[Any, ...] | None = None
        FakeEndpoint.instances.append(self)

    @property
    def uses_webrtc(self) -> bool:
        return self.transport == WEBRTC and not self.fallback

    async def send(
        self, jid: str, path: Path, name: str, desc: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        options = {**extra, "webrtc": True, "call_data": {"sdp": "v=0 offer"}}
        answer = json.loads(
            await self.bridge.file_send(
                jid, str(path), name, desc, json.dumps(options), self.profile
            )
        )
        answer["transport"] = self.transport
        self.position = path.stat().st_size
        return answer  # type: ignore[no-any-return]

    async def accept(
        self, action_id: str, offer: dict[str, Any], path: str, overwrite: bool
    ) -> None:
        self.accepted = (action_id, offer["webrtc"], path, overwrite)
        answer = {"accept": True, "path": path, "sdp": "v=0 answer"}
        await self.bridge.action_launch(action_id, json.dumps(answer), self.profile)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def endpoints(monkeypatch: pytest.MonkeyPatch) -> type[FakeEndpoint]:
    import libervia.frontends.webrtc as webrtc

    FakeEndpoint.instances = []
    monkeypatch.setattr(webrtc, "DataChannelSender", FakeEndpoint)
    monkeypatch.setattr(webrtc, "DataChannelReceiver", FakeEndpoint)
    return FakeEndpoint


def test_webrtc_options_parse() -> None:
    """--webrtc, repeatable --ice-server and --ice-address on send and receive."""
    parser = build_parser()
    args = parse_args(
        parser,
        ["file", "send", BOB, "a", "--webrtc", "--ice-server", "stun:s.example.org",
         "--ice-server", "turn:t.example.org", "--ice-address", "127.0.0.1"],
    )  # fmt: skip
    assert args.webrtc is True
    assert args.ice_servers == ["stun:s.example.org", "turn:t.example.org"]
    assert args.ice_addresses == ["127.0.0.1"]
    args = parse_args(parser, ["file", "receive", "--webrtc", "--ice-address", "::1"])
    assert (args.webrtc, args.ice_servers, args.ice_addresses) == (True, [], ["::1"])
    args = parse_args(parser, ["file", "receive"])
    assert (args.webrtc, args.ice_servers, args.ice_addresses) == (False, [], [])


@aio
async def test_webrtc_bad_options(files: list[Path], endpoints: type[FakeEndpoint]) -> None:
    """ICE options without --webrtc, --webrtc with another transport, a bad URL or address:
    usage errors before anything is sent."""
    r = await li("file", "send", BOB, str(files[0]), "--ice-server", "stun:x")
    assert r.code == C.EXIT_USAGE and "need --webrtc" in r.err
    r = await li("file", "send", BOB, str(files[0]), "--webrtc", "--transport", "ibb")
    assert r.code == C.EXIT_USAGE and "--webrtc is only for --transport auto" in r.err
    r = await li("file", "send", BOB, str(files[0]), "--webrtc", "--ice-server", "http://x")
    assert r.code == C.EXIT_USAGE and "invalid ICE server" in r.err
    r = await li("file", "receive", "-y", "--webrtc", "--ice-address", "localhost")
    assert r.code == C.EXIT_USAGE and "invalid host address" in r.err
    assert endpoints.instances == []


@aio
async def test_webrtc_daemon_without_signalling(
    files: list[Path], endpoints: type[FakeEndpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon without the WebRTC signals: missing feature (exit code 17)."""
    monkeypatch.setattr(FileBridge, "signals", {"progress_started": None}, raising=False)
    r = await li("file", "send", BOB, str(files[0]), "--webrtc")
    assert r.code == C.EXIT_MISSING_FEATURE and "cannot do WebRTC" in r.err


@aio
async def test_send_webrtc(files: list[Path], endpoints: type[FakeEndpoint]) -> None:
    """--webrtc: the endpoint makes the file_send call (webrtc + the offer), gets the ICE
    configuration, is closed at the end; the JSON result has the transport."""
    r = await li(
        "file", "send", BOB, str(files[0]), "--webrtc", "--ice-server", "stun:s.example.org",
        "--ice-address", "127.0.0.1", "-O", "json",
    )  # fmt: skip
    assert r.code == 0, r.err
    (endpoint,) = endpoints.instances
    assert endpoint.closed and endpoint.profile == "alice"
    assert endpoint.config.ice_servers == ("stun:s.example.org",)
    assert endpoint.config.host_addresses == ("127.0.0.1",)
    (call,) = r.called("file_send")
    assert call[:4] == (BOB, str(files[0]), "report.pdf", "")
    assert json.loads(call[4]) == {
        "transport": "auto",
        "webrtc": True,
        "call_data": {"sdp": "v=0 offer"},
    }
    (result,) = json.loads(r.out)
    assert result["transport"] == WEBRTC and result["status"] == "finished"
    assert "fallback" not in result


@aio
async def test_send_webrtc_peer_without_webrtc(
    files: list[Path], endpoints: type[FakeEndpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon chose another transport: told, followed as usual."""
    monkeypatch.setattr(FakeEndpoint, "transport", IBB)
    r = await li("file", "send", BOB, str(files[0]), "--webrtc")
    assert r.code == 0, r.err
    assert f"{BOB} cannot do WebRTC: the daemon sends report.pdf" in r.out
    assert "sha-256 hash verified" in r.out
    assert endpoints.instances[0].closed


@aio
async def test_receive_webrtc_offers(tmp_path: Path, endpoints: type[FakeEndpoint]) -> None:
    """--webrtc: an offer over WebRTC is accepted by the endpoint (directory, overwrite; the
    answer has an SDP), then an ordinary offer is answered as without --webrtc."""
    FileBridge.script.offers = [
        offer("a1", webrtc={"sdp": "v=0 offer"}),
        offer("a2", name="plain.pdf"),
    ]
    args = parse_args(
        build_parser(),
        ["file", "receive", "-m", "-y", "-O", "json", "--webrtc", "--path", str(tmp_path),
         "--overwrite"],
    )  # fmt: skip
    stdout, stderr = io.StringIO(), io.StringIO()
    task = asyncio.ensure_future(Cli(args, stdout=stdout, stderr=stderr).run())
    for _ in range(200):
        await asyncio.sleep(0)
        if stdout.getvalue().count("\n") == 2:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [(x["name"], x["status"]) for x in lines] == [
        ("report.pdf", "finished"),
        ("plain.pdf", "finished"),
    ]
    (endpoint,) = endpoints.instances
    assert endpoint.accepted == ("a1", {"sdp": "v=0 offer"}, str(tmp_path), True)
    assert endpoint.closed
    calls = [a for m, a in FakeBridge.instances[-1].calls if m == "action_launch"]
    assert calls == [
        ("a1", json.dumps({"accept": True, "path": str(tmp_path), "sdp": "v=0 answer"}), "alice"),
        ("a2", json.dumps({"accept": True, "path": str(tmp_path), "overwrite": True}), "alice"),
    ]


@aio
async def test_receive_webrtc_offer_without_option(tmp_path: Path) -> None:
    """Without --webrtc, an offer over WebRTC is answered as before, with a hint."""
    FileBridge.script.offers = [offer("a1", webrtc={"sdp": "v=0 offer"})]
    r = await li("file", "receive", "-y")
    assert r.called("action_launch") == [("a1", '{"accept": true}', "alice")]
    assert "is offered over WebRTC: the daemon asks for in-band bytestreams" in r.out
