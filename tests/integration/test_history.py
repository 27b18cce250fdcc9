"""Message history storage (``libervia.backend.memory.storage.history``) through ``Storage``.

Every test runs on SQLite and on a real PostgreSQL (see the ``storage`` fixture). Timestamps are
fixed floats; message uids are chosen by the tests when the order of the results is asserted.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotFound, ProfileUnknownError
from libervia.backend.memory.sqla import Direction, HistoryMessage, Storage
from libervia.backend.memory.sqla_mapping import History, Message, MessageType, Subject, Thread
from libervia.backend.memory.storage.history import BATCH_SIZE
from tests.conftest import aio, run

PROFILE = "alice"
OTHER_PROFILE = "bob"

T0 = 1_700_000_000.0

ME = JID("me@example.org/laptop")
ME_PHONE = JID("me@example.org/phone")
ME_BARE = JID("me@example.org")
ALICE = JID("alice@example.net")
ALICE_HOME = JID("alice@example.net/home")
ALICE_WORK = JID("alice@example.net/work")
BOB = JID("bob@example.com/pc")
ROOM = JID("room@muc.example.org")
ROOM_ALICE = JID("room@muc.example.org/alice")
NEWS = JID("news.example.org")


@pytest.fixture
def st(storage: Storage) -> Storage:
    """The storage, with the profile PROFILE created."""
    run(storage.create_profile(PROFILE))
    return storage


def conversation() -> dict[str, HistoryMessage]:
    """A small history, one message per second from T0 + 1, keyed by uid.

    m1-m4: with alice (two resources, both directions); m5-m6: with bob; m7: group chat; m8: a
    local info message; m9: a headline. m10: a body with FTS5 query syntax in it.
    """
    messages = [
        HistoryMessage(ALICE_HOME, ME, T0 + 1, message={"": "hello from home"}, stanza_id="s-1"),
        HistoryMessage(ME, ALICE_HOME, T0 + 2, message={"": "hi alice"}, origin_id="o-2"),
        HistoryMessage(ALICE_WORK, ME, T0 + 3, message={"": "Hello from WORK"}),
        HistoryMessage(ME_PHONE, ALICE_WORK, T0 + 4, message={"": "answer to work"}),
        HistoryMessage(BOB, ME, T0 + 5, message={"": "bob says hello"}, stanza_id="s-5"),
        HistoryMessage(
            ME, BOB, T0 + 6, type=MessageType.NORMAL, message={"": "reply to bob", "fr": "salut"}
        ),
        HistoryMessage(
            ROOM_ALICE,
            ME,
            T0 + 7,
            type=MessageType.GROUPCHAT,
            message={"": "room message hello"},
            stanza_id="room-7",
        ),
        HistoryMessage(ME_BARE, ME, T0 + 8, type=MessageType.INFO, message={"": "bob is away"}),
        HistoryMessage(NEWS, ME_BARE, T0 + 9, type=MessageType.HEADLINE, subject={"": "news"}),
        HistoryMessage(
            BOB,
            ME,
            T0 + 10,
            message={"": 'he said "yes" AND then NEAR(no) - ok* col:val'},
        ),
    ]
    for index, message in enumerate(messages, 1):
        message.uid = f"m{index}"
    return {m.uid: m for m in messages}


async def seed(storage: Storage, profile: str = PROFILE) -> dict[str, HistoryMessage]:
    messages = conversation()
    assert await storage.add_to_history(list(messages.values()), profile) == list(messages)
    return messages


async def get_uids(storage: Storage, profile: str = PROFILE, **kwargs: Any) -> list[str]:
    """Uids of ``history_get``'s result, in the order returned."""
    return [m.uid for m in await storage.history_get(profile, **kwargs)]


async def scalar(storage: Storage, stmt: Any) -> Any:
    async with storage.db.transaction() as session:
        return await session.scalar(stmt)


async def rows_of(storage: Storage, uid: str) -> dict[str, int]:
    """How many rows each history table holds for the message ``uid``."""
    counts = {
        "history": await scalar(storage, sa.select(sa.func.count()).where(History.uid == uid))
    }
    for table in (Message, Subject, Thread):
        counts[table.__tablename__] = await scalar(
            storage, sa.select(sa.func.count()).where(table.history_uid == uid)
        )
    return counts


# --- writing ----------------------------------------------------------------------------------


@aio
async def test_one_message_round_trip(st: Storage) -> None:
    """Every field of a message (bodies and subjects per language, thread, extra JSON, resources,
    ids, timestamps, type) is read back unchanged, and the call returns the stored uid."""
    original = HistoryMessage(
        source=ALICE_HOME,
        dest=ME,
        timestamp=T0 + 0.125,
        received_timestamp=T0 + 2.5,
        type=MessageType.NORMAL,
        message={"": "no language", "en": "hello", "fr": "salut ça va ?"},
        subject={"": "subject", "de": "Betreff"},
        uid="first",
        stanza_id="stanza-1",
        origin_id="origin-1",
        thread="thread-1",
        thread_parent="parent-thread",
        extra={"encrypted": True, "nested": {"list": [1, 2.5, "é", None]}, "empty": {}},
    )
    assert await st.add_to_history(original, PROFILE) == ["first"]

    correction = HistoryMessage(
        ALICE_HOME, ME, T0 + 1, message={"": "hello!"}, uid="second", update_uid="first"
    )
    assert await st.add_to_history(correction, PROFILE) == ["second"]

    [read, read_correction] = await st.history_get(PROFILE)
    assert read == original
    assert read.source.full() == "alice@example.net/home"
    assert read.dest.full() == "me@example.org/laptop"
    assert read_correction == correction
    assert read_correction.update_uid == "first"


