"""A local sandbox to try Libervia at once: ``scripts/sandbox start|stop|status``.

``start`` brings up, in one directory (``.sandbox/`` in the repository, or ``--dir``, or
``$LIBERVIA_SANDBOX_DIR``):

- a Prosody on 127.0.0.1 (free port, STARTTLS with a self-signed certificate, its whole config
  written here: never Debian's default one) with two accounts, alice@localhost and
  bob@localhost;
- a private D-Bus session bus (``dbus-daemon``);
- the daemon (``libervia-backend``, SQLite database in the sandbox) on that bus;

then creates and connects the profiles ``alice`` (the default one) and ``bob`` with ``li``,
sends a first message from alice to bob, writes ``env`` (the variables to export) and prints the
``li`` commands to try. Each process's pid is in ``pids/``; ``stop`` ends them (SIGTERM, then
SIGKILL) and checks they are gone. ``start`` on a running sandbox says so and prints the same
instructions; on a partly running one (a crash, ``kill -9``) it stops what is left and starts
afresh: the sandbox's data (accounts, profiles, history) does not outlive it.

The script uses only the standard library and runs the tools as subprocesses (``li`` and
``libervia-backend`` from the same environment as the Python running it).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import escape

from libervia import devserver

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / ".sandbox"
DIR_ENV = "LIBERVIA_SANDBOX_DIR"
MARKER = ".libervia-sandbox"
DOMAIN = devserver.DOMAIN
USERS = ("alice", "bob")
FIRST_MESSAGE = "Hello Bob! This is the first message of the Libervia sandbox."
COMPONENTS = ("daemon", "prosody", "dbus")  # stopping order: the daemon first, the bus last
TIMEOUT = 60

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_NOT_RUNNING = 0, 1, 1, 3


DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class SandboxError(Exception):
    """A step failed: one line for the user."""


def log(message: str) -> None:
    print(f"sandbox: {message}", flush=True)


# processes ---------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped yet, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (not necessarily our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return not process_alive(pid)


class Component:
    """One process of the sandbox, known by its pid file.

    A pid counts only while the process runs with ``marker`` (a path inside the sandbox) in
    its command line: a pid file left by a crash, whose pid was reused since, is ignored.
    """

    def __init__(self, name: str, pid_file: Path, marker: str) -> None:
        self.name = name
        self.pid_file = pid_file
        self.marker = marker

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if not process_alive(pid):
            return None
        if not any(self.marker in part for part in process_cmdline(pid)):
            return None
        return pid

    def stop(self) -> int | None:
        """End the process (SIGTERM, SIGKILL after 15 s); returns its pid if it was running."""
        pid = self.pid()
        if pid is not None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if wait_gone(pid, wait):
                    break
            if process_alive(pid):
                raise SandboxError(f"{self.name} (pid {pid}) did not stop")
        self.pid_file.unlink(missing_ok=True)
        return pid


# the sandbox -------------------------------------------------------------------------------


class Sandbox:
    def __init__(self, directory: Path) -> None:
        self.dir = directory.absolute()
        self.state_file = self.dir / "state.json"
        self.env_file = self.dir / "env"
        self.prosody_config = self.dir / "prosody" / "prosody.cfg.lua"
        self.dbus_config = self.dir / "dbus" / "session.conf"
        self.bus_socket = self.dir / "dbus" / "bus"
        self.daemon_config = self.dir / "libervia.conf"
        self.local_dir = self.dir / "local"
        pids = self.dir / "pids"
        self.components = {
            "daemon": Component(
                "libervia-backend",
                self.local_dir / "libervia-backend.pid",  # written (and locked) by the daemon
                str(self.daemon_config),
            ),
            "prosody": Component("prosody", pids / "prosody.pid", str(self.prosody_config)),
            "dbus": Component("dbus-daemon", pids / "dbus.pid", str(self.dbus_config)),
        }
        bin_dir = Path(sys.executable).parent
        self.li = [str(bin_dir / "li")] if (bin_dir / "li").exists() else None
        if self.li is None:
            self.li = [sys.executable, "-m", "libervia.cli"]
        self.bin_dir = bin_dir

    # helpers

    @property
    def bus_address(self) -> str:
        return f"unix:path={self.bus_socket}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
            "LIBERVIA_CONFIG": str(self.daemon_config),
            "NO_COLOR": "1",
        }
        return env

    def run(self, what: str, command: list[str], **kwargs: object) -> str:
        """Run a command to completion; its output, or SandboxError with its stderr."""
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=TIMEOUT,
                **kwargs,  # type: ignore[arg-type]
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{what}: no answer after {TIMEOUT} s") from None
        except OSError as e:
            raise SandboxError(f"{what}: cannot run {command[0]}: {e.strerror}") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise SandboxError(
                f"{what} failed (exit code {result.returncode})"
                + (f": {detail[-1]}" if detail else "")
            )
        return result.stdout

    def li_run(self, what: str, *args: str) -> str:
        return self.run(what, [*self.li, *args], env=self.env())

    def running(self) -> dict[str, int | None]:
        return {name: component.pid() for name, component in self.components.items()}

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One ``start``/``stop`` at a time (a lock on the sandbox directory itself)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def wipe(self) -> None:
        """Empty the directory, if it is a sandbox (or empty): never anything else."""
        entries = [e for e in self.dir.iterdir() if e.name != MARKER]
        if entries and not (self.dir / MARKER).exists():
            raise SandboxError(
                f"{self.dir} is not empty and is not a sandbox directory: choose another one"
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        (self.dir / MARKER).write_text("a Libervia sandbox: scripts/sandbox stop|start\n")

    # start

    def start(self) -> int:
        with self.locked():
            running = self.running()
            if all(running.values()) and self.state_file.exists():
                log(
                    "already running ("
                    + ", ".join(f"{self.components[n].name} pid {p}" for n, p in running.items())
                    + ")"
                )
                self.print_instructions()
                return EXIT_OK
            if any(running.values()) or (self.dir / "pids").exists():
                log("a previous sandbox did not stop cleanly: stopping what is left")
                self.stop_all()
            if len(str(self.bus_socket)) > 100:
                raise SandboxError(f"the path {self.bus_socket} is too long for a unix socket")
            self.wipe()
            (self.dir / "pids").mkdir()
            try:
                state = self.start_all()
            except BaseException:
                log("stopping what was started")
                self.stop_all()
                raise
            self.state_file.write_text(json.dumps(state, indent=2) + "\n")
            self.state_file.chmod(0o600)
            self.write_env()
            log("ready")
            self.print_instructions()
            return EXIT_OK

    def start_all(self) -> dict[str, object]:
        started = time.monotonic()
        passwords = {user: secrets.token_hex(8) for user in USERS}
        port = self.start_prosody()
        for user in USERS:
            self.run(
                f"registering {user}@{DOMAIN}",
                ["prosodyctl", "--config", str(self.prosody_config), "register", user, DOMAIN,
                 passwords[user]],
            )  # fmt: skip
        log(f"prosody on 127.0.0.1:{port}, accounts " + ", ".join(f"{u}@{DOMAIN}" for u in USERS))
        self.start_dbus()
        log(f"private D-Bus session bus: {self.bus_address}")
        self.start_daemon()
        for user in USERS:
            self.li_run(
                f"li profile create {user}",
                *("profile", "create", user, "-j", f"{user}@{DOMAIN}"),
                f"--xmpp-password={passwords[user]}",  # "=": a value never taken for an option
                *("--server", "127.0.0.1", "--port", str(port), "--no-check-certificate", "-C"),
            )
        log("profiles alice (the default one) and bob created and connected")
        self.li_run(
            "li message send", "message", "send", "-p", "alice", f"bob@{DOMAIN}", FIRST_MESSAGE
        )
        self.wait_first_message()
        log(f"alice sent bob a first message (all up in {time.monotonic() - started:.1f} s)")
        return {
            "prosody_port": port,
            "domain": DOMAIN,
            "accounts": {f"{u}@{DOMAIN}": passwords[u] for u in USERS},
            "bus_address": self.bus_address,
            "daemon_config": str(self.daemon_config),
        }

    def spawn(self, name: str, command: list[str], log_name: str, **kwargs: object) -> int:
        """Start a long-running process in its own session (it outlives this script)."""
        log_path = self.dir / log_name
        with log_path.open("ab") as output:
            try:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=kwargs.pop("stdout", output),  # type: ignore[arg-type]
                    stderr=output,
                    start_new_session=True,
                    **kwargs,  # type: ignore[arg-type]
                )
            except OSError as e:
                raise SandboxError(f"cannot run {command[0]}: {e.strerror}") from None
        component = self.components[name]
        component.pid_file.write_text(f"{process.pid}\n")
        self._last_process = process
        return process.pid

    def start_prosody(self) -> int:
        for tool in ("prosody", "prosodyctl", "openssl"):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} not found: install the Debian 'prosody' package")
        directory = self.prosody_config.parent
        (directory / "data").mkdir(parents=True)
        (directory / "certs").mkdir()
        try:
            key, _ = devserver.make_certificate(directory / "certs", DOMAIN, days=3650)
        except (OSError, subprocess.SubprocessError) as e:
            raise SandboxError(f"making the TLS certificate failed: {e}") from e
        cert = directory / "certs" / f"{DOMAIN}.crt"
        port = free_port()
        self.prosody_config.write_text(
            devserver.config_text(
                directory,
                port,
                key,
                cert,
                run_as_root=os.geteuid() == 0,
                modules=devserver.MODULES,
                archive_expires_after="1w",
                proxy65_port=free_port(),
            )
        )
        pid = self.spawn(
            "prosody",
            ["prosody", "--config", str(self.prosody_config), "-F"],
            "prosody/stdout.log",
        )
        process = self._last_process
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise SandboxError(
                    f"prosody exited with code {process.returncode}: see {directory}/prosody.log"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"prosody (pid {pid}) does not listen on port {port}: see "
                        f"{directory}/prosody.log"
                    ) from None
                time.sleep(0.05)
        return port

    def start_dbus(self) -> None:
        if shutil.which("dbus-daemon") is None:
            raise SandboxError("dbus-daemon not found: install the Debian 'dbus-daemon' package")
        self.dbus_config.parent.mkdir()
        self.dbus_config.write_text(DBUS_CONFIG.format(socket=escape(str(self.bus_socket))))
        self.spawn(
            "dbus",
            ["dbus-daemon", "--nofork", f"--config-file={self.dbus_config}", "--print-address=1"],
            "dbus/dbus-daemon.log",
            stdout=subprocess.PIPE,
        )
        process = self._last_process
        assert process.stdout is not None
        # it prints its address once it listens (or exits on an error)
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready else b""
        process.stdout.close()
        if not line:
            raise SandboxError(
                f"dbus-daemon did not start: see {self.dbus_config.parent}/dbus-daemon.log"
            )

    def start_daemon(self) -> None:
        self.local_dir.mkdir()
        self.daemon_config.write_text(
            "# written by scripts/sandbox\n"
            f"[DEFAULT]\nlocal_dir = {self.local_dir}\nlog_level = INFO\n"
        )
        backend = self.bin_dir / "libervia-backend"
        command = [str(backend)] if backend.exists() else [sys.executable, "-m", "libervia.backend"]
        output = self.run(
            "libervia-backend start",
            [*command, "-c", str(self.daemon_config), "start"],
            env=self.env(),
            cwd=self.dir,
        )
        log(output.strip())

    def wait_first_message(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            history = json.loads(
                self.li_run(
                    "li message history",
                    *("message", "history", "-p", "bob", f"alice@{DOMAIN}", "-O", "json"),
                )
            )
            if any(FIRST_MESSAGE in m.get("message", {}).values() for m in history):
                return
            if time.monotonic() > deadline:
                raise SandboxError("bob did not receive alice's first message in 20 s")
            time.sleep(0.1)

    def write_env(self) -> None:
        bin_dir = shlex.quote(str(self.bin_dir))
        self.env_file.write_text(
            "# source this file (. .sandbox/env) to use the sandbox from your shell\n"
            f"export DBUS_SESSION_BUS_ADDRESS={shlex.quote(self.bus_address)}\n"
            f"export LIBERVIA_CONFIG={shlex.quote(str(self.daemon_config))}\n"
            f'case ":$PATH:" in *:{bin_dir}:*) ;; *) export PATH={bin_dir}:"$PATH" ;; esac\n'
        )

    def command_name(self) -> str:
        script = REPO / "scripts" / "sandbox"
        try:
            name = "./" + str(script.relative_to(Path.cwd()))
        except ValueError:
            name = str(script)
        return name

    def dir_option(self) -> str:
        return "" if self.dir == DEFAULT_DIR else f" --dir {shlex.quote(str(self.dir))}"

    def print_instructions(self) -> None:
        try:
            state = json.loads(self.state_file.read_text())
            port = state["prosody_port"]
        except (OSError, ValueError, KeyError):
            port = "?"
        env_file = shlex.quote(str(self.env_file))
        print(
            f"""
