"""SQLAlchemy mappings of every table of the backend.

This module is the schema's single source of truth: Alembic autogenerates migrations from
:data:`Base.metadata`, and ``alembic check`` (run by the test suite) fails when the mappings and the
migrations drift apart. Migrations never import this module: they use plain ``sa`` types.

Conventions:

- timestamps are floats (seconds since the Unix epoch, UTC), identical on every engine;
- JSON columns use :data:`JSON_TYPE` (``JSON`` on SQLite, ``JSONB`` on PostgreSQL), never pickle;
- JIDs use the :class:`JID` column type (stored as text, read back as Twisted JIDs);
- XML uses the :class:`Xml` column type (stored as text, read back as ``domish`` elements);
- every relationship is ``lazy="raise"``: load what you need explicitly (``selectinload``).

Full-text search objects (SQLite FTS5 virtual tables ``message_fts`` and ``pubsub_items_fts``,
PostgreSQL GIN indexes ``ix_message_fts`` and ``ix_pubsub_items_fts``) are engine specific: they are
created by the migrations and are not mapped here (see :data:`FTS_OBJECT_NAMES`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from libervia.backend.tools import xml as xml_tools

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: names of the engine-specific full-text objects created by the migrations (not mapped)
FTS_OBJECT_NAMES = frozenset(
    {"message_fts", "pubsub_items_fts", "ix_message_fts", "ix_pubsub_items_fts"}
)


class JSONType(sa.TypeDecorator[Any]):
    """JSON everywhere, JSONB on PostgreSQL (indexable, keys queryable with operators).

    A type decorator rather than ``JSON().with_variant(postgresql.JSONB(), "postgresql")``:
    the PostgreSQL dialect (~50 ms of imports, with asyncpg's) is only imported by a
    PostgreSQL engine, never on the SQLite start path (doc/benchmarks.rst, "Daemon start").
    """

    impl = sa.JSON
    cache_ok = True

    def __init__(self, none_as_null: bool = True) -> None:
        super().__init__(none_as_null=none_as_null)
        #: JSON(none_as_null=False) stores Python None as JSON null: tell the ORM to bind it
        self.should_evaluate_none = not none_as_null

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=self.impl.none_as_null))
        return dialect.type_descriptor(self.impl)


#: JSON columns (SQL NULL for Python None)
JSON_TYPE = JSONType(none_as_null=True)

#: JSON for values that may be JSON ``null`` (Python None is stored as JSON null, not SQL NULL)
JSON_VALUE_TYPE = JSONType(none_as_null=False)


class JID(sa.TypeDecorator[jid.JID]):
    """A JID, stored as its full text form."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: jid.JID | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = jid.internJID(value)
        return value.full()

    def process_result_value(self, value: str | None, dialect: Dialect) -> jid.JID | None:
        if value is None:
            return None
        # internJID caches parsed JIDs (stringprep is costly)
        return jid.internJID(value)


class Xml(sa.TypeDecorator[domish.Element]):
    """An XML element, stored as serialised text, read back as a ``domish.Element``."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(
        self, value: domish.Element | str | None, dialect: Dialect
    ) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return xml_tools.serialise(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> domish.Element | None:
        if value is None:
            return None
        return xml_tools.parse(value)


class MessageType(StrEnum):
    CHAT = "chat"
    ERROR = "error"
    GROUPCHAT = "groupchat"
    HEADLINE = "headline"
    NORMAL = "normal"
    #: a message generated locally to inform the user (never sent)
    INFO = "info"


class FileType(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"


class SyncState(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ERROR = "error"
    NO_SYNC = "no_sync"


class SubscriptionState(StrEnum):
    SUBSCRIBED = "subscribed"
    PENDING = "pending"
    UNCONFIGURED = "unconfigured"


def _enum(enum_cls: type[StrEnum], name: str) -> sa.Enum:
    """Portable enum column: VARCHAR + CHECK constraint, storing the values."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(e.value) for e in enum_cls),
        values_callable=lambda cls: [e.value for e in cls],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON_TYPE, jid.JID: JID}


# --- profiles -------------------------------------------------------------------------------


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)

    component: Mapped[Component | None] = relationship(
        back_populates="profile", lazy="raise", passive_deletes=True
    )