@aio
async def test_minimal_message_round_trip(st: Storage) -> None:
    """A message with bare JIDs and no body, subject, thread nor extra is read back with empty
    dicts and None (not empty strings, not a JSON null)."""
    original = HistoryMessage(ALICE, ME_BARE, T0, uid="bare")
    assert await st.add_to_history([original], PROFILE) == ["bare"]
    [read] = await st.history_get(PROFILE)
    assert read == original
    assert read.source.resource is None and read.dest.resource is None
    assert read.message == {} and read.subject == {} and read.extra == {}
    assert read.thread is None and read.thread_parent is None
    assert await rows_of(st, "bare") == {"history": 1, "message": 0, "subject": 0, "thread": 0}


@aio
async def test_empty_batch(st: Storage) -> None:
    """Storing an empty batch stores nothing and returns no uid."""
    assert await st.add_to_history([], PROFILE) == []
    assert await st.history_get(PROFILE) == []


def big_batch(count: int) -> list[HistoryMessage]:
    """``count`` varied messages, alternating directions and resources."""
    batch = []
    for i in range(count):
        peer = ALICE_HOME if i % 3 else ALICE_WORK
        source, dest = (peer, ME) if i % 2 else (ME_PHONE if i % 5 else ME, peer)
        message = HistoryMessage(
            source,
            dest,
            T0 + i,
            uid=f"big-{i:05d}",
            stanza_id=f"s-{i}" if i % 4 else None,
            origin_id=f"o-{i}" if i % 2 == 0 else None,
            message={"": f"message number {i} word{i}"},
            extra={"index": i} if i % 10 == 0 else {},
        )
        if i % 100 == 0:
            message.subject = {"": f"subject {i}", "fr": f"sujet {i}"}
            message.message["fr"] = f"message numéro {i}"
        if i % 7 == 0:
            message.thread = f"thread-{i // 7}"
            message.thread_parent = f"thread-{i // 7 - 1}" if i else None
        batch.append(message)
    return batch


@aio
async def test_batch_larger_than_insert_chunk(st: Storage) -> None:
    """1,200 messages (more than BATCH_SIZE) are stored in one call: every uid is returned in
    order, and every message of every chunk is read back complete, in chronological order."""
    batch = big_batch(1200)
    assert len(batch) > 2 * BATCH_SIZE
    assert await st.add_to_history(batch, PROFILE) == [m.uid for m in batch]

    assert await st.history_get(PROFILE) == batch
    # bodies of the last chunk are searchable too
    assert await get_uids(st, search="word1150") == ["big-01150"]
    assert await get_uids(st, search="numéro 1100") == ["big-01100"]
    assert await rows_of(st, "big-00700") == {
        "history": 1,
        "message": 2,
        "subject": 2,
        "thread": 1,
    }


# --- idempotence ------------------------------------------------------------------------------


@aio
async def test_same_batch_twice(st: Storage) -> None:
    """Storing the same batch again stores nothing (no new row, no duplicated body) and returns
    no uid."""
    batch = big_batch(BATCH_SIZE + 100)
    assert await st.add_to_history(batch, PROFILE) == [m.uid for m in batch]
    assert await st.add_to_history(batch, PROFILE) == []
    assert await st.add_to_history(batch[7], PROFILE) == []

    assert await st.history_get(PROFILE) == batch
    assert await scalar(st, sa.select(sa.func.count()).select_from(Message)) == len(batch) + 6
    assert await scalar(st, sa.select(sa.func.count()).select_from(Thread)) == 86
    assert await get_uids(st, search="word7") == ["big-00007"]


@aio
async def test_duplicate_stanza_id(st: Storage) -> None:
    """A message with the stanza id of a stored one between the same bare JIDs is skipped, even
    with another uid and other resources; the same stanza id between other entities is not a
    duplicate."""
    first = HistoryMessage(ALICE_HOME, ME, T0, message={"": "first"}, uid="a", stanza_id="s1")
    assert await st.add_to_history(first, PROFILE) == ["a"]

    dup = HistoryMessage(ALICE_WORK, ME_PHONE, T0 + 1, message={"": "dup"}, uid="b", stanza_id="s1")
    assert await st.add_to_history(dup, PROFILE) == []

    from_bob = HistoryMessage(BOB, ME, T0 + 2, uid="c", stanza_id="s1")
    reverse = HistoryMessage(ME, ALICE_HOME, T0 + 3, uid="d", stanza_id="s1")
    assert await st.add_to_history([from_bob, reverse], PROFILE) == ["c", "d"]

    assert await st.history_get(PROFILE) == [first, from_bob, reverse]
    assert await rows_of(st, "b") == {"history": 0, "message": 0, "subject": 0, "thread": 0}
    assert await get_uids(st, search="dup") == []


