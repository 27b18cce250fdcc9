"""The real ``libervia-backend`` daemon commands, as subprocesses, on a private dbus-daemon with
a temporary ``local_dir``: start/status/stop, clean shutdown on SIGTERM/SIGINT, failures as one
line, stale pid files, D-Bus activation with the shipped service file."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

from libervia.backend.daemon import running_pid
from tests.conftest import aio
from tests.dbus import DBusDaemon, wait_pid_gone

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
BUS_NAME = "org.libervia.Libervia"
OBJECT_PATH = "/org/libervia/Libervia/bridge"
CORE = "org.libervia.Libervia.core"
SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"


class Env:
    """A configuration with its own local_dir, and the environment to run the command in."""

    def __init__(self, tmp_path: Path, bus_address: str) -> None:
        self.local = tmp_path / "local"
        self.config = tmp_path / "libervia.conf"
        self.config.write_text(f"[DEFAULT]\nlocal_dir = {self.local}\n")
        self.env = {
            **os.environ,
            "DBUS_SESSION_BUS_ADDRESS": bus_address,
            "LIBERVIA_CONFIG": "/nonexistent",
        }
        self.env.pop("JOURNAL_STREAM", None)
        self.bus_address = bus_address
        self.started: list[int] = []

    @property
    def pid_file(self) -> Path:
        return self.local / "libervia-backend.pid"

    @property
    def db(self) -> Path:
        return self.local / "libervia.db"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "libervia.backend", "-c", str(self.config), *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if args and args[0] == "start":
            found = re.search(r"\(pid (\d+)\)", result.stdout)
            if found:
                self.started.append(int(found.group(1)))
        return result

    def fg(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command("fg"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def daemons(self) -> list[int]:
        """Live ``fg`` processes of this configuration (zombies excluded)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and str(self.config).encode() in cmdline and b"fg" in cmdline:
                found.append(int(entry.name))
        return found

    def cleanup(self) -> None:
        """Stop whatever a failed test left running (the daemon is not our child)."""
        for pid in set(self.started + self.daemons()):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            if not wait_pid_gone(pid, 30):
                os.kill(pid, signal.SIGKILL)
                wait_pid_gone(pid, 10)


@pytest.fixture
def env(tmp_path: Path, bus_address: str) -> Iterator[Env]:
    e = Env(tmp_path, bus_address)
    try:
        yield e
    finally:
        e.cleanup()


async def ready_get(address: str, timeout: float = 60) -> None:
    """Call ready_get, retrying while nobody owns the bus name yet."""
    bus = await MessageBus(bus_address=address).connect()
    try:
        deadline = time.monotonic() + timeout
        call = Message(destination=BUS_NAME, path=OBJECT_PATH, interface=CORE, member="ready_get")
        while True:
            reply = await bus.call(call)
            if reply.message_type is MessageType.METHOD_RETURN:
                return
            if reply.error_name != SERVICE_UNKNOWN or time.monotonic() > deadline:
                raise AssertionError(f"ready_get: {reply.error_name}: {reply.body}")
            await asyncio.sleep(0.02)
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("libervia-backend: error:")]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


def assert_database_closed_cleanly(db: Path) -> None:
    """Nothing left in the WAL (the last connection checkpointed it) and the file is sound."""
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    finally:
        connection.close()


