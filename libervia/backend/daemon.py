"""The daemon: ``libervia-backend fg``, ``start``, ``stop`` and ``status``.

This module is the top of the stack (it wires core and the bridge together); ``__main__`` only
parses the arguments and calls :func:`foreground`, :func:`start`, :func:`stop` or
:func:`status`.

``fg``
    Runs the daemon in the foreground: acquires the pid file, connects the bridge (the bus name
    is owned first, so that D-Bus activation and early callers work: their calls wait until
    the host is ready), starts the host (storage created or migrated, plugins loaded), then
    runs until SIGTERM or SIGINT and shuts down cleanly (profiles disconnected, database
    closed; exit code 0). A second SIGTERM/SIGINT during the shutdown exits at once (code 1).
``start``
    Spawns ``fg`` in the background (new session, output to the log file) and waits until it
    reports that it is ready, or why it failed, through a pipe whose fd is given in the
    ``LIBERVIA_BACKEND_READY_FD`` environment variable.
``stop``
    Sends SIGTERM to the daemon and waits until its pid file is unlocked.
``status``
    Exit code 0 when running, 3 when not (LSB), 4 when it cannot be told.

Whether a daemon runs is decided by the lock on the pid file (``<local_dir>/
libervia-backend.pid``, :class:`PidFile`), never by the file's existence: a file left by a
crash is not "running".
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from libervia.backend.core import log as log_setup
from libervia.backend.core.config import PRIVATE_UMASK, Config, private_dir
from libervia.backend.core.exceptions import ConfigError, LiberviaError
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

NAME = "libervia-backend"
PID_FILE_NAME = "libervia-backend.pid"
LOG_FILE_NAME = "libervia-backend.log"
READY_FD_ENV = "LIBERVIA_BACKEND_READY_FD"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 20.0
FORCE_AFTER = 1.0
DEFAULT_LOG_LEVEL = "INFO"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3
EXIT_UNKNOWN = 4

Sleep = Callable[[float], None]


class DaemonError(Exception):
    """A failure of the daemon commands (reported as one line, exit code 1)."""


class AlreadyRunning(DaemonError):
    """Another daemon holds the pid file."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"{NAME} is already running (pid {pid})")
        self.pid = pid


# --- files -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What the daemon commands read from ``libervia.conf`` (and the command line)."""

    local_dir: Path
    pid_file: Path
    log_file: Path | None
    log_level: str
    log_format: str | None

    @classmethod
    def from_config(cls, config: Config, log_level: str | None = None) -> Settings:
        """Read the options; ``log_level`` (the ``--log-level`` option) overrides the config.

        The level is checked by :meth:`checked_log_level` (only ``fg`` needs it: a bad level
        must not prevent ``stop``).
        """
        local_dir = config.local_dir
        log_file = config.get("log_file")
        return cls(
            local_dir=local_dir,
            pid_file=local_dir / PID_FILE_NAME,
            log_file=(local_dir / Path(log_file).expanduser()) if log_file else None,
            log_level=log_level or config.get("log_level") or DEFAULT_LOG_LEVEL,
            log_format=config.get("log_format"),
        )

    def checked_log_level(self) -> str:
        """The log level, upper case.

        Raises:
            ConfigError: not a level name.
        """
        try:
            return log_setup.check_level(self.log_level)
        except ValueError as e:
            raise ConfigError(f"{e} (--log-level or the log_level option)") from None

    @property
    def start_log_file(self) -> Path:
        """Where ``start`` sends the daemon's output (and its log)."""
        return self.log_file or self.local_dir / LOG_FILE_NAME