@aio
async def test_duplicate_origin_id(st: Storage) -> None:
    """A message with the origin id of a stored one between the same bare JIDs is skipped (our
    own message coming back as a carbon, say)."""
    sent = HistoryMessage(ME, ALICE_HOME, T0, message={"": "sent"}, uid="a", origin_id="o1")
    assert await st.add_to_history(sent, PROFILE) == ["a"]

    carbon = HistoryMessage(
        ME_PHONE, ALICE_WORK, T0 + 1, message={"": "x"}, uid="b", origin_id="o1"
    )
    assert await st.add_to_history(carbon, PROFILE) == []

    assert await st.history_get(PROFILE) == [sent]


@aio
async def test_duplicates_are_per_profile(st: Storage) -> None:
    """The same message (same uid excepted) is stored in each profile's history, and each profile
    only reads its own."""
    await st.create_profile(OTHER_PROFILE)
    mine = HistoryMessage(ALICE_HOME, ME, T0, uid="mine", stanza_id="s1", origin_id="o1")
    theirs = HistoryMessage(ALICE_HOME, ME, T0, uid="theirs", stanza_id="s1", origin_id="o1")
    assert await st.add_to_history(mine, PROFILE) == ["mine"]
    assert await st.add_to_history(theirs, OTHER_PROFILE) == ["theirs"]
    assert await get_uids(st, PROFILE) == ["mine"]
    assert await get_uids(st, OTHER_PROFILE) == ["theirs"]


@aio
async def test_duplicate_fills_missing_stanza_id(st: Storage) -> None:
    """Our message stored without stanza id gets the one of its archived copy (same origin id):
    the copy itself is skipped, and ``last_stanza_id`` then finds the stored message. A stored
    stanza id is never replaced, and only the matching message of the profile is filled."""
    await st.create_profile(OTHER_PROFILE)
    live = HistoryMessage(ME, ALICE_HOME, T0, message={"": "sent live"}, uid="live", origin_id="o1")
    to_bob = HistoryMessage(ME, BOB, T0 + 1, uid="to-bob", origin_id="o1")
    assert await st.add_to_history([live, to_bob], PROFILE) == ["live", "to-bob"]
    other_profile = HistoryMessage(ME, ALICE_HOME, T0, uid="other", origin_id="o1")
    assert await st.add_to_history(other_profile, OTHER_PROFILE) == ["other"]
    assert await st.history_get(PROFILE, last_stanza_id=True) == []

    archived = HistoryMessage(
        ME, ALICE_HOME, T0 + 0.5, message={"": "from MAM"}, uid="mam", origin_id="o1"
    )
    archived.stanza_id = "archive-1"
    assert await st.add_to_history(archived, PROFILE) == []

    [read, read_to_bob] = await st.history_get(PROFILE)
    assert read.uid == "live"
    assert read.stanza_id == "archive-1"
    assert read.message == {"": "sent live"}
    assert read.timestamp == T0
    assert read_to_bob.stanza_id is None
    assert (await st.history_get(OTHER_PROFILE))[0].stanza_id is None
    assert await get_uids(st, last_stanza_id=True) == ["live"]

    again = HistoryMessage(ME, ALICE_HOME, T0, uid="mam-2", origin_id="o1", stanza_id="archive-2")
    assert await st.add_to_history(again, PROFILE) == []
    assert (await st.history_get(PROFILE, last_stanza_id=True))[0].stanza_id == "archive-1"


@aio
async def test_duplicates_inside_one_batch(st: Storage) -> None:
    """Within one batch, later copies of a message (by stanza id or origin id) are skipped, the
    first one is stored, and a copy bringing a stanza id fills the one of the stored copy."""
    first = HistoryMessage(
        ALICE_HOME, ME, T0, message={"": "first"}, uid="a", stanza_id="s1", origin_id="o1"
    )
    by_stanza = HistoryMessage(ALICE_HOME, ME, T0 + 1, message={"": "b"}, uid="b", stanza_id="s1")
    by_origin = HistoryMessage(ALICE_WORK, ME, T0 + 2, message={"": "c"}, uid="c", origin_id="o1")
    other = HistoryMessage(ALICE_HOME, ME, T0 + 3, message={"": "other"}, uid="d", stanza_id="s2")
    sent = HistoryMessage(ME, ALICE_HOME, T0 + 4, uid="e", origin_id="o5")
    sent_archived = HistoryMessage(ME, ALICE_HOME, T0 + 4, uid="f", origin_id="o5", stanza_id="s5")
    batch = [first, by_stanza, by_origin, other, sent, sent_archived]

    assert await st.add_to_history(batch, PROFILE) == ["a", "d", "e"]
    read = await st.history_get(PROFILE)
    assert [m.uid for m in read] == ["a", "d", "e"]
    assert read[0] == first and read[1] == other
    assert read[2].stanza_id == "s5"
    for uid in "bcf":
        assert await rows_of(st, uid) == {"history": 0, "message": 0, "subject": 0, "thread": 0}


