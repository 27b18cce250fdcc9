"""daemon: the pid-file lock, the start handshake, the run loop (fake service), the wiring order
and the command line. No process is started and nothing sleeps: waits take injected sleeps and
clocks."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libervia.backend import __main__ as cli
from libervia.backend import daemon
from libervia.backend.core.config import Config
from libervia.backend.core.exceptions import ConfigError, ConflictError, DatabaseCorrupted
from libervia.backend.daemon import (
    AlreadyRunning,
    Daemon,
    DaemonError,
    Notifier,
    PidFile,
    Settings,
    read_report,
    running_pid,
)
from tests.conftest import aio


class Sleeps:
    """An injected ``sleep``: records the delays and runs an optional action instead."""

    def __init__(self, action: Any = None) -> None:
        self.delays: list[float] = []
        self.action = action

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.action is not None:
            self.action(len(self.delays))


@pytest.fixture
def pid_path(tmp_path: Path) -> Path:
    return tmp_path / "local" / "libervia-backend.pid"


@pytest.fixture
def held(pid_path: Path) -> Iterator[PidFile]:
    pid_file = PidFile(pid_path)
    pid_file.acquire(pid=4242)
    try:
        yield pid_file
    finally:
        pid_file.release()


# --- pid file ----------------------------------------------------------------------------------


def test_acquire_writes_pid_and_release_removes(pid_path: Path) -> None:
    """The holder's pid is in the file and read back; release removes the file and the lock."""
    pid_file = PidFile(pid_path)
    assert running_pid(pid_path) is None
    pid_file.acquire()
    assert pid_file.held
    assert pid_path.read_text() == f"{os.getpid()}\n"
    assert running_pid(pid_path) == os.getpid()
    pid_file.release()
    assert not pid_file.held and not pid_path.exists()
    assert running_pid(pid_path) is None
    pid_file.release()  # twice is harmless


def test_second_acquire_reports_the_holder(held: PidFile, pid_path: Path) -> None:
    """A held lock is retried (not slept for real), then reported with the holder's pid."""
    sleeps = Sleeps()
    with pytest.raises(AlreadyRunning) as info:
        PidFile(pid_path, attempts=3, delay=0.5, sleep=sleeps).acquire()
    assert info.value.pid == 4242
    assert str(info.value) == "libervia-backend is already running (pid 4242)"
    assert sleeps.delays == [0.5, 0.5]
    assert pid_path.read_text() == "4242\n"  # untouched


def test_stale_file_is_not_running(pid_path: Path) -> None:
    """A pid file left by a crash (no lock) is not a running daemon, and is taken over."""
    pid_path.parent.mkdir(parents=True)
    pid_path.write_text("999999\n")
    assert running_pid(pid_path) is None
    pid_file = PidFile(pid_path)
    pid_file.acquire(pid=77)
    try:
        assert pid_path.read_text() == "77\n"
        assert running_pid(pid_path) == 77
    finally:
        pid_file.release()


