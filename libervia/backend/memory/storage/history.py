"""Message history.

Messages are stored once: the unique constraints on ``(profile, source, dest, stanza_id)`` and
``(profile, source, dest, origin_id)`` (and the uid primary key) make a second copy impossible,
whichever way it arrives (live, carbon, MAM catch-up). :meth:`HistoryStore.add_to_history` is
idempotent and writes a whole batch in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from twisted.words.protocols.jabber.jid import JID, internJID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.memory.sqla_mapping import History, Message, MessageType, Subject, Thread
from libervia.backend.memory.storage.base import Database
from libervia.backend.memory.storage.profiles import ProfileStore
from libervia.backend.tools.ids import time_ordered_uuid

log = get_logger(__name__)

#: rows per INSERT statement when writing a batch (keeps SQLite under its variable limit)
BATCH_SIZE = 500
UID_MAX_LENGTH = 64
#: up to this many full-text matches, a search looks messages up by uid (see history_get)
FEW_MATCHES = 1000


def _message_type(value: MessageType | str) -> MessageType:
    try:
        return MessageType(value)
    except ValueError:
        known = ", ".join(t.value for t in MessageType)
        raise InvalidInput(f"unknown message type {value!r} (known: {known})") from None


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
    uid: str = field(default_factory=time_ordered_uuid)
    stanza_id: str | None = None
    origin_id: str | None = None
    update_uid: str | None = None
    received_timestamp: float | None = None
    thread: str | None = None
    thread_parent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> HistoryMessage:
        """Build from a row of ``history`` with its thread, bodies and subjects."""
        return cls(
            uid=row.uid,
            source=_jid(row.source, row.source_res),
            dest=_jid(row.dest, row.dest_res),
            timestamp=row.timestamp,
            received_timestamp=row.received_timestamp,
            type=row.type,
            stanza_id=row.stanza_id,
            origin_id=row.origin_id,
            update_uid=row.update_uid,
            thread=row.thread_id,
            thread_parent=row.parent_id,
            message=row.bodies or {},
            subject=row.subjects or {},
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


@dataclass(frozen=True)
class HistoryQueryShape:
    """What determines the SQL of a history query: the filters used, not their values."""

    params: frozenset[str]
    direction: Direction | None
    between: bool
    last_stanza_id: bool
    order: str


class HistoryStore:
    def __init__(self, db: Database, profiles: ProfileStore) -> None:
        self.db = db
        self.profiles = profiles
        #: built statements by query shape (a few dozen shapes in practice)
        self._statements: dict[HistoryQueryShape, Any] = {}
        self._search_stmt: Any = None
        self._insert_stmts: Any = None

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
        # corrections are linked once every row is in (the corrected message may come later
        # in the batch, or not be stored at all)
        corrections = {row["uid"]: row.pop("update_uid") for row in rows if row["update_uid"]}
        for row in rows:
            row.setdefault("update_uid", None)
        stored = await self.db.run_transaction(
            self._write_txn, batch, rows, corrections, profile_id
        )
        return [m.uid for m in batch if m.uid in stored]

    def _write_txn(
        self,
        conn: sa.Connection,
        batch: list[HistoryMessage],
        rows: list[dict[str, Any]],
        corrections: dict[str, str],
        profile_id: int,
    ) -> set[str]:
        """The writing of add_to_history: synchronous code, in one transaction."""
        if conn.dialect.name == "sqlite":
            stored = self._insert_sqlite(conn, batch, rows)
        else:
            stored = self._insert_core(conn, batch, rows)
        self._link_corrections_txn(conn, corrections, stored)
        self._fill_stanza_ids_txn(conn, profile_id, rows, stored)
        return stored

    @staticmethod
    def _children(batch: list[HistoryMessage], stored: set[str]) -> list[list[dict[str, Any]]]:
        """Rows of ``message``, ``subject`` and ``thread`` for the stored messages."""
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
        return [bodies, subjects, threads]

    def _insert_core(
        self, conn: sa.Connection, batch: list[HistoryMessage], rows: list[dict[str, Any]]
    ) -> set[str]:
        """Insert with Core statements (PostgreSQL)."""
        if self._insert_stmts is None:
            # built once: building statements costs more than running them
            history = History.__table__
            self._insert_stmts = (
                self.db.insert_ignore(history).returning(history.c.uid),
                [sa.insert(cls.__table__) for cls in (Message, Subject, Thread)],
            )
        insert, inserts = self._insert_stmts
        stored: set[str] = set()
        for start in range(0, len(rows), BATCH_SIZE):
            result = conn.execute(insert, rows[start : start + BATCH_SIZE])
            stored.update(result.scalars())
        values = self._children(batch, stored)
        for statement, table_values in zip(inserts, values, strict=True):
            for start in range(0, len(table_values), BATCH_SIZE):
                conn.execute(statement, table_values[start : start + BATCH_SIZE])
        return stored

    def _insert_sqlite(
        self, conn: sa.Connection, batch: list[HistoryMessage], rows: list[dict[str, Any]]
    ) -> set[str]:
        """Insert through the DBAPI cursor (SQLite): the same rows as :meth:`_insert_core`,
        without SQLAlchemy's per-statement work (~0.4 ms of a ~0.7 ms transaction here).

        The values are converted as the column types would: the message type as its value, the
        ``extra`` dict as JSON text (None as SQL NULL). The integration tests compare what both
        paths store.
        """
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            columns = list(rows[0])
            sql = (
                f"INSERT OR IGNORE INTO history ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))}) RETURNING uid"
            )
            stored: set[str] = set()
            for row in rows:
                params = [row[c] for c in columns]
                params[columns.index("type")] = str(row["type"])
                extra = row["extra"]
                params[columns.index("extra")] = None if extra is None else json.dumps(extra)
                cursor.execute(sql, params)
                stored.update(uid for (uid,) in cursor.fetchall())
            values = self._children(batch, stored)
            for table, table_values in zip(("message", "subject", "thread"), values, strict=True):
                if not table_values:
                    continue
                names = list(table_values[0])
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) "
                    f"VALUES ({', '.join('?' * len(names))})",
                    [[v[n] for n in names] for v in table_values],
                )
            return stored
        finally:
            cursor.close()

    @staticmethod
    def _link_corrections_txn(
        conn: sa.Connection, corrections: dict[str, str], stored: set[str]
    ) -> None:
        """Set ``update_uid`` of the stored corrections whose corrected message exists."""
        for uid, corrected in corrections.items():
            if uid not in stored:
                continue
            exists = sa.exists().where(History.uid == corrected)
            result = conn.execute(
                sa.update(History).where(History.uid == uid, exists).values(update_uid=corrected)
            )
            if result.rowcount == 0:
                log.warning("message %s corrects %s, which is not in the history", uid, corrected)

    @staticmethod
    def _fill_stanza_ids_txn(
        conn: sa.Connection, profile_id: int, rows: list[dict[str, Any]], stored: set[str]
    ) -> None:
        """Give the server's stanza id to stored copies of skipped duplicates that lack one."""
        other = sa.orm.aliased(History)
        for row in rows:
            if row["uid"] in stored or not row["stanza_id"] or not row["origin_id"]:
                continue
            same_peers = (
                History.profile_id == profile_id,
                History.source == row["source"],
                History.dest == row["dest"],
            )
            # never two rows with the same stanza id between the same entities
            taken = sa.exists().where(
                other.profile_id == profile_id,
                other.source == row["source"],
                other.dest == row["dest"],
                other.stanza_id == row["stanza_id"],
            )
            conn.execute(
                sa.update(History)
                .where(
                    *same_peers,
                    History.origin_id == row["origin_id"],
                    History.stanza_id.is_(None),
                    ~taken,
                )
                .values(stanza_id=row["stanza_id"])
            )

    @staticmethod
    def _history_row(m: HistoryMessage, profile_id: int) -> dict[str, Any]:
        if not m.source or not m.dest or not m.source.host or not m.dest.host:
            raise InvalidInput(f"message {m.uid}: source and destination are required")
        if not isinstance(m.timestamp, int | float) or isinstance(m.timestamp, bool):
            raise InvalidInput(f"message {m.uid}: invalid timestamp {m.timestamp!r}")
        if not m.uid or len(m.uid) > UID_MAX_LENGTH:
            raise InvalidInput(f"message uid {m.uid!r}: 1 to {UID_MAX_LENGTH} characters")
        for field_name, texts in (("message", m.message), ("subject", m.subject)):
            if not isinstance(texts, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in texts.items()
            ):
                raise InvalidInput(f"message {m.uid}: {field_name} must map languages to text")
        if m.extra:
            try:
                json.dumps(m.extra)
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"message {m.uid}: extra is not JSON-serialisable: {e}") from e
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
            "type": _message_type(m.type),
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
        # The statement depends only on which filters are used (the "shape"); values are bound
        # parameters. Statements are built once per shape and reused: building one costs more
        # than running it.
        params: dict[str, Any] = {"profile_id": profile_id}
        for name, entity in (("peer", peer), ("from", from_jid), ("to", to_jid)):
            if entity is not None:
                params[name] = entity.userhost()
                if entity.resource:
                    params[f"{name}_res"] = entity.resource
        for name, value in (
            ("before", before),
            ("after", after),
            ("before_uid", before_uid),
            ("after_uid", after_uid),
            ("limit", limit),
        ):
            if value is not None:
                params[name] = value
        if search:
            # Few matches: look the messages up by uid (fast whatever their age); many: walk
            # the history newest first, checking matches (stops at ``limit``). A planner
            # cannot tell the two apart, so the first bounded query decides.
            matches = await self._search_uids(self.db.fts_param(search))
            if matches is None:
                params["search"] = self.db.fts_param(search)
            else:
                params["search_uids"] = matches
        if types:
            params["types"] = [_message_type(t) for t in types]
        if not_types:
            params["not_types"] = [_message_type(t) for t in not_types]
        shape = HistoryQueryShape(
            params=frozenset(params),
            direction=direction,
            between=between,
            last_stanza_id=last_stanza_id,
            order=order,
        )
        stmt = self._statements.get(shape)
        if stmt is None:
            stmt = self._statements[shape] = self._build_query(shape)
        async with self.db.connection(read_only=True) as conn:
            rows = (await conn.execute(stmt, params)).all()
            if not rows:
                for uid in (before_uid, after_uid):
                    if uid is not None and not await conn.scalar(
                        sa.select(sa.literal(1)).where(
                            History.profile_id == profile_id, History.uid == uid
                        )
                    ):
                        raise NotFound(f"message {uid!r} is not in the history")
        if order == "desc":
            rows.reverse()
        return [HistoryMessage.from_row(row) for row in rows]

    async def _search_uids(self, fts_param: str) -> list[str] | None:
        """Uids of the messages matching a full-text search, or None when there are more than
        :data:`FEW_MATCHES`."""
        stmt = self._search_stmt
        if stmt is None:
            matching = (
                sa.select(Message.id)
                .where(self.db.fts_match(Message.message, "message_fts", sa.bindparam("q")))
                .limit(FEW_MATCHES + 1)
                .subquery()
            )
            stmt = self._search_stmt = sa.select(Message.history_uid).where(
                Message.id.in_(sa.select(matching.c.id))
            )
        async with self.db.connection(read_only=True) as conn:
            uids = list((await conn.execute(stmt, {"q": fts_param})).scalars())
        return None if len(uids) > FEW_MATCHES else uids

    def _build_query(self, shape: HistoryQueryShape) -> Any:
        """The SELECT of a history query shape (every value a bound parameter)."""
        keys = shape.params
        where: list[Any] = [History.profile_id == sa.bindparam("profile_id")]
        for key, older in (("before_uid", True), ("after_uid", False)):
            if key in keys:
                ref = sa.bindparam(key)
                ref_ts = (
                    sa.select(History.timestamp)
                    .where(History.profile_id == sa.bindparam("profile_id"), History.uid == ref)
                    .scalar_subquery()
                )
                # (timestamp, uid) is the order of the history: paging through messages
                # sharing a timestamp neither loses nor repeats any
                if older:
                    where.append(
                        sa.and_(
                            History.timestamp <= ref_ts,
                            sa.or_(History.timestamp < ref_ts, History.uid < ref),
                        )
                    )
                else:
                    where.append(
                        sa.and_(
                            History.timestamp >= ref_ts,
                            sa.or_(History.timestamp > ref_ts, History.uid > ref),
                        )
                    )
        if "before" in keys:
            where.append(History.timestamp < sa.bindparam("before"))
        if "after" in keys:
            where.append(History.timestamp > sa.bindparam("after"))
        if "types" in keys:
            where.append(History.type.in_(sa.bindparam("types", expanding=True)))
        if "not_types" in keys:
            where.append(History.type.not_in(sa.bindparam("not_types", expanding=True)))
        if shape.last_stanza_id:
            where.append(History.stanza_id.is_not(None))
            where.append(History.type != MessageType.GROUPCHAT)
        if "search_uids" in keys:
            where.append(History.uid.in_(sa.bindparam("search_uids", expanding=True)))
        if "search" in keys:
            where.append(
                History.uid.in_(
                    sa.select(Message.history_uid).where(
                        self.db.fts_match(Message.message, "message_fts", sa.bindparam("search"))
                    )
                )
            )

        def match(name: str, bare_col: Any, res_col: Any) -> Any:
            clause = bare_col == sa.bindparam(name)
            if f"{name}_res" in keys:
                clause = sa.and_(clause, res_col == sa.bindparam(f"{name}_res"))
            return clause

        if "from" in keys:
            sent = match("from", History.source, History.source_res)
            if "to" in keys:
                sent = sa.and_(sent, match("to", History.dest, History.dest_res))
                if shape.between:
                    sent = sa.or_(
                        sent,
                        sa.and_(
                            match("to", History.source, History.source_res),
                            match("from", History.dest, History.dest_res),
                        ),
                    )
            where.append(sent)
        elif "to" in keys:
            where.append(match("to", History.dest, History.dest_res))

        branches: list[list[Any]] = [where]
        if "peer" in keys:
            received = match("peer", History.source, History.source_res)
            sent_to = match("peer", History.dest, History.dest_res)
            if shape.direction is None:
                # two index-friendly branches instead of one OR (see _select_uids)
                branches = [[*where, received], [*where, sent_to]]
            elif shape.direction is Direction.IN:
                branches = [[*where, received]]
            else:
                branches = [[*where, sent_to]]
        uids = _select_uids(branches, "limit" in keys, shape.order)
        return self._load_query(uids, shape.order)

    def _load_query(self, uids: Any, order: str) -> Any:
        """Whole messages (bodies, subjects, thread) of the ``uids`` subquery, in one query."""
        history, thread = History.__table__, Thread.__table__
        body, subject = Message.__table__, Subject.__table__
        bodies = self._texts_by_language(body, body.c.message, history.c.uid)
        subjects = self._texts_by_language(subject, subject.c.subject, history.c.uid)
        return (
            sa.select(
                history,
                thread.c.thread_id,
                thread.c.parent_id,
                bodies.label("bodies"),
                subjects.label("subjects"),
            )
            .outerjoin(thread, thread.c.history_uid == history.c.uid)
            .where(history.c.uid.in_(uids))
            .order_by(*_ordering(history.c.timestamp, history.c.uid, order))
        )

    def _texts_by_language(self, table: Any, text_col: Any, uid_col: Any) -> Any:
        """Correlated subquery: the texts of a message as a JSON object ``{language: text}``."""
        language = sa.func.coalesce(table.c.language, "")
        if self.db.dialect == "postgresql":
            aggregate = sa.func.json_object_agg(language, text_col)
        else:
            aggregate = sa.func.json_group_object(language, text_col)
        return (
            sa.select(sa.type_coerce(aggregate, sa.JSON))
            .where(table.c.history_uid == uid_col)
            .scalar_subquery()
        )