@aio
async def test_same_uid_twice_in_one_batch(st: Storage) -> None:
    """A uid repeated in a batch is stored once, from its first occurrence (bodies, subject and
    thread included), and returned once."""
    first = HistoryMessage(ALICE_HOME, ME, T0, message={"": "first"}, uid="a")
    again = HistoryMessage(
        ALICE_HOME,
        ME,
        T0 + 1,
        message={"": "again"},
        subject={"": "s"},
        uid="a",
        thread="t",
    )
    other = HistoryMessage(ALICE_HOME, ME, T0 + 2, message={"": "other"}, uid="b", thread="t")

    assert await st.add_to_history([first, again, other, first], PROFILE) == ["a", "b"]
    assert await st.history_get(PROFILE) == [first, other]
    assert await rows_of(st, "a") == {"history": 1, "message": 1, "subject": 0, "thread": 0}
    assert await get_uids(st, search="again") == []


@aio
async def test_duplicate_across_insert_chunks(st: Storage) -> None:
    """A duplicate (by stanza id) in a later insert chunk of the same batch than its first copy
    is skipped."""
    batch = [
        HistoryMessage(ALICE_HOME, ME, T0 + i, uid=f"u{i:04d}", stanza_id=f"s{i}")
        for i in range(BATCH_SIZE + 200)
    ]
    batch[BATCH_SIZE + 100].stanza_id = "s3"
    expected = [m.uid for i, m in enumerate(batch) if i != BATCH_SIZE + 100]
    assert await st.add_to_history(batch, PROFILE) == expected
    assert await get_uids(st) == expected


# --- validation -------------------------------------------------------------------------------


@aio
async def test_unknown_profile(st: Storage) -> None:
    """Every history call on a profile that does not exist raises ProfileUnknownError."""
    message = HistoryMessage(ALICE, ME, T0)
    with pytest.raises(ProfileUnknownError):
        await st.add_to_history(message, "nobody")
    with pytest.raises(ProfileUnknownError):
        await st.history_get("nobody")
    with pytest.raises(ProfileUnknownError):
        await st.delete_history([message.uid], "nobody")
    assert await st.history_get(PROFILE) == []


@aio
async def test_message_without_host(st: Storage) -> None:
    """A message lacking its source or destination (or their host) is refused with
    InvalidInput, and nothing of its batch is stored."""
    no_host = JID("alice@example.net/home")
    no_host.host = ""
    valid = HistoryMessage(ALICE, ME, T0, message={"": "valid"})
    for bad in (
        HistoryMessage(None, ME, T0 + 1),  # type: ignore[arg-type]
        HistoryMessage(ALICE, None, T0 + 1),  # type: ignore[arg-type]
        HistoryMessage(no_host, ME, T0 + 1),
        HistoryMessage(ME, no_host, T0 + 1),
    ):
        with pytest.raises(InvalidInput):
            await st.add_to_history([valid, bad], PROFILE)
    assert await st.history_get(PROFILE) == []
    assert await get_uids(st, search="valid") == []


# --- reading: filters -------------------------------------------------------------------------


@aio
async def test_all_in_chronological_order(st: Storage) -> None:
    """Without filter, the whole history of the profile comes back, oldest first, even when it
    was stored in another order."""
    messages = conversation()
    batch = list(messages.values())
    assert await st.add_to_history(batch[::-1], PROFILE) == [m.uid for m in batch[::-1]]
    assert await st.history_get(PROFILE) == batch


@aio
async def test_peer(st: Storage) -> None:
    """``peer`` bare: messages exchanged with any of its resources, both directions; with a
    resource: only the messages from/to that resource."""
    await seed(st)
    assert await get_uids(st, peer=ALICE) == ["m1", "m2", "m3", "m4"]
    assert await get_uids(st, peer=ALICE_HOME) == ["m1", "m2"]
    assert await get_uids(st, peer=ALICE_WORK) == ["m3", "m4"]
    assert await get_uids(st, peer=JID("alice@example.net/phone")) == []
    assert await get_uids(st, peer=JID("bob@example.com")) == ["m5", "m6", "m10"]
    assert await get_uids(st, peer=ROOM) == ["m7"]
    # a resource of our own account is a peer like any other
    assert await get_uids(st, peer=ME_PHONE) == ["m4"]
    assert await get_uids(st, peer=JID("nobody@example.net")) == []


@aio
async def test_direction(st: Storage) -> None:
    """With ``peer``, ``direction`` "in" keeps what the peer sent, "out" what was sent to it."""
    await seed(st)
    assert await get_uids(st, peer=ALICE, direction="in") == ["m1", "m3"]
    assert await get_uids(st, peer=ALICE, direction=Direction.OUT) == ["m2", "m4"]
    assert await get_uids(st, peer=ALICE_WORK, direction=Direction.IN) == ["m3"]
    assert await get_uids(st, peer=ALICE_WORK, direction="out") == ["m4"]
    assert await get_uids(st, peer=ALICE, direction="in", limit=1) == ["m3"]


@aio
async def test_invalid_direction(st: Storage) -> None:
    """``direction`` without ``peer``, or an unknown direction, raises InvalidInput."""
    await seed(st)
    with pytest.raises(InvalidInput):
        await st.history_get(PROFILE, direction="in")
    with pytest.raises(InvalidInput):
        await st.history_get(PROFILE, direction=Direction.OUT)
    with pytest.raises(InvalidInput):
        await st.history_get(PROFILE, peer=ALICE, direction="sideways")


