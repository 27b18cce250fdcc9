"""Private values: plugins' key/value data, per namespace, general or per profile.

Text values are any JSON-serialisable value (stored as JSON, never pickled); binary values are
``bytes``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.memory.sqla_mapping import (
    PrivateGen,
    PrivateGenBin,
    PrivateInd,
    PrivateIndBin,
)
from libervia.backend.memory.storage.base import Database
from libervia.backend.memory.storage.profiles import ProfileStore


class PrivateStore:
    def __init__(self, db: Database, profiles: ProfileStore) -> None:
        self.db = db
        self.profiles = profiles

    def _table(
        self, binary: bool, profile: str | None
    ) -> tuple[type[Any], list[sa.ColumnElement[bool]], dict[str, Any]]:
        """Mapped class, WHERE clauses and insert values selecting the profile (or general)."""
        if profile is None:
            return (PrivateGenBin if binary else PrivateGen), [], {}
        profile_id = self.profiles.id_of(profile)
        cls: type[Any] = PrivateIndBin if binary else PrivateInd
        return cls, [cls.profile_id == profile_id], {"profile_id": profile_id}

    async def get_privates(
        self,
        namespace: str,
        keys: Iterable[str] | None = None,
        binary: bool = False,
        profile: str | None = None,
    ) -> dict[str, Any]:
        """Values of a namespace (only ``keys`` when given), keyed by key.

        Args:
            namespace: the plugin's namespace.
            keys: keys to get (None: all of the namespace). Missing keys are absent from the result.
            binary: get binary values (``bytes``) instead of JSON ones.
            profile: the profile, or None for general values.
        """
        cls, where, _ = self._table(binary, profile)
        stmt = sa.select(cls.key, cls.value).where(cls.namespace == namespace, *where)
        if keys is not None:
            stmt = stmt.where(cls.key.in_(list(keys)))
        async with self.db.transaction(read_only=True) as session:
            return dict((await session.execute(stmt)).all())

    async def set_private_value(
        self,
        namespace: str,
        key: str,
        value: Any,
        binary: bool = False,
        profile: str | None = None,
    ) -> None:
        """Set (insert or replace) a value.

        Raises:
            InvalidInput: a binary value that is not bytes.
        """
        if binary and not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidInput(f"binary private value {namespace}/{key} must be bytes")
        cls, _, values = self._table(binary, profile)
        stmt = self.db.insert(cls).values(namespace=namespace, key=key, value=value, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[cls.namespace, cls.key, *([cls.profile_id] if values else [])],
            set_={"value": stmt.excluded.value},
        )
        async with self.db.transaction() as session:
            await session.execute(stmt)

    async def del_private_value(
        self, namespace: str, key: str, binary: bool = False, profile: str | None = None
    ) -> None:
        """Delete one value (nothing happens when it does not exist)."""
        cls, where, _ = self._table(binary, profile)
        async with self.db.transaction() as session:
            await session.execute(
                sa.delete(cls).where(cls.namespace == namespace, cls.key == key, *where)
            )

    async def del_private_namespace(
        self, namespace: str, binary: bool = False, profile: str | None = None
    ) -> None:
        """Delete every value of a namespace (for the profile, or the general ones)."""
        cls, where, _ = self._table(binary, profile)
        async with self.db.transaction() as session:
            await session.execute(sa.delete(cls).where(cls.namespace == namespace, *where))