def _ordering(timestamp_col: Any, uid_col: Any, order: str) -> tuple[Any, Any]:
    """ORDER BY clauses of the history: by timestamp, then uid (a total order, for paging)."""
    if order == "desc":
        return timestamp_col.desc(), uid_col.desc()
    return timestamp_col.asc(), uid_col.asc()


def _select_uids(branches: list[list[Any]], limited: bool, order: str) -> Any:
    """Uids of the matching messages, as a subquery.

    With several branches (OR of conditions), each branch is limited and sorted on its own, so
    that every branch uses its ``(profile, source|dest, timestamp)`` index, then merged: this
    keeps "last 20 messages with a peer" fast on a large history.
    """
    selects = []
    for branch in branches:
        stmt = sa.select(History.uid, History.timestamp).where(*branch)
        if limited:
            stmt = stmt.order_by(*_ordering(History.timestamp, History.uid, order)).limit(
                sa.bindparam("limit")
            )
        selects.append(stmt)
    if len(selects) == 1:
        inner = selects[0].subquery()
    else:
        # each branch is a subquery: SQLite forbids ORDER BY/LIMIT in a bare compound member
        inner = sa.union(*(sa.select(s.subquery()) for s in selects)).subquery()
    outer = sa.select(inner.c.uid)
    if limited:
        outer = outer.order_by(*_ordering(inner.c.timestamp, inner.c.uid, order)).limit(
            sa.bindparam("limit")
        )
    return outer