@aio
async def test_from_and_to(st: Storage) -> None:
    """``from_jid`` / ``to_jid`` select by sender / recipient (resource-exact when given); both
    together select the conversation between them (``between=True``) or one way only."""
    await seed(st)
    assert await get_uids(st, from_jid=ALICE) == ["m1", "m3"]
    assert await get_uids(st, from_jid=ME_PHONE) == ["m4"]
    assert await get_uids(st, to_jid=JID("bob@example.com")) == ["m6"]
    assert await get_uids(st, to_jid=ME_BARE) == ["m1", "m3", "m5", "m7", "m8", "m9", "m10"]
    assert await get_uids(st, to_jid=ME) == ["m1", "m3", "m5", "m7", "m8", "m10"]

    assert await get_uids(st, from_jid=ALICE, to_jid=ME_BARE) == ["m1", "m2", "m3", "m4"]
    assert await get_uids(st, from_jid=ALICE, to_jid=ME_BARE, between=False) == ["m1", "m3"]
    assert await get_uids(st, from_jid=ALICE_WORK, to_jid=ME_BARE) == ["m3", "m4"]
    assert await get_uids(st, from_jid=ALICE_WORK, to_jid=ME_BARE, between=False) == ["m3"]
    assert await get_uids(st, from_jid=ME_BARE, to_jid=ALICE, between=False) == ["m2", "m4"]
    assert await get_uids(st, from_jid=ALICE, to_jid=ME_PHONE) == ["m4"]
    assert await get_uids(st, from_jid=ALICE, to_jid=ME_PHONE, between=False) == []


@aio
async def test_before_and_after(st: Storage) -> None:
    """``before`` / ``after`` are strict timestamp bounds, combinable with each other and with
    the other filters."""
    await seed(st)
    assert await get_uids(st, before=T0 + 3) == ["m1", "m2"]
    assert await get_uids(st, before=T0 + 2.5) == ["m1", "m2"]
    assert await get_uids(st, after=T0 + 8) == ["m9", "m10"]
    assert await get_uids(st, after=T0 + 2, before=T0 + 5) == ["m3", "m4"]
    assert await get_uids(st, after=T0 + 3, before=T0 + 4) == []
    assert await get_uids(st, peer=ALICE, after=T0 + 1.5) == ["m2", "m3", "m4"]
    assert await get_uids(st, before=T0 + 1) == []


@aio
async def test_before_uid_and_after_uid(st: Storage) -> None:
    """``before_uid`` / ``after_uid`` bound by the timestamp of a stored message (excluded);
    an unknown uid, or one of another profile, raises NotFound."""
    await seed(st)
    assert await get_uids(st, before_uid="m3") == ["m1", "m2"]
    assert await get_uids(st, after_uid="m8") == ["m9", "m10"]
    assert await get_uids(st, after_uid="m2", before_uid="m6") == ["m3", "m4", "m5"]
    assert await get_uids(st, peer=ALICE, before_uid="m6") == ["m1", "m2", "m3", "m4"]
    assert await get_uids(st, peer=ALICE, before_uid="m4", limit=2) == ["m2", "m3"]
    assert await get_uids(st, after_uid="m10") == []

    with pytest.raises(NotFound):
        await st.history_get(PROFILE, before_uid="unknown")
    with pytest.raises(NotFound):
        await st.history_get(PROFILE, after_uid="unknown")
    await st.create_profile(OTHER_PROFILE)
    await st.add_to_history(HistoryMessage(ALICE, ME, T0 + 5.5, uid="foreign"), OTHER_PROFILE)
    with pytest.raises(NotFound):
        await st.history_get(PROFILE, before_uid="foreign")


@aio
async def test_paging_with_equal_timestamps(st: Storage) -> None:
    """Paging back with ``before_uid`` (or forward with ``after_uid``) never loses nor repeats a
    message when several share a timestamp (archives often have whole-second timestamps), and
    ``asc`` and ``desc`` agree on the order of such messages."""
    batch = [HistoryMessage(ALICE, ME, T0, uid=f"u{i}") for i in range(7)]
    batch += [HistoryMessage(ALICE, ME, T0 + 1, uid=f"v{i}") for i in range(3)]
    await st.add_to_history(batch, PROFILE)
    everything = await get_uids(st)
    assert sorted(everything) == sorted(m.uid for m in batch)
    assert await get_uids(st, order="asc") == everything
    assert await get_uids(st, peer=ALICE) == everything

    for peer in (None, ALICE):
        pages: list[str] = []
        page = await get_uids(st, peer=peer, limit=3)
        while page:
            assert len(page) <= 3
            pages = page + pages
            page = await get_uids(st, peer=peer, limit=3, before_uid=page[0])
        assert pages == everything

        pages = []
        page = await get_uids(st, peer=peer, limit=3, order="asc")
        while page:
            pages += page
            page = await get_uids(st, peer=peer, limit=3, order="asc", after_uid=page[-1])
        assert pages == everything