class PidFile:
    """The pid file, locked (``flock``) for the whole life of the daemon.

    The lock says whether a daemon runs; the pid written in the file says which one. The
    kernel releases the lock when the process dies, so a crash leaves a stale file that is
    simply taken over.

    Args:
        path: the file (its directory is created if needed).
        attempts, delay, sleep: a lock found taken is retried ``attempts`` times, ``delay``
            seconds apart: :func:`running_pid` holds a shared lock for a few microseconds when
            it looks, which must not be mistaken for a running daemon.
    """

    def __init__(
        self, path: Path, *, attempts: int = 10, delay: float = 0.02, sleep: Sleep = time.sleep
    ) -> None:
        self.path = path
        self._attempts = attempts
        self._delay = delay
        self._sleep = sleep
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, pid: int | None = None) -> None:
        """Lock the file and write ``pid`` (ours by default) in it.

        Raises:
            AlreadyRunning: another process holds the lock.
            OSError: the file cannot be created or written.
        """
        if self._fd is not None:
            raise RuntimeError("pid file already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        attempt = 0
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                attempt += 1
                if attempt >= self._attempts:
                    holder = running_pid(self.path, sleep=self._sleep)
                    if holder is None:  # released meanwhile: try again
                        attempt = 0
                        continue
                    raise AlreadyRunning(holder) from None
                self._sleep(self._delay)
                continue
            except BaseException:
                os.close(fd)
                raise
            if not _same_file(fd, self.path):
                # the previous holder removed the file between our open() and flock():
                # we locked an orphan inode, start over with the current file
                os.close(fd)
                continue
            break
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid() if pid is None else pid}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Remove the file and unlock it (nothing if not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
        except OSError as e:
            log.warning("could not remove the pid file %s: %s", self.path, e)
        finally:
            os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def running_pid(
    path: Path, *, attempts: int = 50, delay: float = 0.02, sleep: Sleep = time.sleep
) -> int | None:
    """The pid of the daemon holding the pid file, or None when no process holds its lock.

    A daemon writes its pid right after taking the lock: an empty file under a held lock is
    read again (``attempts`` times, ``delay`` seconds apart).

    Raises:
        DaemonError: the file is locked but holds no pid; or it cannot be read.
    """
    for _ in range(attempts):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DaemonError(f"cannot read the pid file {path}: {e.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                if text.isdigit() and int(text) > 0:
                    return int(text)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
        finally:
            os.close(fd)
        sleep(delay)
    raise DaemonError(f"the pid file {path} is locked but holds no pid")


# --- the `start` handshake ---------------------------------------------------------------------


class Notifier:
    """The child side of the ``start`` handshake: one line on the pipe, then closed.

    Lines: ``ready <pid>``, ``running <pid>`` (another daemon holds the pid file) or
    ``error <message>``. Without the environment variable (a plain ``fg``), does nothing.
    """

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def from_environ(cls) -> Notifier:
        """Take the fd from ``LIBERVIA_BACKEND_READY_FD`` (and remove the variable, so that
        processes the daemon spawns never see it)."""
        value = os.environ.pop(READY_FD_ENV, None)
        if value is None:
            return cls(None)
        try:
            fd = int(value)
            os.fstat(fd)
        except (ValueError, OSError):
            return cls(None)
        os.set_inheritable(fd, False)
        return cls(fd)

    def send(self, status: str, detail: str = "") -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        line = f"{status} {detail}".strip().replace("\n", " ") + "\n"
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        except OSError as e:  # the `start` command gave up waiting
            log.debug("could not report %r to the start command: %s", status, e)
        finally:
            os.close(fd)


def read_report(fd: int, timeout: float, clock: Callable[[], float] = time.monotonic) -> str | None:
    """Read the child's one-line report from ``fd``; None on timeout, "" when the pipe closed
    without a line (the child died)."""
    deadline = clock() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - clock()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace") if b"\n" in data else ""


# --- the running daemon ------------------------------------------------------------------------


class Service(Protocol):
    """What the daemon runs: started once, stopped once (also after a failed start)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ServiceFactory = Callable[[Config], Service]


class Backend:
    """The real service: the host, its bridge adapters and the D-Bus bridge."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.host: Any = None
        self.bridge: Any = None
        self._bridge_connected = False

    async def start(self) -> None:
        from libervia.backend.bridge.adapters import CoreAdapters
        from libervia.backend.bridge.dbus import DBusBridge
        from libervia.backend.core.main import LiberviaBackend

        self.host = LiberviaBackend(self.config)
        self.bridge = DBusBridge(CoreAdapters(self.host), wait_ready=self.host.wait_ready)
        self.host.bridge = self.bridge
        # the bus name first: D-Bus activation and early callers find us, and wait for ready
        await self.bridge.connect()
        self._bridge_connected = True
        await self.host.start()

    async def stop(self) -> None:
        try:
            if self.host is not None:
                await self.host.stop()
        finally:
            if self._bridge_connected:
                self._bridge_connected = False
                await self.bridge.disconnect()


class Daemon:
    """Runs a service until asked to stop (:meth:`request_stop`, SIGTERM, SIGINT).

    Args:
        service: what to start and stop.
        notifier: told ``ready`` or ``error`` once the start is over.
        shutdown_timeout: longest wait for the service to stop (and, when a stop is requested
            while it starts, for the start to finish).
        error_sink: reports the one-line error of a failed start (default: stderr).
        clock: monotonic time in seconds (for the repeated-signal grace period).
    """

    def __init__(
        self,
        service: Service,
        notifier: Notifier | None = None,
        *,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        error_sink: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.notifier = notifier or Notifier(None)
        self.shutdown_timeout = shutdown_timeout
        self._report_error = error_sink or _print_error
        self._clock = clock
        self._stop_requested = asyncio.Event()
        self._first_signal: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request_stop(self) -> None:
        """Ask the daemon to shut down (from the loop's thread)."""
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the daemon cleanly.

        Another one more than :data:`FORCE_AFTER` seconds later (the shutdown is stuck, the
        user insists) exits at once with code 1; repeats within that time are ignored (a
        wrapper forwarding the signal to its process group, ``timeout``, a shell...).

        ``signal.signal`` on purpose, not ``loop.add_signal_handler``, which would take over
        the wakeup fd Twisted uses for SIGCHLD; the reactor's own SIGINT/SIGTERM handlers are
        replaced.
        """
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # runs between two bytecodes of the main thread: only hand over to the loop
        name = signal.Signals(signum).name
        now = self._clock()
        if self._first_signal is not None:
            if now - self._first_signal >= FORCE_AFTER:
                os.write(2, f"{NAME}: {name} received again: exiting now\n".encode())
                os._exit(EXIT_ERROR)
            return
        self._first_signal = now
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._signal_received, name)

    def _signal_received(self, name: str) -> None:
        log.info("%s received: shutting down", name)
        self.request_stop()

    async def run(self) -> int:
        """Start the service, wait for a stop request, stop it; return the exit code."""
        starting = asyncio.ensure_future(self.service.start())
        stop_requested = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                # never interrupt a start (a migration...) unless it takes too long
                log.info("stop requested while starting: waiting for the start to finish")
                try:
                    await asyncio.wait_for(asyncio.shield(starting), self.shutdown_timeout)
                except TimeoutError:
                    starting.cancel()
                    await asyncio.gather(starting, return_exceptions=True)
                except Exception:
                    pass  # reported below
            error = self._start_error(starting)
            if error is not None:
                self.notifier.send("error", error)
                self._report_error(error)
                await self._stop_service()
                return EXIT_ERROR
            if self._stop_requested.is_set():
                self.notifier.send("error", "stopped before it was ready")
                return EXIT_OK if await self._stop_service() else EXIT_ERROR
            self.notifier.send("ready", str(os.getpid()))
            log.info("%s ready (pid %d)", NAME, os.getpid())
            await stop_requested
            return EXIT_OK if await self._stop_service() else EXIT_ERROR
        finally:
            for task in (starting, stop_requested):
                if not task.done():
                    task.cancel()
            await asyncio.gather(starting, stop_requested, return_exceptions=True)

    def _start_error(self, starting: asyncio.Future[None]) -> str | None:
        if starting.cancelled():
            return f"the start took longer than {self.shutdown_timeout:g} s after the stop request"
        e = starting.exception()
        if e is None:
            return None
        if not isinstance(e, LiberviaError):
            log.debug("start failed", exc_info=e)
        return _error_text(e)

    async def _stop_service(self) -> bool:
        try:
            await asyncio.wait_for(self.service.stop(), self.shutdown_timeout)
        except TimeoutError:
            log.error("the shutdown took longer than %g s: exiting anyway", self.shutdown_timeout)
            return False
        except Exception as e:
            log.error("error during the shutdown: %s", _error_text(e))
            log.debug("shutdown error", exc_info=e)
            return False
        log.info("%s stopped", NAME)
        return True


def _error_text(e: BaseException) -> str:
    if isinstance(e, LiberviaError | DaemonError):
        return str(e)
    return f"unexpected error: {type(e).__name__}: {e}"


def _print_error(message: str) -> None:
    print(f"{NAME}: error: {message}", file=sys.stderr, flush=True)


def run_on_reactor(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main`` on the (already installed) reactor; return its exit code."""
    from twisted.internet import reactor
    from twisted.python.failure import Failure

    from libervia.backend.core.aio import as_deferred

    outcome: list[int] = []

    def done(result: int | Failure) -> None:
        if isinstance(result, Failure):
            _print_error(_error_text(result.value))
            log.debug("daemon failed: %s", result.getTraceback())
            outcome.append(EXIT_ERROR)
        else:
            outcome.append(result)
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: as_deferred(main()).addBoth(done)
    )
    reactor.run()  # type: ignore[attr-defined]
    return outcome[0] if outcome else EXIT_ERROR


# --- the commands ------------------------------------------------------------------------------


def _load(config_path: str | None, log_level: str | None) -> tuple[Config, Settings]:
    config = Config.load(config_path)
    return config, Settings.from_config(config, log_level)


def foreground(
    config_path: str | None,
    log_level: str | None = None,
    service_factory: ServiceFactory = Backend,
) -> int:
    """``libervia-backend fg``: run the daemon until SIGTERM/SIGINT; return the exit code."""
    notifier = Notifier.from_environ()
    to_log_file = False

    def report(message: str) -> None:
        _print_error(message)
        if to_log_file:
            log.error("%s", message)

    def fail(message: str) -> int:
        notifier.send("error", message)
        report(message)
        return EXIT_ERROR

    try:
        config, settings = _load(config_path, log_level)
        level = settings.checked_log_level()
    except LiberviaError as e:
        return fail(str(e))
    # what the daemon writes (database and its backups, logs, pid file, received files) is
    # the user's only, whatever the caller's umask: files 0600, directories 0700
    os.umask(PRIVATE_UMASK)
    try:
        private_dir(settings.local_dir)
    except OSError as e:
        return fail(f"cannot create {settings.local_dir}: {e.strerror}")
    try:
        if settings.log_file is not None:
            settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        log_setup.configure(level, settings.log_file, settings.log_format)
    except OSError as e:
        return fail(f"cannot open the log file {settings.log_file}: {e.strerror}")
    to_log_file = settings.log_file is not None
    pid_file = PidFile(settings.pid_file)
    try:
        pid_file.acquire()
    except AlreadyRunning as e:
        notifier.send("running", str(e.pid))
        _print_error(str(e))
        return EXIT_ERROR
    except (OSError, DaemonError) as e:
        detail = e.strerror if isinstance(e, OSError) else str(e)
        return fail(f"cannot lock the pid file {settings.pid_file}: {detail}")
    try:
        log.info("%s starting (pid %d, config %s)", NAME, os.getpid(), config.path)
        daemon = Daemon(service_factory(config), notifier, error_sink=report)

        async def main() -> int:
            daemon.install_signal_handlers()
            return await daemon.run()

        return run_on_reactor(main)
    finally:
        pid_file.release()
        # everything is closed: spare the interpreter's final garbage collections of the
        # whole heap (SQLAlchemy, Twisted...), measured at ~0.4 s of the exit, ~0.03 s frozen
        gc.freeze()


def start(
    config_path: str | None, log_level: str | None = None, timeout: float = START_TIMEOUT
) -> int:
    """``libervia-backend start``: run ``fg`` in the background, wait until it is ready."""
    try:
        config, settings = _load(config_path, log_level)
        pid = running_pid(settings.pid_file)
    except (LiberviaError, DaemonError) as e:
        _print_error(str(e))
        return EXIT_ERROR
    if pid is not None:
        print(f"{NAME} is already running (pid {pid})")
        return EXIT_OK
    log_path = settings.start_log_file
    os.umask(PRIVATE_UMASK)  # the log file opened below for the child, and the child itself
    command = [sys.executable, "-m", "libervia.backend", "-c", str(config.path.absolute())]
    if log_level:
        command += ["--log-level", log_level]
    command.append("fg")
    read_fd, write_fd = os.pipe()
    try:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        except OSError as e:
            _print_error(f"cannot open the log file {log_path}: {e.strerror}")
            return EXIT_ERROR
        env = {**os.environ, READY_FD_ENV: str(write_fd)}
        env.pop("JOURNAL_STREAM", None)  # its output goes to the log file, not to the journal
        try:
            with output:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                    env=env,
                )
        except OSError as e:
            _print_error(f"cannot run {command[0]}: {e.strerror}")
            return EXIT_ERROR
        os.close(write_fd)
        write_fd = -1
        report = read_report(read_fd, timeout)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    status, _, detail = (report or "").partition(" ")
    if status == "ready":
        print(f"{NAME} started (pid {process.pid}), log: {log_path}")
        return EXIT_OK
    if status == "running":  # another `start` won the race
        print(f"{NAME} is already running (pid {detail})")
        return EXIT_OK
    if status == "error":
        # it closes what it opened and exits: wait for it, so that nothing is left running
        if _exit_code(process, SHUTDOWN_TIMEOUT + 5) is None:
            detail += f"; it is still exiting (pid {process.pid})"
        _print_error(f"{detail} (log: {log_path})")
        return EXIT_ERROR
    if report is None:
        _print_error(
            f"{NAME} (pid {process.pid}) is not ready after {timeout:g} s; it may still be "
            f"starting: see {log_path}"
        )
        return EXIT_ERROR
    code = _exit_code(process)
    how = f"exited with code {code}" if code is not None else "stopped reporting"
    _print_error(f"{NAME} {how} while starting: see {log_path}")
    return EXIT_ERROR


def _exit_code(process: subprocess.Popen[bytes], timeout: float = 5) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def stop(
    config_path: str | None,
    timeout: float = STOP_TIMEOUT,
    *,
    poll: float = 0.05,
    sleep: Sleep = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """``libervia-backend stop``: SIGTERM the daemon, wait until its pid file is unlocked."""
    try:
        _, settings = _load(config_path, None)
        pid = running_pid(settings.pid_file)
        if pid is None:
            print(f"{NAME} is not running")
            return EXIT_OK
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it just exited
        except OSError as e:
            raise DaemonError(f"cannot stop {NAME} (pid {pid}): {e.strerror}") from None
        deadline = clock() + timeout
        while running_pid(settings.pid_file) is not None:
            if clock() >= deadline:
                raise DaemonError(f"{NAME} (pid {pid}) did not stop within {timeout:g} s")
            sleep(poll)
    except (LiberviaError, DaemonError) as e:
        _print_error(str(e))
        return EXIT_ERROR
    print(f"{NAME} stopped")
    return EXIT_OK


def status(config_path: str | None) -> int:
    """``libervia-backend status``: 0 running, 3 not running, 4 unknown (LSB)."""
    try:
        _, settings = _load(config_path, None)
        pid = running_pid(settings.pid_file)
    except (LiberviaError, DaemonError) as e:
        _print_error(str(e))
        return EXIT_UNKNOWN
    if pid is None:
        print(f"{NAME} is not running")
        return EXIT_NOT_RUNNING
    print(f"{NAME} is running (pid {pid})")
    return EXIT_OK
