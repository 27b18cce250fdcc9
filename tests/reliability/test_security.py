"""Security of the daemon: secrets at rest, file permissions, TLS certificate verification.

Real processes: a Prosody on 127.0.0.1 (STARTTLS with a self-signed certificate made by
openssl, tests/e2e/prosody.py), a private ``dbus-daemon`` and the daemon itself
(``libervia-backend fg``, tests/e2e/daemon.py) logging at DEBUG level into a file of its
``local_dir`` (its stderr is kept too). Fixtures live in this module (named ``sec_*``) so that
it neither depends on nor clashes with the fixtures of other reliability tests.

1. Secrets: a profile protected by a password gets an XMPP password, connects, and its
   parameters change (a new XMPP password, then a new profile password, with which it
   connects again). None of the four passwords may then be found in clear in any file under
   ``local_dir`` (``libervia.db``, ``-wal``, ``-shm``, backups, the log file), in the
   daemon's stderr, or in any D-Bus signal emitted meanwhile (a raw connection records every
   signal of the bus), as UTF-8, UTF-16 (both byte orders) or base64 (the three alignments);
   ``param_get_a_async`` answers ``********``.
   Canaries (the JID, stored and logged in clear) prove that each scan sees what was written.
2. Permissions: ``local_dir`` and the directories the daemon makes are 0700, its files
   (database and its WAL/SHM, log, pid file, backups, received files) 0600, whatever the
   umask of the user who started it (the test runs the daemon under umask 022).
3. TLS: a profile whose ``check_certificate`` was never set verifies the certificate: the
   self-signed one is refused with a clear ``TLSFailed`` error (naming the parameter) and the
   profile stays disconnected; once the profile trusts it (``check_certificate`` false) it
   connects, through TLS. ``tests/e2e/test_daemon_xmpp.py`` already covers an explicit
   ``check_certificate`` true; this covers the *default* and the trusted path after a refusal.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from libervia.backend.core import log as log_setup
from libervia.backend.memory import schema
from libervia.backend.plugins.plugin_xep_0234.application import FileTransfer
from libervia.frontends.bridge.client import BridgeClient, BridgeError
from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder
from tests.e2e.prosody import Prosody

pytestmark = pytest.mark.timeout(120)

TAG = uuid.uuid4().hex[:8]
#: non-ASCII, so that the encodings differ
XMPP_PASSWORD = f"xmpp-Pässwörd-{TAG}"
NEW_XMPP_PASSWORD = f"néw-xmpp-pass-{TAG}"
PROFILE_PASSWORD = f"prof-sécret-{TAG}"
NEW_PROFILE_PASSWORD = f"néw-prof-sécret-{TAG}"
SECRETS = (XMPP_PASSWORD, NEW_XMPP_PASSWORD, PROFILE_PASSWORD, NEW_PROFILE_PASSWORD)
LOG_FILE = "libervia-backend.log"  # in local_dir


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sec_prosody() -> Iterator[Prosody]:
    with Prosody() as server:
        yield server


@pytest.fixture(scope="module")
def sec_bus() -> Iterator[DBusDaemon]:
    with DBusDaemon() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def sec_daemon(sec_bus: DBusDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon at DEBUG level, logging into ``local_dir``, started under umask 022."""
    process = Daemon(
        tmp_path_factory.mktemp("security"),
        sec_bus.address,
        extra_config=f"log_file = {LOG_FILE}\n",
        log_level="DEBUG",
    )
    old = os.umask(0o022)  # a usual user umask: what the daemon creates must not depend on it
    try:
        process.start()
    finally:
        os.umask(old)
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, process.logs()


