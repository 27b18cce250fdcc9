"""The real daemon as a subprocess, on a private bus, driven through the bridge client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libervia.frontends.bridge.client import BridgeClient, BridgeUnavailable
from tests.e2e.prosody import Prosody


class Daemon:
    """``libervia-backend fg`` with its own config and local dir, on the bus at ``bus_address``.

    :meth:`stop` sends SIGTERM and waits (a clean shutdown is part of what is tested).
    """

    def __init__(
        self,
        directory: Path,
        bus_address: str,
        extra_config: str = "",
        log_level: str = "INFO",
        bytecode_dir: Path | None = None,
    ) -> None:
        self.directory = directory
        #: run as an installed daemon, with compiled bytecode (written there by the first start)
        #: instead of compiling our modules at each start under PYTHONDONTWRITEBYTECODE
        self.bytecode_dir = bytecode_dir
        self.bus_address = bus_address
        self.config = directory / "libervia.conf"
        self.config.write_text(
            f"[DEFAULT]\nlocal_dir = {directory / 'local'}\nlog_level = {log_level}\n{extra_config}"
        )
        self.log = directory / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """The daemon's environment: ours, on its bus, without the user's config."""
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.bus_address}
        env.pop("LIBERVIA_CONFIG", None)
        if self.bytecode_dir is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.bytecode_dir)
        return env

    def start(self) -> float:
        """Start the process; returns the monotonic time it was spawned at."""
        env = self.environment()
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "libervia.backend", "-c", str(self.config), "fg"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        return started

    async def bridge(self, timeout: float = 30) -> BridgeClient:
        """A bridge client once the daemon answers ``ready_get``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited: {self.logs()}")
            try:
                client = await BridgeClient.open(self.bus_address, timeout=5)
            except BridgeUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)
                continue
            await client.wait_ready(timeout=timeout)
            return client

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def stop(self) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                raise
        return process.returncode


async def make_account(
    bridge: BridgeClient,
    prosody: Prosody,
    profile: str,
    user: str,
    password: str = "xmpp-pass",
    *,
    profile_password: str = "",
    check_certificate: bool = False,
    port: int | None = None,
    register: bool = True,
) -> str:
    """Create a profile for a Prosody account (registered with prosodyctl); returns the JID."""
    jid = prosody.adduser(user, password) if register else f"{user}@localhost"
    await bridge.profile_create(profile, profile_password, "")
    if profile_password:
        await bridge.profile_start_session(profile_password, profile)
    params: dict[str, Any] = {
        "JabberID": jid,
        "Password": password,
        "Force server": "127.0.0.1",
        "Force port": str(port or prosody.c2s_port),
        "check_certificate": "true" if check_certificate else "false",
    }
    for name, value in params.items():
        await bridge.param_set(name, value, "Connection", -1, profile)
    return jid


def unique(prefix: str) -> str:
    """A name no other test uses (Prosody accounts and profiles outlive a test)."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


class Recorder:
    """Collects the bridge signals it is subscribed to."""

    def __init__(self, bridge: BridgeClient, names: list[str]) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()
        for name in names:
            bridge.on_signal(name, self._make(name))

    def _make(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.events.append((name, args))
            self._changed.set()

        return record

    async def wait(
        self, name: str, pred: Callable[[tuple[Any, ...]], bool], timeout: float = 15
    ) -> tuple[Any, ...]:
        async def find() -> tuple[Any, ...]:
            while True:
                for received, args in self.events:
                    if received == name and pred(args):
                        return args
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)
