"""The history writer's bounded retry queue (core/messages.py HistoryWriter): a received message
whose history write fails for a transient reason (disk full...) is held and written again later,
never dropped silently; a fake clock drives the retries (no sleeping)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from twisted.internet import task
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core import messages
from libervia.backend.core.messages import HistoryQueueFull, HistoryWriter
from libervia.backend.memory.sqla import HistoryMessage, is_transient_error
from tests.conftest import aio
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

BOB = "bob@localhost/phone"


def disk_full() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "INSERT ...", {}, sqlite3.OperationalError("database or disk is full")
    )


class FlakyStorage:
    """``add_to_history`` failing with ``error`` while it is set; records what it stored."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.stored: list[str] = []
        self.calls = 0

    async def add_to_history(self, batch: list[HistoryMessage], profile: str) -> list[str]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        new = [m.uid for m in batch if m.uid not in self.stored]
        self.stored.extend(new)
        return new


def message(n: int) -> HistoryMessage:
    return HistoryMessage(
        source=JID("alice@localhost/pc"),
        dest=JID("bob@localhost"),
        timestamp=1_700_000_000.0 + n,
        message={"": f"m{n}"},
    )


class Setup:
    def __init__(self, max_retry: int = 100) -> None:
        self.clock = task.Clock()
        self.storage = FlakyStorage()
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.writer = HistoryWriter(
            self.storage,  # type: ignore[arg-type]
            self.clock,
            lambda p, d: self.reports.append((p, d)),
            max_retry=max_retry,
        )
        self.later: list[str] = []

    async def store(self, profile: str, msg: HistoryMessage) -> bool | None:
        return await self.writer.store(profile, msg, lambda: self.later.append(msg.uid))

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for _ in range(5):
            await asyncio.sleep(0)
        await self.writer.drain()


def test_transient_errors() -> None:
    assert is_transient_error(disk_full())
    assert is_transient_error(sqlite3.OperationalError("disk I/O error"))
    assert is_transient_error(OSError(28, "No space left on device"))
    integrity = sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE"))
    assert not is_transient_error(integrity)
    assert not is_transient_error(ValueError("bad"))


@aio
async def test_failed_write_is_held_then_written_with_backoff() -> None:
    s = Setup()
    first = message(0)
    assert await s.store("bob", first) is True
    s.storage.error = disk_full()
    held = [message(n) for n in range(1, 4)]
    results = await asyncio.gather(*(s.store("bob", m) for m in held))
    assert results == [None, None, None]
    assert s.writer.held == 3
    (profile, data), *_ = s.reports
    assert profile == "bob" and data["status"] == "retrying"
    assert "disk is full" in data["error"] and data["uids"] == [m.uid for m in held]
    # messages arriving while the history fails join the queue without a write attempt
    calls = s.storage.calls
    late = message(4)
    assert await s.store("bob", late) is None
    assert s.storage.calls == calls and s.writer.held == 4
    # first retry after RETRY_DELAY: still failing; the next one waits twice as long
    await s.advance(messages.RETRY_DELAY)
    assert s.storage.calls == calls + 1 and s.writer.held == 4
    await s.advance(messages.RETRY_DELAY * 2 - 0.01)
    assert s.storage.calls == calls + 1
    s.storage.error = None
    await s.advance(0.01)
    assert s.writer.held == 0
    expected = [first.uid] + [m.uid for m in held] + [late.uid]
    assert s.storage.stored == expected  # order kept
    assert s.later == expected[1:]  # message_new once stored
    assert s.reports[-1] == ("bob", {"status": "recovered", "error": "", "uids": [], "pending": 0})
    # back to normal: direct writes, no report
    assert await s.store("bob", message(9)) is True
    assert s.reports[-1][1]["status"] == "recovered"