@aio
async def test_search(st: Storage) -> None:
    """Full-text search: case-insensitive, every word must match (in any order), in any language
    body; combinable with other filters."""
    await seed(st)
    assert await get_uids(st, search="hello") == ["m1", "m3", "m5", "m7"]
    assert await get_uids(st, search="HELLO") == ["m1", "m3", "m5", "m7"]
    assert await get_uids(st, search="hello work") == ["m3"]
    assert await get_uids(st, search="  work   hello ") == ["m3"]
    assert await get_uids(st, search="hello nothere") == []
    assert await get_uids(st, search="hel") == []
    assert await get_uids(st, search="salut") == ["m6"]
    assert await get_uids(st, search="hello", peer=ALICE) == ["m1", "m3"]
    assert await get_uids(st, search="hello", limit=2) == ["m5", "m7"]
    assert await get_uids(st, search="hello", types=["groupchat"]) == ["m7"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # operators are plain words: "OR" must be in the text too, "-" does not exclude
        ("hello OR nothere", []),
        ("hello NOT home", []),
        ("-work hello", ["m3"]),
        ("hello -", ["m1", "m3", "m5", "m7"]),
        ("hello*", ["m1", "m3", "m5", "m7"]),
        ("hel*", []),
        ('"hello', ["m1", "m3", "m5", "m7"]),
        ('"hello from"', ["m1", "m3"]),
        ("AND", ["m10"]),
        ("and", ["m10"]),
        ('"yes" AND', ["m10"]),
        ("NEAR(no)", ["m10"]),
        ("NEAR(", ["m10"]),
        ("NEAR(hello work)", []),
        ("ok*", ["m10"]),
        ("col:val", ["m10"]),
        ("message: hello", ["m7"]),
        ("{message} hello", ["m7"]),
        ("^hello", ["m1", "m3", "m5", "m7"]),
        ("+hello", ["m1", "m3", "m5", "m7"]),
        ("(hello)", ["m1", "m3", "m5", "m7"]),
        # nothing searchable in these: no result, and no error
        ("-", []),
        ("*", []),
        ('"', []),
        ('""', []),
        ("'", []),
        ("(", []),
        (")", []),
        ("\\", []),
        ("   ", []),
        ("; DROP TABLE history; --", []),
    ],
)
@aio
async def test_search_with_query_syntax(st: Storage, query: str, expected: list[str]) -> None:
    """Search text is never parsed as an FTS5 (or tsquery) expression: quotes, ``*``, ``AND``,
    ``OR``, ``NOT``, ``NEAR(``, ``-``, column filters... never raise, and words are only matched
    as words."""
    await seed(st)
    assert await get_uids(st, search=query) == expected
    assert len(await st.history_get(PROFILE)) == 10


@aio
async def test_search_with_nul_character(st: Storage) -> None:
    """A NUL character in the search text separates words like a space, and never raises (on
    PostgreSQL, a NUL sent in a text parameter is an error of the driver)."""
    await seed(st)
    assert await get_uids(st, search="hello\x00work") == ["m3"]
    assert await get_uids(st, search="\x00") == []


@aio
async def test_types_and_not_types(st: Storage) -> None:
    """``types`` keeps only the given message types, ``not_types`` removes them (as enum or
    string); both can be combined."""
    await seed(st)
    assert await get_uids(st, types=[MessageType.GROUPCHAT]) == ["m7"]
    assert await get_uids(st, types=["headline", MessageType.INFO]) == ["m8", "m9"]
    assert await get_uids(st, types=["normal"]) == ["m6"]
    assert await get_uids(st, types=["error"]) == []
    assert await get_uids(st, not_types=["groupchat", "info", MessageType.HEADLINE]) == [
        "m1",
        "m2",
        "m3",
        "m4",
        "m5",
        "m6",
        "m10",
    ]
    assert await get_uids(st, types=["chat", "normal"], not_types=["chat"]) == ["m6"]
    assert await get_uids(st, peer=JID("bob@example.com"), not_types=["normal"]) == ["m5", "m10"]


@aio
async def test_last_stanza_id(st: Storage) -> None:
    """``last_stanza_id`` returns only the most recent message having a stanza id, group chat
    messages excluded, whatever ``limit`` and ``order`` say."""
    assert await st.history_get(PROFILE, last_stanza_id=True) == []
    messages = await seed(st)
    [last] = await st.history_get(PROFILE, last_stanza_id=True)
    assert last == messages["m5"]
    assert await get_uids(st, last_stanza_id=True, limit=5, order="asc") == ["m5"]
    assert await get_uids(st, last_stanza_id=True, peer=ALICE) == ["m1"]

    newer = HistoryMessage(ROOM_ALICE, ME, T0 + 20, type=MessageType.GROUPCHAT, stanza_id="r-20")
    await st.add_to_history(newer, PROFILE)
    assert await get_uids(st, last_stanza_id=True) == ["m5"]


@aio
async def test_limit(st: Storage) -> None:
    """``limit`` keeps the newest messages, returned oldest first; 0 returns nothing, a limit
    above the count returns everything."""
    await seed(st)
    assert await get_uids(st, limit=3) == ["m8", "m9", "m10"]
    assert await get_uids(st, limit=1) == ["m10"]
    assert await get_uids(st, peer=ALICE, limit=3) == ["m2", "m3", "m4"]
    assert await get_uids(st, peer=ALICE_HOME, limit=1) == ["m2"]
    assert await get_uids(st, limit=0) == []
    assert await get_uids(st, limit=100) == [f"m{i}" for i in range(1, 11)]