class SignalTap:
    """Every D-Bus signal of the bus, recorded by a raw connection (not the bridge client, which
    subscribes only to the signals it is asked for)."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, str]] = []
        self.bus: MessageBus | None = None

    async def open(self, address: str) -> None:
        self.bus = await MessageBus(bus_address=address).connect()
        reply = await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=["type='signal'"],
            )
        )
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        self.bus.add_message_handler(self._on_message)

    def _on_message(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL:
            self.signals.append((msg.member or "", repr(msg.body)))

    def text(self) -> str:
        return "\n".join(f"{member} {body}" for member, body in self.signals)

    def close(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()


# --- helpers ---------------------------------------------------------------------------------


def encodings(secret: str) -> list[bytes]:
    """The byte forms a secret could take in a file: UTF-8, UTF-16 (LE/BE), base64 at the
    three alignments of a longer base64 text (the characters that depend only on the secret)."""
    raw = secret.encode()
    forms = [raw, secret.encode("utf-16-le"), secret.encode("utf-16-be")]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        # drop the characters mixing the padding bytes in, and the last (partial) group
        start = -(-pad * 4 // 3)
        end = (pad + len(raw)) // 3 * 4
        forms.append(encoded[start:end])
    return forms


def find_secrets(data: bytes) -> list[str]:
    """The secrets (and the encodings) found in ``data``."""
    found = []
    for secret in SECRETS:
        for form in encodings(secret):
            if form in data:
                found.append(f"{secret!r} as {form!r}")
    return found


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def connected(bridge: BridgeClient, profile: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await bridge.is_connected(profile):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{profile} is not connected")
        await asyncio.sleep(0.05)


async def set_params(bridge: BridgeClient, profile: str, params: dict[str, str]) -> None:
    for name, value in params.items():
        await bridge.param_set(name, value, "Connection", -1, profile)


# --- 1. secrets at rest ----------------------------------------------------------------------


def test_encodings_find_what_they_should() -> None:
    """The scan itself: every form is found inside a longer text, none in unrelated text."""
    for secret in SECRETS:
        for prefix in (b"", b"x", b"xy", b"xyz"):
            data = prefix + secret.encode() + b" tail"
            assert find_secrets(base64.b64encode(data)), (secret, prefix)
            assert find_secrets(data.decode().encode("utf-16-le"))
            assert find_secrets(data.decode().encode("utf-16-be"))
    assert find_secrets(b"nothing here" * 100) == []


@aio
async def test_no_clear_password_in_database_logs_or_signals(
    sec_daemon: Daemon, sec_prosody: Prosody, sec_bus: DBusDaemon
) -> None:
    tap = SignalTap()
    await tap.open(sec_bus.address)
    bridge = await sec_daemon.bridge()
    try:
        recorder = Recorder(bridge, ["connected", "disconnected"])
        profile = f"sec{TAG}"
        jid = sec_prosody.adduser(profile, XMPP_PASSWORD)
        await bridge.profile_create(profile, PROFILE_PASSWORD, "")
        await bridge.profile_start_session(PROFILE_PASSWORD, profile)
        await set_params(
            bridge,
            profile,
            {
                "JabberID": jid,
                "Password": XMPP_PASSWORD,
                "Force server": "127.0.0.1",
                "Force port": str(sec_prosody.c2s_port),
                "check_certificate": "false",
            },
        )
        await bridge.connect(profile, PROFILE_PASSWORD, {})
        await connected(bridge, profile)
        await recorder.wait("connected", lambda a: a[1] == profile)
        # what frontends get for the password parameter: a mask, never the value
        masked = await bridge.param_get_a_async("Password", "Connection", "value", -1, profile)
        assert masked == "********"
        # change parameters while connected, the password too, then reconnect with it
        await bridge.param_set("autoconnect", "false", "Connection", -1, profile)
        await bridge.param_set("Password", NEW_XMPP_PASSWORD, "Connection", -1, profile)
        assert (
            await bridge.param_get_a_async("Password", "Connection", "value", -1, profile)
            == "********"
        )
        await bridge.disconnect(profile)
        # and the profile password (only the personal key is re-encrypted)
        await bridge.profile_password_set(PROFILE_PASSWORD, NEW_PROFILE_PASSWORD, profile)
        # the server is told the new password, so that the next login proves it was used
        sec_prosody.adduser(profile, NEW_XMPP_PASSWORD)
        await bridge.connect(profile, NEW_PROFILE_PASSWORD, {})
        await connected(bridge, profile)
        # a wrong profile password is refused without echoing it
        with pytest.raises(BridgeError) as raised:
            await bridge.profile_start_session(f"wrong-{PROFILE_PASSWORD}", profile)
        assert PROFILE_PASSWORD not in raised.value.message
        await bridge.disconnect(profile)
        await asyncio.sleep(0.3)  # the last signals and log lines
    finally:
        await bridge.close()

    # bridge signals (every one on the bus)
    assert any(member == "connected" for member, _ in tap.signals)
    assert profile in tap.text()  # the canary: the tap sees the daemon's signals
    assert find_secrets(tap.text().encode()) == []
    assert find_secrets(tap.text().encode("utf-16-le")) == []
    tap.close()

    # files under local_dir while the daemon runs: database, WAL, SHM, log file, backups
    local = sec_daemon.directory / "local"
    names = {p.name for p in files_under(local)}
    assert {"libervia.db", LOG_FILE} <= names, names
    log_text = (local / LOG_FILE).read_text(errors="replace")
    assert " DEBUG " in log_text and jid in log_text  # DEBUG level, and the canary
    db_bytes = b"".join(
        p.read_bytes() for p in files_under(local) if p.name.startswith("libervia.db")
    )
    assert jid.encode() in db_bytes  # the canary: the JID is stored in clear
    for path in files_under(local):
        assert find_secrets(path.read_bytes()) == [], path
    # the daemon's stderr (tracebacks would land there)
    assert find_secrets(sec_daemon.log.read_bytes()) == []


# --- 2. permissions --------------------------------------------------------------------------


@aio
async def test_files_are_private(sec_daemon: Daemon) -> None:
    """What the daemon created under ``local_dir`` (started under umask 022) is the user's
    only."""
    bridge = await sec_daemon.bridge()
    await bridge.close()
    local = sec_daemon.directory / "local"
    assert local.is_dir()
    created = [local, *local.rglob("*")]
    expected = {
        "libervia.db",
        "libervia-backend.pid",
        LOG_FILE,
    }
    assert expected <= {p.name for p in created}, sorted(p.name for p in created)
    wrong = {
        str(p.relative_to(sec_daemon.directory)): oct(mode(p))
        for p in created
        if mode(p) != (0o700 if p.is_dir() else 0o600)
    }
    assert wrong == {}


def test_log_file_is_private(tmp_path: Path) -> None:
    """``log.configure`` creates the log file 0600 and makes an existing one 0600."""
    import logging

    old_umask = os.umask(0o022)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        new = tmp_path / "new.log"
        log_setup.configure("INFO", new)
        logging.getLogger("test").info("hello")
        assert mode(new) == 0o600
        existing = tmp_path / "old.log"
        existing.write_text("old\n")
        existing.chmod(0o644)
        log_setup.configure("INFO", existing)
        assert mode(existing) == 0o600 and existing.read_text() == "old\n"
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        os.umask(old_umask)


def test_download_directory_is_private(tmp_path: Path) -> None:
    """The default download directory is made 0700; the partial file is 0600."""
    old_umask = os.umask(0o022)
    try:
        downloads = tmp_path / "local" / "downloads"
        app = FileTransfer(SimpleNamespace(host=None, download_dir=downloads))  # type: ignore[arg-type]
        transfer = SimpleNamespace(
            info=SimpleNamespace(name="report.pdf", hashes={}),
            path=None,
            partial=None,
            file=None,
            reserved=False,
        )
        app.prepare_file(transfer, {})  # type: ignore[arg-type]
        transfer.file.close()
    finally:
        os.umask(old_umask)
    assert mode(downloads) == 0o700
    assert mode(downloads.parent) == 0o700  # local_dir, when the downloads made it
    assert mode(transfer.partial) == 0o600
    assert mode(transfer.path) == 0o600  # the reserved final name


def test_database_backup_is_private(tmp_path: Path) -> None:
    db = tmp_path / "libervia.db"
    sqlite3.connect(db).close()
    db.chmod(0o600)
    old_umask = os.umask(0o022)
    try:
        backup = schema.backup_sqlite(db, "0001")
    finally:
        os.umask(old_umask)
    assert mode(backup) == 0o600


# --- 3. TLS ----------------------------------------------------------------------------------


@aio
async def test_self_signed_certificate_refused_unless_trusted(
    sec_daemon: Daemon, sec_prosody: Prosody
) -> None:
    bridge = await sec_daemon.bridge()
    try:
        profile = f"tls{TAG}"
        jid = sec_prosody.adduser(profile, "tls-pass")
        await bridge.profile_create(profile, "", "")
        # check_certificate never set: its default applies
        assert (
            await bridge.param_get_a_async("check_certificate", "Connection", "value", -1, profile)
            == "true"
        )
        await set_params(
            bridge,
            profile,
            {
                "JabberID": jid,
                "Password": "tls-pass",
                "Force server": "127.0.0.1",
                "Force port": str(sec_prosody.c2s_port),
            },
        )
        with pytest.raises(BridgeError) as raised:
            await bridge.connect(profile, "", {})
        error: Any = raised.value
        assert error.code == "TLSFailed", error
        assert "certificate" in error.message and "check_certificate" in error.message
        assert "Traceback" not in error.message
        await asyncio.sleep(1)  # no reconnection loop behind the user's back
        assert await bridge.is_connected(profile) is False

        # trusted explicitly by the profile: the same server is accepted, over TLS
        await bridge.param_set("check_certificate", "false", "Connection", -1, profile)
        assert await bridge.connect(profile, "", {}) is False
        await connected(bridge, profile)
        await bridge.disconnect(profile)
    finally:
        await bridge.close()