The sandbox runs in {self.dir}:
  Prosody on 127.0.0.1:{port} (alice@{DOMAIN}, bob@{DOMAIN}; passwords in state.json),
  a private D-Bus session bus, the daemon (SQLite database in local/),
  the profiles alice (the default one) and bob, connected.

Try it (in your shell):

    . {env_file}
    li message history -p bob alice@{DOMAIN}
    li message send -p bob alice@{DOMAIN} 'Hi Alice!'
    li message history bob@{DOMAIN}     # alice's side: alice is the default profile

(the env file sets DBUS_SESSION_BUS_ADDRESS={self.bus_address} and
puts li on the PATH; every command: li --help)

Stop everything (the next start begins afresh):

    {self.command_name()} stop{self.dir_option()}
""",
            flush=True,
        )

    # stop / status

    def stop_all(self) -> list[str]:
        stopped = []
        errors = []
        for name in COMPONENTS:
            component = self.components[name]
            try:
                pid = component.stop()
            except SandboxError as e:
                errors.append(str(e))
                continue
            if pid is not None:
                stopped.append(f"{component.name} (pid {pid})")
        if errors:
            raise SandboxError("; ".join(errors))
        shutil.rmtree(self.dir / "pids", ignore_errors=True)
        self.bus_socket.unlink(missing_ok=True)
        return stopped

    def stop(self) -> int:
        if not self.dir.exists():
            log(f"not running (no sandbox in {self.dir})")
            return EXIT_OK
        with self.locked():
            stopped = self.stop_all()
            left = {n: p for n, p in self.running().items() if p is not None}
            if left:
                raise SandboxError(f"still running: {left}")
        if stopped:
            log("stopped " + ", ".join(stopped) + f"; logs kept in {self.dir}")
        else:
            log("not running")
        return EXIT_OK

    def status(self) -> int:
        running = self.running() if self.dir.exists() else dict.fromkeys(COMPONENTS)
        for name in reversed(COMPONENTS):
            pid = running[name]
            state = f"running (pid {pid})" if pid else "not running"
            print(f"{self.components[name].name}: {state}")
        if all(running.values()):
            print(f"the sandbox runs in {self.dir}: . {shlex.quote(str(self.env_file))}")
            return EXIT_OK
        if any(running.values()):
            print("the sandbox is partly running: start restarts it, stop stops what is left")
            return EXIT_PARTIAL
        return EXIT_NOT_RUNNING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/sandbox",
        description="A local sandbox to try Libervia: Prosody with two accounts, a private "
        "D-Bus bus, the daemon, and the profiles alice and bob, connected.",
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get(DIR_ENV) or DEFAULT_DIR),
        help=f"the sandbox directory (default: ${DIR_ENV}, or .sandbox/ in the repository)",
    )
    args = parser.parse_args(argv)
    sandbox = Sandbox(args.dir)
    try:
        return int(getattr(sandbox, args.command)())
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