@aio
async def test_order_asc(st: Storage) -> None:
    """``order="asc"`` keeps the oldest messages (paging forward), still returned oldest first."""
    await seed(st)
    assert await get_uids(st, order="asc", limit=3) == ["m1", "m2", "m3"]
    assert await get_uids(st, order="asc", limit=2, peer=ALICE) == ["m1", "m2"]
    assert await get_uids(st, order="asc", limit=2, peer=ALICE, after_uid="m2") == ["m3", "m4"]
    assert await get_uids(st, order="asc", limit=2, after=T0 + 5) == ["m6", "m7"]
    assert await get_uids(st, order="asc") == [f"m{i}" for i in range(1, 11)]


@aio
async def test_invalid_order_and_limit(st: Storage) -> None:
    """An order other than "asc"/"desc", or a negative limit, raises InvalidInput."""
    await seed(st)
    for order in ("ASC", "random", ""):
        with pytest.raises(InvalidInput):
            await st.history_get(PROFILE, order=order)
    with pytest.raises(InvalidInput):
        await st.history_get(PROFILE, limit=-1)


# --- deleting ---------------------------------------------------------------------------------


@aio
async def test_delete_history(st: Storage) -> None:
    """``delete_history`` deletes the given messages of the profile with their bodies, subjects
    and thread, returns how many it deleted, ignores unknown uids and other profiles' messages,
    and unlinks the corrections of a deleted message."""
    await st.create_profile(OTHER_PROFILE)
    await seed(st)
    foreign = HistoryMessage(ALICE, ME, T0, message={"": "hello foreign"}, uid="foreign")
    await st.add_to_history(foreign, OTHER_PROFILE)
    threaded = HistoryMessage(
        ALICE, ME, T0 + 11, message={"": "threaded hello"}, subject={"": "s"}, thread="t"
    )
    correction = HistoryMessage(ALICE, ME, T0 + 12, uid="fix", update_uid=threaded.uid)
    await st.add_to_history([threaded, correction], PROFILE)

    assert await st.delete_history(["m1", "m3", threaded.uid, "unknown", "foreign"], PROFILE) == 3
    assert await get_uids(st) == ["m2", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "fix"]
    assert await get_uids(st, search="hello") == ["m5", "m7"]
    for uid in ("m1", threaded.uid):
        assert await rows_of(st, uid) == {"history": 0, "message": 0, "subject": 0, "thread": 0}
    [fix] = await st.history_get(PROFILE, after=T0 + 11.5)
    assert fix.update_uid is None

    assert await get_uids(st, OTHER_PROFILE) == ["foreign"]
    assert await get_uids(st, OTHER_PROFILE, search="hello") == ["foreign"]
    assert await st.delete_history(["m1"], PROFILE) == 0
    assert await st.delete_history([], PROFILE) == 0
    assert await st.delete_history(["foreign"], OTHER_PROFILE) == 1
    assert await st.history_get(OTHER_PROFILE) == []


@aio
async def test_delete_profile_deletes_history(storage: Storage) -> None:
    """Deleting a profile deletes its history, bodies and full-text entries (a profile created
    again with the same name, or new messages reusing freed row ids, never see them), and leaves
    the other profile's history intact."""
    await storage.create_profile(OTHER_PROFILE)
    kept = await seed(storage, OTHER_PROFILE)
    await storage.create_profile(PROFILE)
    doomed = big_batch(30)
    for message in doomed:
        message.message[""] += " zanzibar"
    await storage.add_to_history(doomed, PROFILE)
    assert len(await storage.history_get(PROFILE, search="zanzibar")) == 30

    await storage.delete_profile(PROFILE)
    assert await scalar(storage, sa.select(sa.func.count()).select_from(History)) == len(kept)
    for table in (Message, Subject, Thread):
        count = sa.select(sa.func.count()).where(table.history_uid.like("big-%"))
        assert await scalar(storage, count) == 0
    if storage.db.dialect == "sqlite":
        # the FTS5 index must not keep entries of the deleted bodies
        async with storage.db.transaction() as session:
            stale = await session.execute(
                sa.text("SELECT rowid FROM message_fts WHERE message_fts MATCH 'zanzibar'")
            )
            assert stale.all() == []

    # bodies stored now may get the row ids the deleted ones had
    new = [
        HistoryMessage(ALICE, ME, T0 + 100 + i, message={"": f"new {i}"}, uid=f"new-{i}")
        for i in range(30)
    ]
    await storage.add_to_history(new, OTHER_PROFILE)
    assert await storage.history_get(OTHER_PROFILE, search="zanzibar") == []
    assert await storage.history_get(OTHER_PROFILE) == [*kept.values(), *new]
    assert await get_uids(storage, OTHER_PROFILE, search="hello") == ["m1", "m3", "m5", "m7"]

    await storage.create_profile(PROFILE)
    assert await storage.history_get(PROFILE) == []
    assert await storage.history_get(PROFILE, search="zanzibar") == []
    # the uids are free again
    assert await storage.add_to_history(doomed[:2], PROFILE) == ["big-00000", "big-00001"]