@aio
async def test_queue_is_bounded_and_permanent_errors_are_not_retried() -> None:
    s = Setup(max_retry=2)
    s.storage.error = disk_full()
    batch = [message(n) for n in range(3)]
    results = await asyncio.gather(*(s.store("bob", m) for m in batch), return_exceptions=True)
    assert results[:2] == [None, None]
    assert isinstance(results[2], HistoryQueueFull)
    assert s.reports[-1][1]["status"] == "dropped"
    assert s.reports[-1][1]["uids"] == [batch[2].uid]
    # the error becomes permanent: held messages are reported dropped, never retried forever
    s.storage.error = sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("CHECK"))
    await s.advance(messages.RETRY_DELAY)
    assert s.writer.held == 0 and s.later == []
    assert [d["status"] for _, d in s.reports].count("dropped") == 3
    assert s.reports[-1][1]["status"] == "recovered"
    # a permanent error outside of the retry queue is raised to the caller, as before
    try:
        await s.store("bob", message(5))
    except sa.exc.IntegrityError:
        pass
    else:
        raise AssertionError("not raised")


@aio
async def test_profiles_are_reported_separately() -> None:
    s = Setup()
    s.storage.error = OSError(28, "No space left on device")
    await asyncio.gather(s.store("alice", message(0)), s.store("bob", message(1)))
    assert sorted(p for p, d in s.reports if d["status"] == "retrying") == ["alice", "bob"]
    s.storage.error = None
    await s.advance(messages.RETRY_DELAY)
    assert sorted(p for p, d in s.reports if d["status"] == "recovered") == ["alice", "bob"]


@aio
async def test_close_tries_once_more_then_logs_what_is_still_held(caplog) -> None:
    s = Setup()
    s.storage.error = disk_full()
    kept = message(0)
    await s.store("bob", kept)
    calls = s.storage.calls
    await s.writer.close()
    assert s.storage.calls == calls + 1
    assert "1 received message(s) could not be written" in caplog.text
    assert not s.clock.getDelayedCalls()
    # space back just before the shutdown: the last try writes them
    s = Setup()
    s.storage.error = disk_full()
    await s.store("bob", kept)
    s.storage.error = None
    await s.writer.close()
    assert s.storage.stored == [kept.uid] and s.later == [kept.uid]
    assert not s.clock.getDelayedCalls()


@aio
async def test_received_message_stored_once_disk_is_back(tmp_path: Path) -> None:
    """Through the host: the received message is held, ``history_error`` is emitted, then the
    message is stored and ``message_new`` is emitted when the disk is back."""
    reactor = FakeReactor()
    host = await started_host(tmp_path, reactor)
    try:
        client, stream = await logged_in(host, "bob", BOB)
        real = host.storage.add_to_history
        failing = True

        async def add_to_history(batch: Any, profile: str) -> list[str]:
            if failing:
                raise disk_full()
            return await real(batch, profile)

        host.messages.writer.storage = type(
            "S", (), {"add_to_history": staticmethod(add_to_history)}
        )
        stream.receive(
            f"<message from='alice@localhost/pc' to='{BOB}' type='chat' id='x'>"
            "<body>while full</body></message>"
        )
        for _ in range(50):
            await asyncio.sleep(0)
        await host.messages.writer.drain()
        emitted = host.bridge.emitted  # type: ignore[attr-defined]
        errors = [a for s_, a in emitted if s_ == "history_error"]
        assert len(errors) == 1 and json.loads(errors[0][0])["status"] == "retrying"
        assert errors[0][1] == "bob"
        assert not [a for s_, a in emitted if s_ == "message_new"]
        failing = False
        reactor.advance(messages.RETRY_DELAY)
        for _ in range(50):
            await asyncio.sleep(0)
        await host.messages.writer.drain()
        (new,) = [a for s_, a in emitted if s_ == "message_new"]
        assert new[4] == {"": "while full"} and new[8] == "bob"
        history = await host.history_get("bob", None, None, None, True, {})
        assert [m.message for m in history] == [{"": "while full"}]
        assert json.loads(emitted[-1][1][0])["status"] == "recovered"
    finally:
        await host.stop()