class Component(Base):
    """A profile used as an XMPP component rather than a client."""

    __tablename__ = "components"

    profile_id: Mapped[int] = mapped_column(
        sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    entry_point: Mapped[str] = mapped_column(sa.Text)

    profile: Mapped[Profile] = relationship(back_populates="component", lazy="raise")


# --- history --------------------------------------------------------------------------------


class History(Base):
    """One message of the history (bodies, subjects and thread in their own tables)."""

    __tablename__ = "history"
    __table_args__ = (
        # the same message can never be stored twice (stanza-id / origin-id per profile and peers)
        sa.UniqueConstraint("profile_id", "source", "dest", "stanza_id"),
        sa.UniqueConstraint("profile_id", "source", "dest", "origin_id"),
        sa.Index("ix_history_profile_id_timestamp", "profile_id", "timestamp"),
        sa.Index("ix_history_profile_id_source_timestamp", "profile_id", "source", "timestamp"),
        sa.Index("ix_history_profile_id_dest_timestamp", "profile_id", "dest", "timestamp"),
    )

    uid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    stanza_id: Mapped[str | None] = mapped_column(sa.Text)
    origin_id: Mapped[str | None] = mapped_column(sa.Text)
    #: uid of the message this one corrects (XEP-0308)
    update_uid: Mapped[str | None] = mapped_column(
        sa.ForeignKey("history.uid", ondelete="SET NULL"), index=True
    )
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("profiles.id", ondelete="CASCADE"))
    #: bare JID of the sender, and resource apart
    source: Mapped[str] = mapped_column(sa.Text)
    source_res: Mapped[str | None] = mapped_column(sa.Text)
    #: bare JID of the recipient, and resource apart
    dest: Mapped[str] = mapped_column(sa.Text)
    dest_res: Mapped[str | None] = mapped_column(sa.Text)
    timestamp: Mapped[float] = mapped_column(sa.Float)
    received_timestamp: Mapped[float | None] = mapped_column(sa.Float)
    type: Mapped[MessageType] = mapped_column(_enum(MessageType, "message_type"))
    extra: Mapped[dict[str, Any] | None]

    messages: Mapped[list[Message]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    subjects: Mapped[list[Subject]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    thread: Mapped[Thread | None] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Message(Base):
    """A message body in one language (``language`` is None when not specified)."""

    __tablename__ = "message"

    id: Mapped[int] = mapped_column(primary_key=True)
    history_uid: Mapped[str] = mapped_column(
        sa.ForeignKey("history.uid", ondelete="CASCADE"), index=True
    )
    message: Mapped[str] = mapped_column(sa.Text)
    language: Mapped[str | None] = mapped_column(sa.Text)


class Subject(Base):
    """A message subject in one language."""

    __tablename__ = "subject"

    id: Mapped[int] = mapped_column(primary_key=True)
    history_uid: Mapped[str] = mapped_column(
        sa.ForeignKey("history.uid", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(sa.Text)
    language: Mapped[str | None] = mapped_column(sa.Text)


class Thread(Base):
    """The thread of a message (XEP-0201)."""

    __tablename__ = "thread"

    id: Mapped[int] = mapped_column(primary_key=True)
    history_uid: Mapped[str] = mapped_column(
        sa.ForeignKey("history.uid", ondelete="CASCADE"), unique=True
    )
    thread_id: Mapped[str] = mapped_column(sa.Text)
    parent_id: Mapped[str | None] = mapped_column(sa.Text)


# --- parameters -----------------------------------------------------------------------------


class ParamGen(Base):
    """A general (not per-profile) setting."""

    __tablename__ = "param_gen"

    category: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    value: Mapped[str | None] = mapped_column(sa.Text)


class ParamInd(Base):
    """A per-profile setting."""

    __tablename__ = "param_ind"

    category: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    profile_id: Mapped[int] = mapped_column(
        sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str | None] = mapped_column(sa.Text)


# --- private values (plugins' key/value data) -----------------------------------------------


class PrivateGen(Base):
    __tablename__ = "private_gen"

    namespace: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    value: Mapped[Any] = mapped_column(JSON_VALUE_TYPE)


class PrivateInd(Base):
    __tablename__ = "private_ind"

    namespace: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    profile_id: Mapped[int] = mapped_column(
        sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[Any] = mapped_column(JSON_VALUE_TYPE)


class PrivateGenBin(Base):
    __tablename__ = "private_gen_bin"

    namespace: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    value: Mapped[bytes | None] = mapped_column(sa.LargeBinary)


class PrivateIndBin(Base):
    __tablename__ = "private_ind_bin"

    namespace: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    profile_id: Mapped[int] = mapped_column(
        sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[bytes | None] = mapped_column(sa.LargeBinary)


# --- files ----------------------------------------------------------------------------------


class File(Base):
    """Metadata of a file or directory (the bytes live on disk or elsewhere)."""

    __tablename__ = "files"
    __table_args__ = (
        sa.Index("ix_files_profile_id_owner_parent", "profile_id", "owner", "parent"),
        sa.Index("ix_files_profile_id_file_hash", "profile_id", "file_hash"),
    )

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    version: Mapped[str] = mapped_column(sa.Text, default="")
    #: id of the parent directory ("" at the root)
    parent: Mapped[str] = mapped_column(sa.Text, default="")
    type: Mapped[FileType] = mapped_column(_enum(FileType, "file_type"), default=FileType.FILE)
    file_hash: Mapped[str | None] = mapped_column(sa.Text)
    hash_algo: Mapped[str | None] = mapped_column(sa.Text)
    name: Mapped[str] = mapped_column(sa.Text)
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    namespace: Mapped[str | None] = mapped_column(sa.Text)
    media_type: Mapped[str | None] = mapped_column(sa.Text)
    media_subtype: Mapped[str | None] = mapped_column(sa.Text)
    created: Mapped[float] = mapped_column(sa.Float)
    modified: Mapped[float | None] = mapped_column(sa.Float)
    owner: Mapped[jid.JID | None] = mapped_column(JID)
    access: Mapped[dict[str, Any] | None]
    extra: Mapped[dict[str, Any] | None]
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("profiles.id", ondelete="CASCADE"))


# --- pubsub cache ---------------------------------------------------------------------------


class PubsubNode(Base):
    """A pubsub node known to the cache."""

    __tablename__ = "pubsub_nodes"
    __table_args__ = (sa.UniqueConstraint("profile_id", "service", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("profiles.id", ondelete="CASCADE"))
    service: Mapped[jid.JID] = mapped_column(JID)
    name: Mapped[str] = mapped_column(sa.Text)
    subscribed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    #: name of the analyser which matched this node
    analyser: Mapped[str | None] = mapped_column(sa.Text)
    sync_state: Mapped[SyncState | None] = mapped_column(_enum(SyncState, "sync_state"))
    sync_state_updated: Mapped[float] = mapped_column(sa.Float)
    type_: Mapped[str | None] = mapped_column("type", sa.Text)
    subtype: Mapped[str | None] = mapped_column(sa.Text)
    extra: Mapped[dict[str, Any] | None]

    items: Mapped[list[PubsubItem]] = relationship(
        back_populates="node", lazy="raise", passive_deletes=True
    )
    subscriptions: Mapped[list[PubsubSub]] = relationship(
        back_populates="node", lazy="raise", passive_deletes=True
    )


class PubsubSub(Base):
    """A subscription to a cached node."""

    __tablename__ = "pubsub_subs"
    __table_args__ = (sa.UniqueConstraint("node_id", "subscriber"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("pubsub_nodes.id", ondelete="CASCADE"))
    subscriber: Mapped[jid.JID] = mapped_column(JID)
    state: Mapped[SubscriptionState | None] = mapped_column(
        _enum(SubscriptionState, "subscription_state")
    )

    node: Mapped[PubsubNode] = relationship(back_populates="subscriptions", lazy="raise")


class PubsubItem(Base):
    """A cached pubsub item: raw XML always, parsed JSON when the node has a parser."""

    __tablename__ = "pubsub_items"
    __table_args__ = (
        sa.UniqueConstraint("node_id", "name"),
        sa.Index("ix_pubsub_items_node_id_created", "node_id", "created"),
        sa.Index("ix_pubsub_items_node_id_updated", "node_id", "updated"),
        # searches across nodes, newest first, stop after ``limit`` matches
        sa.Index("ix_pubsub_items_created_id", "created", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(sa.ForeignKey("pubsub_nodes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.Text)
    data: Mapped[domish.Element] = mapped_column(Xml)
    created: Mapped[float] = mapped_column(sa.Float)
    updated: Mapped[float] = mapped_column(sa.Float)
    parsed: Mapped[dict[str, Any] | None]

    node: Mapped[PubsubNode] = relationship(back_populates="items", lazy="raise")