@aio
async def test_start_status_stop(env: Env) -> None:
    """start -> running and answering; start again reports it (one process only); stop ->
    not running (exit code 3), pid file gone, database closed."""
    assert env.run("status").returncode == 3
    started = env.run("start")
    assert started.returncode == 0, started.stderr
    log = env.local / "libervia-backend.log"
    found = re.fullmatch(
        rf"libervia-backend started \(pid (\d+)\), log: {re.escape(str(log))}\n", started.stdout
    )
    assert found, started.stdout
    pid = int(found.group(1))
    status = env.run("status")
    assert (status.returncode, status.stdout) == (0, f"libervia-backend is running (pid {pid})\n")
    await ready_get(env.bus_address)

    again = env.run("start")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"libervia-backend is already running (pid {pid})\n"
    assert env.daemons() == [pid]
    assert "libervia-backend ready" in log.read_text()

    stopped = env.run("stop")
    assert (stopped.returncode, stopped.stdout) == (0, "libervia-backend stopped\n")
    assert wait_pid_gone(pid, 30)
    status = env.run("status")
    assert (status.returncode, status.stdout) == (3, "libervia-backend is not running\n")
    assert not env.pid_file.exists()
    assert_database_closed_cleanly(env.db)
    again = env.run("stop")
    assert (again.returncode, again.stdout) == (0, "libervia-backend is not running\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@aio
async def test_fg_signal_is_clean_shutdown(env: Env, signum: signal.Signals) -> None:
    """fg runs until SIGTERM/SIGINT, then exits 0: pid file unlocked and removed, database
    closed, no traceback. A second fg meanwhile is refused with one line."""
    process = env.fg()
    try:
        await ready_get(env.bus_address)
        assert running_pid(env.pid_file) == process.pid
        second = env.run("fg")
        assert second.returncode == 1
        assert_one_error_line(
            second.stderr, f"libervia-backend is already running (pid {process.pid})"
        )
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"{signum.name} received: shutting down" in stderr
    # the host closed the database (its own log line), then the daemon finished
    assert "[libervia.backend.core.main] backend stopped" in stderr
    assert stderr.index("backend stopped") < stderr.index("libervia-backend stopped")
    assert running_pid(env.pid_file) is None and not env.pid_file.exists()
    assert_database_closed_cleanly(env.db)


@aio
async def test_corrupted_database(env: Env) -> None:
    """start and fg fail with one clear line and exit code 1; nothing keeps running, the pid
    file is not locked, the file is untouched."""
    env.local.mkdir()
    env.db.write_bytes(b"this is not a database" * 100)
    started = env.run("start")
    assert started.returncode == 1
    assert_one_error_line(started.stderr, "libervia.db", "libervia-backend.log")
    assert started.stdout == ""
    assert env.daemons() == []
    assert env.run("status").returncode == 3
    process = env.fg()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert_one_error_line(stderr, "libervia.db")
    assert running_pid(env.pid_file) is None
    assert env.db.read_bytes() == b"this is not a database" * 100


def test_stale_pid_file(env: Env) -> None:
    """A pid file left by a crash (not locked) is "not running" and does not prevent start."""
    env.local.mkdir()
    env.pid_file.write_text(f"{os.getpid()}\n")  # a live pid, but no lock
    status = env.run("status")
    assert (status.returncode, status.stdout) == (3, "libervia-backend is not running\n")
    started = env.run("start")
    assert started.returncode == 0, started.stderr
    pid = env.started[-1]
    assert pid != os.getpid()
    assert env.run("status").stdout == f"libervia-backend is running (pid {pid})\n"
    assert env.run("stop").returncode == 0
    assert wait_pid_gone(pid, 30)


@aio
async def test_bus_name_taken_or_bus_missing(env: Env) -> None:
    """Another owner of org.libervia.Libervia, or no bus at all: one line, exit code 1, the
    pid file released and the database closed."""
    bus = await MessageBus(bus_address=env.bus_address).connect()
    try:
        reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        assert reply is RequestNameReply.PRIMARY_OWNER
        process = env.fg()
        _, stderr = process.communicate(timeout=60)
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()
    assert process.returncode == 1
    assert_one_error_line(stderr, "already running on this bus")
    assert running_pid(env.pid_file) is None
    env.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={env.local / 'no-such-bus'}"
    started = env.run("start")
    assert started.returncode == 1
    assert_one_error_line(started.stderr, "cannot connect to D-Bus")
    assert env.daemons() == []


def test_log_options(env: Env) -> None:
    """log_file: fg logs there instead of stderr (and start too); log_level from the config,
    --log-level wins; bad level: one line."""
    log = env.local / "custom.log"
    env.config.write_text(
        f"[DEFAULT]\nlocal_dir = {env.local}\nlog_file = custom.log\nlog_level = WARNING\n"
    )
    started = env.run("--log-level", "INFO", "start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.endswith(f"log: {log}\n")
    assert env.run("stop").returncode == 0
    text = log.read_text()
    assert "INFO     [libervia.backend.daemon] libervia-backend ready" in text
    assert not (env.local / "libervia-backend.log").exists()
    env.config.write_text(f"[DEFAULT]\nlocal_dir = {env.local}\nlog_level = loud\n")
    result = env.run("fg")
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "unknown log level 'loud'")


def test_help() -> None:
    """--help lists the commands and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "libervia.backend", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for command in ("fg", "start", "stop", "status", "db"):
        assert command in result.stdout


@aio
async def test_dbus_activation(tmp_path: Path) -> None:
    """The shipped D-Bus service file starts the daemon on the first call (its Exec pointed at
    this checkout); stop stops it."""
    services = tmp_path / "services"
    services.mkdir()
    shipped = (ROOT / "misc" / "org.libervia.Libervia.service").read_text()
    assert "Exec=/usr/bin/libervia-backend fg\n" in shipped
    config = tmp_path / "libervia.conf"
    exec_line = f"Exec={sys.executable} -m libervia.backend -c {config} fg\n"
    (services / "org.libervia.Libervia.service").write_text(
        shipped.replace("Exec=/usr/bin/libervia-backend fg\n", exec_line)
    )
    with DBusDaemon(service_dirs=[services]) as bus:
        env = Env(tmp_path, bus.address)
        try:
            assert env.run("status").returncode == 3
            await ready_get(bus.address)
            status = env.run("status")
            assert status.returncode == 0, status.stderr
            assert env.run("stop").returncode == 0
            assert env.run("status").returncode == 3
            assert_database_closed_cleanly(env.db)
        finally:
            env.cleanup()


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify has nothing to say (ExecStart pointed at an existing file)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    executable = Path(sys.executable).with_name("libervia-backend")
    assert executable.exists()
    unit = tmp_path / "libervia-backend.service"
    shipped = (ROOT / "misc" / "libervia-backend.service").read_text()
    unit.write_text(shipped.replace("/usr/bin/libervia-backend", str(executable)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr, result.stderr


def test_daemon_benchmark_runs(tmp_path: Path) -> None:
    """bench/daemon.py completes (one run) and reports every figure, so that it cannot rot."""
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "daemon.py"), "--runs", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    for key in (
        "first_start_create_db_s",
        "start_to_ready_median_s",
        "idle_rss_median_mib",
        "stack_floor_median_s",
        "stack_floor_rss_mib",
    ):
        assert figures[key] > 0, key
    # the floor is a floor: the interpreter alone is lighter, the daemon heavier
    assert figures["python_rss_mib"] < figures["stack_floor_rss_mib"]
    assert figures["stack_floor_rss_mib"] < figures["idle_rss_median_mib"]
    assert "fg -> ready_get, existing db" in result.stdout
    assert "daemon above the floor" in result.stdout
