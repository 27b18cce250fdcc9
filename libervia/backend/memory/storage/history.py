"""Message history.

Messages are stored once: the unique constraints on ``(profile, source, dest, stanza_id)`` and
``(profile, source, dest, origin_id)`` (and the uid primary key) make a second copy impossible,
whichever way it arrives (live, carbon, MAM catch-up). :meth:`HistoryStore.add_to_history` is
idempotent and writes a whole batch in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload
from twisted.words.protocols.jabber.jid import JID, internJID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.memory.sqla_mapping import History, Message, MessageType, Subject, Thread
from libervia.backend.memory.storage.base import Database
from libervia.backend.memory.storage.profiles import ProfileStore

#: rows per INSERT statement when writing a batch (keeps SQLite under its variable limit)
BATCH_SIZE = 500


@dataclass
class HistoryMessage:
    """A message as stored in (and read from) the history.

    ``message`` and ``subject`` map a language code (``""`` when unspecified) to the text.
    """

    source: JID
    dest: JID
    timestamp: float
    type: MessageType = MessageType.CHAT
    message: dict[str, str] = field(default_factory=dict)
    subject: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    stanza_id: str | None = None
    origin_id: str | None = None
    update_uid: str | None = None
    received_timestamp: float | None = None
    thread: str | None = None
    thread_parent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: History) -> HistoryMessage:
        return cls(
            uid=row.uid,
            source=_jid(row.source, row.source_res),
            dest=_jid(row.dest, row.dest_res),
            timestamp=row.timestamp,
            received_timestamp=row.received_timestamp,
            type=row.type,
            message={m.language or "": m.message for m in row.messages},
            subject={s.language or "": s.subject for s in row.subjects},
            stanza_id=row.stanza_id,
            origin_id=row.origin_id,
            update_uid=row.update_uid,
            thread=row.thread.thread_id if row.thread else None,
            thread_parent=row.thread.parent_id if row.thread else None,
            extra=row.extra or {},
        )


def _jid(bare: str, resource: str | None) -> JID:
    # internJID caches parsed JIDs: stringprep costs ~0.2 ms per JID otherwise
    return internJID(f"{bare}/{resource}" if resource else bare)


class Direction(StrEnum):
    """Direction of a message relative to the peer of a history query."""

    #: received from the peer
    IN = "in"
    #: sent to the peer
    OUT = "out"


class HistoryStore:
    def __init__(self, db: Database, profiles: ProfileStore) -> None:
        self.db = db
        self.profiles = profiles

    # --- writing ------------------------------------------------------------------------------

    async def add_to_history(
        self, messages: HistoryMessage | Sequence[HistoryMessage], profile: str
    ) -> list[str]:
        """Store one message or a batch of messages, in one transaction.

        Duplicates (same uid, or same stanza id / origin id between the same entities) are
        skipped silently; a duplicate which brings a stanza id that the stored copy lacks (our
        own message coming back from the server archive) fills it in.

        Returns:
            uids of the messages actually stored (duplicates left out).

        Raises:
            ProfileUnknownError: there is no such profile.
            InvalidInput: a message lacks its source or destination.
        """
        batch = [messages] if isinstance(messages, HistoryMessage) else list(messages)
        if not batch:
            return []
        profile_id = self.profiles.id_of(profile)
        by_uid: dict[str, tuple[HistoryMessage, dict[str, Any]]] = {}
        for m in batch:
            row = self._history_row(m, profile_id)
            # a uid repeated in the batch is the same message: its first occurrence counts
            by_uid.setdefault(m.uid, (m, row))
        batch = [m for m, _ in by_uid.values()]
        rows = [row for _, row in by_uid.values()]
        stored: set[str] = set()
        async with self.db.transaction() as session:
            for start in range(0, len(rows), BATCH_SIZE):
                chunk = rows[start : start + BATCH_SIZE]
                stmt = self.db.insert(History).on_conflict_do_nothing().returning(History.uid)
                result = await session.execute(stmt, chunk)
                stored.update(result.scalars())
            bodies, subjects, threads = [], [], []
            for m in batch:
                if m.uid not in stored:
                    continue
                bodies.extend(
                    {"history_uid": m.uid, "message": text, "language": lang or None}
                    for lang, text in m.message.items()
                )
                subjects.extend(
                    {"history_uid": m.uid, "subject": text, "language": lang or None}
                    for lang, text in m.subject.items()
                )
                if m.thread:
                    threads.append(
                        {"history_uid": m.uid, "thread_id": m.thread, "parent_id": m.thread_parent}
                    )
            for cls, values in ((Message, bodies), (Subject, subjects), (Thread, threads)):
                for start in range(0, len(values), BATCH_SIZE):
                    await session.execute(sa.insert(cls), values[start : start + BATCH_SIZE])
            for row in rows:
                if row["uid"] not in stored and row["stanza_id"] and row["origin_id"]:
                    await session.execute(
                        sa.update(History)
                        .where(
                            History.profile_id == profile_id,
                            History.source == row["source"],
                            History.dest == row["dest"],
                            History.origin_id == row["origin_id"],
                            History.stanza_id.is_(None),
                        )
                        .values(stanza_id=row["stanza_id"])
                    )
        return [m.uid for m in batch if m.uid in stored]

    @staticmethod
    def _history_row(m: HistoryMessage, profile_id: int) -> dict[str, Any]:
        if not m.source or not m.dest or not m.source.host or not m.dest.host:
            raise InvalidInput(f"message {m.uid}: source and destination are required")
        return {
            "uid": m.uid,
            "stanza_id": m.stanza_id,
            "origin_id": m.origin_id,
            "update_uid": m.update_uid,
            "profile_id": profile_id,
            "source": m.source.userhost(),
            "source_res": m.source.resource,
            "dest": m.dest.userhost(),
            "dest_res": m.dest.resource,
            "timestamp": m.timestamp,
            "received_timestamp": m.received_timestamp,
            "type": MessageType(m.type),
            "extra": m.extra or None,
        }

    async def delete_history(self, uids: Sequence[str], profile: str) -> int:
        """Delete messages by uid; return how many were deleted."""
        profile_id = self.profiles.id_of(profile)
        async with self.db.transaction() as session:
            result = await session.execute(
                sa.delete(History).where(History.profile_id == profile_id, History.uid.in_(uids))
            )
            return result.rowcount  # type: ignore[attr-defined,no-any-return]

    # --- reading ------------------------------------------------------------------------------

    async def history_get(
        self,
        profile: str,
        *,
        peer: JID | None = None,
        direction: Direction | str | None = None,
        from_jid: JID | None = None,
        to_jid: JID | None = None,
        between: bool = True,
        before: float | None = None,
        after: float | None = None,
        before_uid: str | None = None,
        after_uid: str | None = None,
        search: str | None = None,
        types: Sequence[MessageType | str] | None = None,
        not_types: Sequence[MessageType | str] | None = None,
        last_stanza_id: bool = False,
        limit: int | None = None,
        order: str = "desc",
    ) -> list[HistoryMessage]:
        """Query the history; results always come in chronological order.

        Messages sharing a timestamp are ordered by uid, so that paging with ``before_uid`` /
        ``after_uid`` neither loses nor repeats any.

        Args:
            profile: whose history.
            peer: messages exchanged with this entity (both directions). With a resource, only
                messages to/from that resource.
            direction: with ``peer``: ``"in"`` (received from it) or ``"out"`` (sent to it).
            from_jid: messages sent by this entity (resource-exact when it has one).
            to_jid: messages sent to this entity; with ``from_jid`` and ``between`` (default),
                messages between the two, in either direction.
            between: see ``to_jid``.
            before: only messages strictly older than this timestamp.
            after: only messages strictly newer than this timestamp.
            before_uid: only messages before the message with this uid (in that order).
            after_uid: only messages after the message with this uid (in that order).
            search: full-text search in message bodies (every word must match).
            types: only these message types.
            not_types: all message types but these.
            last_stanza_id: only the most recent message having a stanza id from our own archive
                (group chats excluded), for MAM catch-up; implies ``limit=1``.
            limit: maximum number of messages; None for all.
            order: ``"desc"`` (default): the ``limit`` newest messages; ``"asc"``: the ``limit``
                oldest ones (for paging forward with ``after``).

        Raises:
            ProfileUnknownError: there is no such profile.
            NotFound: ``before_uid`` or ``after_uid`` is not in the history.
            InvalidInput: invalid ``order``, ``direction`` or ``limit``.
        """
        profile_id = self.profiles.id_of(profile)
        if order not in ("asc", "desc"):
            raise InvalidInput(f"order must be 'asc' or 'desc', not {order!r}")
        if limit is not None and limit < 0:
            raise InvalidInput("limit must not be negative")
        if direction is not None:
            if peer is None:
                raise InvalidInput("direction needs a peer")
            try:
                direction = Direction(direction)
            except ValueError:
                raise InvalidInput(f"direction must be 'in' or 'out', not {direction!r}") from None
        if last_stanza_id:
            limit, order = 1, "desc"
        async with self.db.transaction() as session:
            where: list[Any] = [History.profile_id == profile_id]
            for uid, older in ((before_uid, True), (after_uid, False)):
                if uid is not None:
                    ts = await session.scalar(
                        sa.select(History.timestamp).where(
                            History.profile_id == profile_id, History.uid == uid
                        )
                    )
                    if ts is None:
                        raise NotFound(f"message {uid!r} is not in the history")
                    # (timestamp, uid) is the order of the history: paging through messages
                    # sharing a timestamp neither loses nor repeats any
                    if older:
                        where.append(
                            sa.and_(
                                History.timestamp <= ts,
                                sa.or_(History.timestamp < ts, History.uid < uid),
                            )
                        )
                    else:
                        where.append(
                            sa.and_(
                                History.timestamp >= ts,
                                sa.or_(History.timestamp > ts, History.uid > uid),
                            )
                        )
            if before is not None:
                where.append(History.timestamp < before)
            if after is not None:
                where.append(History.timestamp > after)
            if types:
                where.append(History.type.in_([MessageType(t) for t in types]))
            if not_types:
                where.append(History.type.not_in([MessageType(t) for t in not_types]))
            if last_stanza_id:
                where.append(History.stanza_id.is_not(None))
                where.append(History.type != MessageType.GROUPCHAT)
            if search:
                where.append(
                    History.uid.in_(
                        sa.select(Message.history_uid).where(
                            self.db.fts_match(Message.message, "message_fts", search)
                        )
                    )
                )
            if from_jid is not None:
                sent = _match(History.source, History.source_res, from_jid)
                if to_jid is not None:
                    sent = sa.and_(sent, _match(History.dest, History.dest_res, to_jid))
                    if between:
                        sent = sa.or_(
                            sent,
                            sa.and_(
                                _match(History.source, History.source_res, to_jid),
                                _match(History.dest, History.dest_res, from_jid),
                            ),
                        )
                where.append(sent)
            elif to_jid is not None:
                where.append(_match(History.dest, History.dest_res, to_jid))

            branches: list[list[Any]] = [where]
            if peer is not None:
                received = _match(History.source, History.source_res, peer)
                sent_to = _match(History.dest, History.dest_res, peer)
                if direction is None:
                    # two index-friendly branches instead of one OR (see _select_uids)
                    branches = [[*where, received], [*where, sent_to]]
                elif direction is Direction.IN:
                    branches = [[*where, received]]
                else:
                    branches = [[*where, sent_to]]

            uids = _select_uids(branches, limit, order)
            stmt = (
                sa.select(History)
                .where(History.uid.in_(uids))
                .options(
                    selectinload(History.messages),
                    selectinload(History.subjects),
                    joinedload(History.thread),
                )
                .order_by(*_ordering(History.timestamp, History.uid, order))
            )
            rows = list((await session.execute(stmt)).unique().scalars())
        if order == "desc":
            rows.reverse()
        return [HistoryMessage.from_row(row) for row in rows]


def _match(bare_col: Any, res_col: Any, entity: JID) -> Any:
    clause = bare_col == entity.userhost()
    if entity.resource:
        clause = sa.and_(clause, res_col == entity.resource)
    return clause


def _ordering(timestamp_col: Any, uid_col: Any, order: str) -> tuple[Any, Any]:
    """ORDER BY clauses of the history: by timestamp, then uid (a total order, for paging)."""
    if order == "desc":
        return timestamp_col.desc(), uid_col.desc()
    return timestamp_col.asc(), uid_col.asc()


def _select_uids(branches: list[list[Any]], limit: int | None, order: str) -> Any:
    """Uids of the matching messages, as a subquery.

    With several branches (OR of conditions), each branch is limited and sorted on its own, so
    that every branch uses its ``(profile, source|dest, timestamp)`` index, then merged: this
    keeps "last 20 messages with a peer" fast on a large history.
    """
    selects = []
    for branch in branches:
        stmt = sa.select(History.uid, History.timestamp).where(*branch)
        if limit is not None:
            stmt = stmt.order_by(*_ordering(History.timestamp, History.uid, order)).limit(limit)
        selects.append(stmt)
    if len(selects) == 1:
        inner = selects[0].subquery()
    else:
        # each branch is a subquery: SQLite forbids ORDER BY/LIMIT in a bare compound member
        inner = sa.union(*(sa.select(s.subquery()) for s in selects)).subquery()
    outer = sa.select(inner.c.uid)
    if limit is not None:
        outer = outer.order_by(*_ordering(inner.c.timestamp, inner.c.uid, order)).limit(limit)
    return outer
