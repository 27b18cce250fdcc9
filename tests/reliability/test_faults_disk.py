"""Faults: the disk holding the database fills up while messages arrive.

``local_dir`` (database, pid file) is a small tmpfs mounted by the test. Once it is full, the
messages received cannot be written: the daemon reports it through the bridge
(``history_error``, status ``retrying``) and in its log, keeps running and serving what was
stored; when space is back, the held messages are written (``message_new`` for each, then
``history_error`` with status ``recovered``): every message is in the history once.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import aio
from tests.dbus import DBusDaemon
from tests.e2e.daemon import Daemon, Recorder, make_account, unique
from tests.e2e.prosody import Prosody
from tests.e2e.test_carbons_mam import RawClient
from tests.reliability.conftest import integrity, until

pytestmark = pytest.mark.timeout(120)

BEFORE = 5
WHILE_FULL = 400
#: ~1 KiB bodies: the messages written while full need much more than the WAL already has
PADDING = "x" * 1000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (skipped only when the OS refuses the mount, with its reason)."""
    mount_point = tmp_path / "daemon" / "local"
    mount_point.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs was refused: {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` with a file; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            block = b"\0" * size
            try:
                while True:
                    f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return filler


@aio
async def test_disk_full_while_writing_history(
    prosody: Prosody, bus: DBusDaemon, small_disk: Path
) -> None:
    daemon = Daemon(small_disk.parent, bus.address)
    daemon.start()
    raw: RawClient | None = None
    try:
        bridge = await daemon.bridge()
        recorder = Recorder(bridge, ["message_new", "history_error"])
        bob = unique("bob")
        bob_jid = await make_account(bridge, prosody, bob, bob)
        alice_jid = prosody.adduser(unique("alice"), "xmpp-pass")
        await bridge.connect(bob, "", {})
        raw = await RawClient.login(prosody, alice_jid, "xmpp-pass", "pc")

        def news() -> list[str]:
            return [a[4][""][:9] for n, a in recorder.events if n == "message_new" and a[8] == bob]

        for i in range(BEFORE):
            raw.message(bob_jid, f"before-{i:02d}")
        await until(lambda: len(news()) == BEFORE, 20, "stored before")

        filler = fill(small_disk)
        full_at = time.monotonic()
        assert os.statvfs(small_disk).f_bavail == 0
        for i in range(WHILE_FULL):
            raw.message(bob_jid, f"full-{i:04d} {PADDING}")
        error = await recorder.wait(
            "history_error", lambda a: json.loads(a[0])["status"] == "retrying", 30
        )
        reported = time.monotonic() - full_at
        data = json.loads(error[0])
        assert error[1] == bob and "full" in data["error"], data
        assert "the history cannot be written" in daemon.logs()
        # the daemon keeps running and serving: what was stored is still there
        assert await bridge.is_connected(bob)
        rows = await bridge.history_get("", "", -1, True, {}, bob)
        assert [r[4][""] for r in rows[:BEFORE]] == [f"before-{i:02d}" for i in range(BEFORE)]
        stored_while_full = len(rows)
        await asyncio.sleep(1)

        filler.unlink()
        freed = time.monotonic()
        await recorder.wait(
            "history_error", lambda a: json.loads(a[0])["status"] == "recovered", 60
        )
        recovered = time.monotonic() - freed
        await until(lambda: len(news()) == BEFORE + WHILE_FULL, 20, "all signalled")
        rows = await bridge.history_get("", "", -1, True, {}, bob)
        bodies = sorted(r[4][""].split(" ")[0] for r in rows)
        expected = sorted(
            [f"before-{i:02d}" for i in range(BEFORE)]
            + [f"full-{i:04d}" for i in range(WHILE_FULL)]
        )
        assert bodies == expected
        errors = [json.loads(a[0]) for n, a in recorder.events if n == "history_error"]
        dropped = [e for e in errors if e["status"] == "dropped"]
        assert not dropped, dropped
        held = sum(len(e["uids"]) for e in errors if e["status"] == "retrying")
        # and writing goes on normally
        raw.message(bob_jid, "after-00")
        await until(lambda: "after-00" in news(), 20, "stored after")
        await bridge.close()
        assert daemon.stop() == 0, daemon.logs()
        assert integrity(small_disk / "libervia.db") == "ok"
        print(
            f"\ndisk full: reported through the bridge {reported:.2f} s after; "
            f"{stored_while_full} messages readable meanwhile; {held} held in memory; "
            f"recovered {recovered:.2f} s after space came back; {BEFORE + WHILE_FULL + 1} "
            "messages, each once"
        )
    finally:
        if raw is not None:
            raw.close()
        if daemon.process is not None:
            daemon.stop()