def test_a_looking_status_is_not_a_running_daemon(pid_path: Path) -> None:
    """running_pid holds a shared lock for an instant: acquire retries instead of giving up."""
    pid_path.parent.mkdir(parents=True)
    pid_path.write_text("999999\n")
    fd = os.open(pid_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    sleeps = Sleeps(action=lambda n: fcntl.flock(fd, fcntl.LOCK_UN))
    pid_file = PidFile(pid_path, sleep=sleeps)
    try:
        pid_file.acquire(pid=5)
        assert sleeps.delays == [0.02]
        assert pid_path.read_text() == "5\n"
    finally:
        pid_file.release()
        os.close(fd)


def test_file_replaced_while_locking(pid_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the previous holder removes the file between our open() and flock(), the orphan
    inode is not kept: the lock ends up on the file that is at the path."""
    pid_path.parent.mkdir(parents=True)
    pid_path.write_text("")
    real_flock = fcntl.flock
    calls = []

    def flock(fd: int, operation: int) -> None:
        calls.append(operation)
        if len(calls) == 1:  # the old daemon exits right now and a new file appears
            pid_path.unlink()
            pid_path.write_text("")
        real_flock(fd, operation)

    monkeypatch.setattr(daemon.fcntl, "flock", flock)
    pid_file = PidFile(pid_path)
    pid_file.acquire(pid=9)
    monkeypatch.setattr(daemon.fcntl, "flock", real_flock)
    try:
        assert len(calls) == 2
        assert pid_path.read_text() == "9\n"
        assert running_pid(pid_path) == 9
    finally:
        pid_file.release()


def test_locked_without_pid_is_read_again(pid_path: Path) -> None:
    """A daemon writes its pid just after locking: an empty locked file is read again; if it
    stays empty, that is an error, not a pid."""
    pid_path.parent.mkdir(parents=True)
    fd = os.open(pid_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        sleeps = Sleeps(action=lambda n: n == 2 and os.write(fd, b"31\n"))
        assert running_pid(pid_path, sleep=sleeps) == 31
        assert len(sleeps.delays) == 2
        os.ftruncate(fd, 0)
        with pytest.raises(DaemonError, match="locked but holds no pid"):
            running_pid(pid_path, attempts=3, sleep=Sleeps())
    finally:
        os.close(fd)


# --- start handshake ---------------------------------------------------------------------------


def test_notifier_reports_once() -> None:
    """The child writes one line and closes: the parent reads it."""
    r, w = os.pipe()
    try:
        notifier = Notifier(w)
        notifier.send("error", "database\ncorrupted")
        notifier.send("ready", "1")  # ignored: already reported
        assert read_report(r, 5) == "error database corrupted"
    finally:
        os.close(r)


def test_report_of_a_dead_child_and_timeout() -> None:
    """A pipe closed without a line gives "", no line before the deadline gives None."""
    r, w = os.pipe()
    os.close(w)
    assert read_report(r, 5) == ""
    os.close(r)
    r, w = os.pipe()
    try:
        times = iter([0.0, 61.0])
        assert read_report(r, 60, clock=lambda: next(times)) is None
    finally:
        os.close(r)
        os.close(w)


def test_notifier_from_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fd comes from the environment, which then forgets it (children never see it)."""
    r, w = os.pipe()
    try:
        monkeypatch.setenv(daemon.READY_FD_ENV, str(w))
        notifier = Notifier.from_environ()
        assert daemon.READY_FD_ENV not in os.environ
        notifier.send("ready", "12")
        assert read_report(r, 5) == "ready 12"
        monkeypatch.setenv(daemon.READY_FD_ENV, "not-a-number")
        Notifier.from_environ().send("ready")  # nothing to do, no error
    finally:
        os.close(r)


# --- settings ----------------------------------------------------------------------------------


def config_with(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "libervia.conf"
    path.write_text(f"[DEFAULT]\nlocal_dir = {tmp_path / 'local'}\n{text}")
    return Config.load(path)


def test_settings_defaults(tmp_path: Path) -> None:
    settings = Settings.from_config(config_with(tmp_path, ""))
    assert settings.pid_file == tmp_path / "local" / "libervia-backend.pid"
    assert settings.log_file is None
    assert settings.start_log_file == tmp_path / "local" / "libervia-backend.log"
    assert settings.checked_log_level() == "INFO"
    assert settings.log_format is None


def test_settings_from_options(tmp_path: Path) -> None:
    """log_file relative to local_dir (or absolute), --log-level over log_level."""
    config = config_with(tmp_path, "log_level = debug\nlog_file = logs/b.log\nlog_format = short\n")
    settings = Settings.from_config(config)
    assert settings.checked_log_level() == "DEBUG"
    assert settings.log_file == tmp_path / "local" / "logs" / "b.log"
    assert settings.start_log_file == settings.log_file
    assert settings.log_format == "short"
    assert Settings.from_config(config, "warning").checked_log_level() == "WARNING"
    absolute = config_with(tmp_path, f"log_file = {tmp_path / 'x.log'}\n")
    assert Settings.from_config(absolute).log_file == tmp_path / "x.log"
    bad = Settings.from_config(config_with(tmp_path, "log_level = loud\n"))
    with pytest.raises(ConfigError, match="loud"):
        bad.checked_log_level()


# --- the run loop ------------------------------------------------------------------------------


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__(None)
        self.sent: list[tuple[str, str]] = []
        self.got = asyncio.Event()

    def send(self, status: str, detail: str = "") -> None:
        self.sent.append((status, detail))
        self.got.set()


class FakeService:
    def __init__(self, start_error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.start_error = start_error
        self.release_start: asyncio.Event | None = None
        self.hang_stop = False

    async def start(self) -> None:
        self.calls.append("start")
        if self.release_start is not None:
            try:
                await self.release_start.wait()
            except asyncio.CancelledError:
                self.calls.append("start cancelled")
                raise
        if self.start_error is not None:
            raise self.start_error

    async def stop(self) -> None:
        self.calls.append("stop")
        if self.hang_stop:
            await asyncio.Event().wait()


@aio
async def test_runs_until_stop_requested() -> None:
    """ready is reported after the start; a stop request stops the service; exit code 0."""
    service, notifier = FakeService(), RecordingNotifier()
    d = Daemon(service, notifier)
    task = asyncio.ensure_future(d.run())
    await notifier.got.wait()
    assert notifier.sent == [("ready", str(os.getpid()))]
    assert service.calls == ["start"]
    d.request_stop()
    assert await task == 0
    assert service.calls == ["start", "stop"]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (DatabaseCorrupted("the database is corrupted"), "the database is corrupted"),
        (RuntimeError("boom"), "unexpected error: RuntimeError: boom"),
    ],
)
@aio
async def test_failed_start_reports_and_closes(error: Exception, message: str) -> None:
    """A failed start: one line to the start command and to the error sink, everything
    stopped, exit code 1."""
    service, notifier, errors = FakeService(error), RecordingNotifier(), []
    code = await Daemon(service, notifier, error_sink=errors.append).run()
    assert code == 1
    assert notifier.sent == [("error", message)]
    assert errors == [message]
    assert service.calls == ["start", "stop"]


@aio
async def test_stop_requested_while_starting() -> None:
    """The start is not interrupted: it finishes, then the service is stopped; exit code 0."""
    service, notifier = FakeService(), RecordingNotifier()
    service.release_start = asyncio.Event()
    d = Daemon(service, notifier)
    task = asyncio.ensure_future(d.run())
    await asyncio.sleep(0)  # let the start begin
    d.request_stop()
    await asyncio.sleep(0)
    assert service.calls == ["start"]
    service.release_start.set()
    assert await task == 0
    assert service.calls == ["start", "stop"]
    assert notifier.sent == [("error", "stopped before it was ready")]


@aio
async def test_stuck_start_and_stuck_stop_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """Past the shutdown timeout, a stuck start is cancelled and a stuck stop given up: exit
    code 1 (a zero timeout, so that nothing waits for real)."""
    service, notifier, errors = FakeService(), RecordingNotifier(), []
    service.release_start = asyncio.Event()
    d = Daemon(service, notifier, shutdown_timeout=0, error_sink=errors.append)
    d.request_stop()
    assert await d.run() == 1
    assert service.calls[:2] == ["start", "start cancelled"]
    assert errors == ["the start took longer than 0 s after the stop request"]
    assert notifier.sent == [("error", errors[0])]
    service = FakeService()
    service.hang_stop = True
    d = Daemon(service, RecordingNotifier(), shutdown_timeout=0)
    d.request_stop()
    caplog.clear()
    assert await d.run() == 1
    assert "the shutdown took longer than 0 s" in caplog.text


@aio
async def test_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM requests the stop; a repeat within FORCE_AFTER is ignored, a later one exits
    at once."""
    now = [100.0]
    exits: list[int] = []
    monkeypatch.setattr(daemon.os, "_exit", exits.append)
    monkeypatch.setattr(daemon.os, "write", lambda fd, data: len(data))
    d = Daemon(FakeService(), RecordingNotifier(), clock=lambda: now[0])
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        d.install_signal_handlers()
        assert signal.getsignal(signal.SIGTERM) == d._on_signal
        assert signal.getsignal(signal.SIGINT) == d._on_signal
        d._on_signal(signal.SIGTERM, None)
        now[0] += daemon.FORCE_AFTER / 2
        d._on_signal(signal.SIGINT, None)
        assert exits == []
        assert await d.run() == 0  # the stop request reached the loop
        now[0] += daemon.FORCE_AFTER
        d._on_signal(signal.SIGINT, None)
        assert exits == [1]
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


# --- the real wiring's order -------------------------------------------------------------------


def fake_wiring(monkeypatch: pytest.MonkeyPatch, connect_error: Exception | None = None) -> list:
    calls: list[str] = []

    class Host:
        def __init__(self, config: Config) -> None:
            calls.append("host")
            self.bridge = None

        async def wait_ready(self) -> None:
            pass

        async def start(self) -> None:
            calls.append(f"host.start (bridge set: {self.bridge is not None})")

        async def stop(self) -> None:
            calls.append("host.stop")

    class Adapters:
        def __init__(self, host: Host) -> None:
            calls.append("adapters")

    class Bridge:
        def __init__(self, adapters: Adapters, *, wait_ready: Any) -> None:
            calls.append("bridge")
            assert wait_ready is not None

        async def connect(self) -> None:
            calls.append("bridge.connect")
            if connect_error is not None:
                raise connect_error

        async def disconnect(self) -> None:
            calls.append("bridge.disconnect")

    from libervia.backend.bridge import adapters, dbus
    from libervia.backend.core import main

    monkeypatch.setattr(main, "LiberviaBackend", Host)
    monkeypatch.setattr(adapters, "CoreAdapters", Adapters)
    monkeypatch.setattr(dbus, "DBusBridge", Bridge)
    return calls


@aio
async def test_backend_wiring_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The bus name is taken before the host starts; the host stops before the bridge leaves."""
    calls = fake_wiring(monkeypatch)
    backend = daemon.Backend(config_with(tmp_path, ""))
    await backend.start()
    await backend.stop()
    assert calls == [
        "host",
        "adapters",
        "bridge",
        "bridge.connect",
        "host.start (bridge set: True)",
        "host.stop",
        "bridge.disconnect",
    ]


@aio
async def test_backend_bus_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the bus name the host never starts; stop still closes what was opened."""
    calls = fake_wiring(monkeypatch, ConflictError("another libervia-backend is running"))
    backend = daemon.Backend(config_with(tmp_path, ""))
    with pytest.raises(ConflictError):
        await backend.start()
    await backend.stop()
    assert calls == ["host", "adapters", "bridge", "bridge.connect", "host.stop"]


# --- command line ------------------------------------------------------------------------------


def test_parser() -> None:
    """Common options go before or after the command; no command is `db`."""
    parser = cli.build_parser()
    args = parser.parse_args(["fg", "--log-level", "debug", "-c", "x.conf"])
    assert (args.command, args.log_level, args.config) == ("fg", "DEBUG", "x.conf")
    args = parser.parse_args(["-c", "y.conf", "--log-level", "info", "status"])
    assert (args.command, args.log_level, args.config) == ("status", "INFO", "y.conf")
    args = parser.parse_args(["start"])
    assert args.timeout == 60.0 and not hasattr(args, "config")
    assert parser.parse_args(["stop", "--timeout", "5"]).timeout == 5.0
    assert parser.parse_args([]).command is None
    assert parser.parse_args(["db", "--json"]).json


def test_parser_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["fg", "--log-level", "loud"])
    assert info.value.code == 2
    assert "unknown log level 'loud'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("fg", "start", "stop", "status", "db"):
        assert f"    {command} " in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fg"], ("foreground", None, None)),
        (["-c", "a.conf", "fg", "--log-level", "debug"], ("foreground", "a.conf", "DEBUG")),
        (["start", "--timeout", "3"], ("start", None, None, 3.0)),
        (["stop", "-c", "a.conf"], ("stop", "a.conf", 30.0)),
        (["status"], ("status", None)),
    ],
)
def test_main_dispatches(
    argv: list[str], expected: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    for name in ("foreground", "start", "stop", "status"):
        monkeypatch.setattr(
            daemon, name, lambda *a, _n=name: calls.append((_n, *a)) or 7, raising=True
        )
    assert cli.main(argv) == 7
    assert calls == [expected]


def test_unexpected_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug gives one line and exit code 1; with --log-level DEBUG, the traceback."""

    def broken(*args: Any) -> int:
        raise KeyError("oops")

    monkeypatch.setattr(daemon, "status", broken)
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected KeyError" in err
    with pytest.raises(KeyError):
        cli.main(["--log-level", "DEBUG", "status"])
