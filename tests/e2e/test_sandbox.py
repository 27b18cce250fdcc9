"""End to end: ``scripts/sandbox`` (the README's run command) as a newcomer runs it.

Start, use the printed commands, start again (already running), crash everything with SIGKILL,
start again, stop: no process is left. The script is run by the Python of this environment
(``scripts/sandbox`` runs ``scripts/setup-env`` first, which may install packages: not here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dbus import wait_pid_gone

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sandbox.py"
FIRST_MESSAGE = "Hello Bob! This is the first message of the Libervia sandbox."


def sandbox(directory: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LIBERVIA_SANDBOX_DIR",)}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--dir", str(directory)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=directory.parent,
        timeout=120,
    )
    if check is not None:
        assert result.returncode == check, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def printed_commands(output: str) -> list[str]:
    """The indented commands of the "Try it" block."""
    block = output.split("Try it", 1)[1].split("\n\n(", 1)[0]
    return [line.strip() for line in block.splitlines() if line.startswith("    ")]


def shell(commands: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run commands in one bash, as a user pasting them (the env file sourced first)."""
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["NO_COLOR"] = "1"
    result = subprocess.run(
        ["bash", "-euc", "\n".join(commands)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    assert result.returncode == 0, (commands, result.stdout, result.stderr)
    return result


def pids(directory: Path) -> list[int]:
    files = [*sorted((directory / "pids").glob("*.pid")), directory / "local/libervia-backend.pid"]
    return [int(path.read_text().split()[0]) for path in files]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sandbox"
    yield path
    # whatever happened, nothing is left running
    started = []
    for pid_file in [*path.glob("pids/*.pid"), path / "local/libervia-backend.pid"]:
        if pid_file.exists():
            started.append(int(pid_file.read_text().split()[0]))
    if path.exists():
        sandbox(path, "stop", check=None)
    for pid in started:
        try:
            ours = str(path) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        except OSError:
            continue
        if ours and alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_pid_gone(pid, 10)


def test_start_use_restart_crash_stop(directory: Path) -> None:
    began = time.monotonic()
    first = sandbox(directory, "start")
    assert "sandbox: ready" in first.stdout
    commands = printed_commands(first.stdout)
    assert commands[0] == f". {directory}/env"
    assert len(commands) == 4
    assert "li message history -p bob alice@localhost" in commands
    # the printed commands work as printed: the first message is in bob's history
    result = shell(commands[:2], directory.parent)
    assert FIRST_MESSAGE in result.stdout
    # the reply, then alice's side of the conversation
    shell([commands[0], commands[2]], directory.parent)
    deadline = time.monotonic() + 15
    while "Hi Alice!" not in shell([commands[0], commands[3]], directory.parent).stdout:
        assert time.monotonic() < deadline, "bob's reply never reached alice"
        time.sleep(0.1)
    assert f"{directory} stop" in first.stdout or f"--dir {directory}" in first.stdout
    status = sandbox(directory, "status")
    assert status.stdout.count("running (pid") == 3
    first_pids = pids(directory)
    assert all(alive(pid) for pid in first_pids)

    # twice in a row: already running, the same processes, the same instructions
    again = sandbox(directory, "start")
    assert "already running" in again.stdout
    assert printed_commands(again.stdout) == commands
    assert pids(directory) == first_pids

    # a crash: every process killed, pid files left behind
    for pid in first_pids:
        os.kill(pid, signal.SIGKILL)
    for pid in first_pids:
        assert wait_pid_gone(pid, 10)
    assert sandbox(directory, "status", check=3).stdout.count("not running") == 3
    restarted = sandbox(directory, "start")
    assert "sandbox: ready" in restarted.stdout
    result = shell(printed_commands(restarted.stdout)[:2], directory.parent)
    assert FIRST_MESSAGE in result.stdout
    second_pids = pids(directory)
    assert set(second_pids).isdisjoint(first_pids)

    # a partial crash (Prosody killed): status says so, stop ends the rest
    prosody_pid = int((directory / "pids" / "prosody.pid").read_text())
    os.kill(prosody_pid, signal.SIGKILL)
    assert wait_pid_gone(prosody_pid, 10)
    partial = sandbox(directory, "status", check=1)
    assert "prosody: not running" in partial.stdout and "partly running" in partial.stdout

    # stop: every process gone, and stop again is fine
    stopped = sandbox(directory, "stop")
    for pid in second_pids:
        if pid != prosody_pid:
            assert f"(pid {pid})" in stopped.stdout
        assert not alive(pid)
    assert not (directory / "pids").exists()
    sandbox(directory, "status", check=3)
    assert "not running" in sandbox(directory, "stop").stdout
    assert time.monotonic() - began < 60


def test_refuses_a_directory_that_is_not_a_sandbox(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "precious.txt").write_text("keep me")
    result = sandbox(directory, "start", check=1)
    assert "is not a sandbox directory" in result.stderr
    assert (directory / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in directory.iterdir()) == ["precious.txt"]


def test_wrapper_status_without_a_sandbox(tmp_path: Path) -> None:
    """The bash wrapper runs the script (status and stop do not run setup-env)."""
    result = subprocess.run(
        [str(REPO / "scripts" / "sandbox"), "status", "--dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "libervia-backend: not running" in result.stdout
