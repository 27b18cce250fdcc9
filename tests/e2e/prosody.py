"""A real Prosody for end-to-end tests: config written into a temp dir, 127.0.0.1, free ports,
STARTTLS with a self-signed certificate, accounts made with prosodyctl.

Facts (DESIGN.md §8): never Debian's default config (mod_limits throttles c2s); ``nagle =
false`` cuts notification latency from ~42 ms to ~3 ms.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from libervia import devserver
from tests.net import free_port

DOMAIN = devserver.DOMAIN
MODULES = [m for m in devserver.MODULES if m not in ("uptime", "time")]


class ProsodyUnavailable(RuntimeError):
    pass


class Prosody:
    """A Prosody server in a temporary directory; :meth:`stop` removes everything."""

    def __init__(self, extra_config: str = "") -> None:
        """``extra_config``: more global Prosody options (Lua), e.g.
        ``smacks_hibernation_time = 2``."""
        for tool in ("prosody", "prosodyctl", "openssl"):
            if shutil.which(tool) is None:
                raise ProsodyUnavailable(
                    f"{tool} not found: install the Debian 'prosody' package (the README test "
                    "command does it)"
                )
        self.dir = Path(tempfile.mkdtemp(prefix="libervia-prosody-"))
        self.c2s_port = free_port()
        self.proxy65_port = free_port()
        self.config = self.dir / "prosody.cfg.lua"
        self.cert = self.dir / "certs" / f"{DOMAIN}.crt"
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_config = extra_config

    def _write_config(self) -> None:
        (self.dir / "data").mkdir()
        key, _ = devserver.make_certificate(self.dir / "certs")
        self.config.write_text(
            devserver.config_text(
                self.dir,
                self.c2s_port,
                key,
                self.cert,
                run_as_root=True,
                modules=MODULES,
                extra=self.extra_config,
                proxy65_port=self.proxy65_port,
            )
        )

    def start(self) -> None:
        self._write_config()
        self._spawn()

    def restart(self) -> None:
        """Stop the server (SIGTERM: it closes the streams) and start it again on the same
        config, port and data (accounts, rosters and archives are kept)."""
        self._terminate()
        self._spawn()

    def pause(self) -> None:
        """SIGSTOP: the server stops answering without closing anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def _spawn(self) -> None:
        log = (self.dir / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            ["prosody", "--config", str(self.config), "-F"], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prosody exited: {self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.c2s_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"prosody did not listen in time: {self.logs()}")

    def logs(self) -> str:
        texts = []
        for name in ("stdout.log", "prosody.log"):
            path = self.dir / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(texts)

    def adduser(self, user: str, password: str) -> str:
        subprocess.run(
            ["prosodyctl", "--config", str(self.config), "register", user, DOMAIN, password],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return f"{user}@{DOMAIN}"

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot stop
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def stop(self) -> None:
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Prosody:
        """Started (stopped again, everything removed, if it cannot start)."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