@aio
async def test_invalid_types_and_uids(st: Storage) -> None:
    """Unknown message types and unusable uids are InvalidInput, and nothing is stored."""
    good = HistoryMessage(JID("a@example.org"), JID("b@example.org"), 1.0, message={"": "x"})
    bad_type = HistoryMessage(JID("a@example.org"), JID("b@example.org"), 2.0, type="chatty")
    with pytest.raises(InvalidInput, match="chatty"):
        await st.add_to_history([good, bad_type], PROFILE)
    for uid in ("", "u" * 65):
        with pytest.raises(InvalidInput):
            await st.add_to_history(
                HistoryMessage(JID("a@example.org"), JID("b@example.org"), 3.0, uid=uid), PROFILE
            )
    assert await st.history_get(PROFILE) == []
    with pytest.raises(InvalidInput, match="chatty"):
        await st.history_get(PROFILE, types=["chatty"])
    with pytest.raises(InvalidInput):
        await st.history_get(PROFILE, not_types=["nope"])


@aio
async def test_correction_links(st: Storage) -> None:
    """A correction is linked to the message it corrects, even when that comes later in the
    batch; a correction of an unknown message is stored without the link, not refused."""
    a, b = JID("a@example.org"), JID("b@example.org")
    correction = HistoryMessage(a, b, 2.0, message={"": "fixed"}, uid="c", update_uid="o")
    original = HistoryMessage(a, b, 1.0, message={"": "typo"}, uid="o")
    orphan = HistoryMessage(a, b, 3.0, message={"": "?"}, uid="x", update_uid="missing")
    assert await st.add_to_history([correction, original, orphan], PROFILE) == ["c", "o", "x"]
    by_uid = {m.uid: m for m in await st.history_get(PROFILE)}
    assert by_uid["c"].update_uid == "o"
    assert by_uid["x"].update_uid is None
    assert by_uid["o"].update_uid is None


@aio
async def test_stanza_id_fill_never_conflicts(st: Storage) -> None:
    """Filling a missing stanza id that another stored message already has is skipped, and the
    batch is not aborted."""
    a, b = JID("a@example.org"), JID("b@example.org")
    await st.add_to_history(
        [
            HistoryMessage(a, b, 1.0, message={"": "1"}, uid="m1", origin_id="o1"),
            HistoryMessage(a, b, 2.0, message={"": "2"}, uid="m2", stanza_id="s1"),
        ],
        PROFILE,
    )
    echo = HistoryMessage(a, b, 1.0, message={"": "1"}, uid="e1", origin_id="o1", stanza_id="s1")
    new = HistoryMessage(a, b, 5.0, message={"": "5"}, uid="m5")
    assert await st.add_to_history([echo, new], PROFILE) == ["m5"]
    by_uid = {m.uid: m for m in await st.history_get(PROFILE)}
    assert by_uid["m1"].stanza_id is None and by_uid["m2"].stanza_id == "s1"


@aio
async def test_invalid_timestamp(st: Storage) -> None:
    """A message without a numeric timestamp is refused (never silently skipped)."""
    a, b = JID("a@example.org"), JID("b@example.org")
    for timestamp in (None, "yesterday", True):
        with pytest.raises(InvalidInput, match="timestamp"):
            await st.add_to_history(HistoryMessage(a, b, timestamp), PROFILE)  # type: ignore[arg-type]
    assert await st.history_get(PROFILE) == []


@pytest.mark.parametrize("few_matches", [0, 1, 1000])
@aio
async def test_search_strategies_agree(
    st: Storage, few_matches: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches give the same results whether the matches are looked up by uid (few) or the
    history is walked newest first (many)."""
    from libervia.backend.memory.storage import history as history_module

    monkeypatch.setattr(history_module, "FEW_MATCHES", few_matches)
    a, b, c = JID("a@example.org"), JID("b@example.org"), JID("c@example.org")
    await st.add_to_history(
        [
            HistoryMessage(
                a, b if i % 2 else c, float(i), message={"": f"word{i % 3} common"}, uid=f"m{i}"
            )
            for i in range(12)
        ],
        PROFILE,
    )
    assert [m.uid for m in await st.history_get(PROFILE, search="word1")] == [
        "m1",
        "m4",
        "m7",
        "m10",
    ]
    assert [m.uid for m in await st.history_get(PROFILE, search="word1", limit=2)] == ["m7", "m10"]
    assert [m.uid for m in await st.history_get(PROFILE, search="common", peer=b, limit=3)] == [
        "m7",
        "m9",
        "m11",
    ]
    assert await st.history_get(PROFILE, search="absent") == []


@aio
async def test_malformed_texts_and_extra(st: Storage) -> None:
    """Non-text bodies/subjects and non-JSON extra are InvalidInput; nothing is stored."""
    a, b = JID("a@example.org"), JID("b@example.org")
    for bad in (
        HistoryMessage(a, b, 1.0, message={"": 42}),  # type: ignore[dict-item]
        HistoryMessage(a, b, 1.0, subject={None: "x"}),  # type: ignore[dict-item]
        HistoryMessage(a, b, 1.0, message="plain"),  # type: ignore[arg-type]
        HistoryMessage(a, b, 1.0, extra={"when": object()}),
    ):
        with pytest.raises(InvalidInput):
            await st.add_to_history([HistoryMessage(a, b, 0.5, message={"": "ok"}), bad], PROFILE)
    assert await st.history_get(PROFILE) == []
