"""File metadata (shared files, received files, file sharing component)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.memory.sqla_mapping import File, FileType
from libervia.backend.memory.storage.base import Database
from libervia.backend.memory.storage.profiles import ProfileStore
from libervia.backend.tools.ids import time_ordered_uuid

#: JSON columns that :meth:`FileStore.file_update` may change
UPDATABLE_JSON_COLUMNS = ("access", "extra")


class FileStore:
    def __init__(self, db: Database, profiles: ProfileStore) -> None:
        self.db = db
        self.profiles = profiles

    async def set_file(
        self,
        profile: str,
        name: str,
        *,
        file_id: str | None = None,
        version: str = "",
        parent: str = "",
        type_: FileType | str = FileType.FILE,
        file_hash: str | None = None,
        hash_algo: str | None = None,
        size: int | None = None,
        namespace: str | None = None,
        media_type: str | None = None,
        media_subtype: str | None = None,
        created: float | None = None,
        modified: float | None = None,
        owner: JID | None = None,
        access: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Store the metadata of a file or directory; return its id.

        Raises:
            InvalidInput: empty name, negative size, or a hash without its algorithm.
            ProfileUnknownError: there is no such profile.
        """
        if not name:
            raise InvalidInput("a file needs a name")
        if size is not None and size < 0:
            raise InvalidInput(f"invalid file size {size}")
        if (file_hash is None) != (hash_algo is None):
            raise InvalidInput("file_hash and hash_algo go together")
        profile_id = self.profiles.id_of(profile)
        file_id = file_id or time_ordered_uuid()
        row = File(
            id=file_id,
            version=version,
            parent=parent,
            type=FileType(type_),
            file_hash=file_hash,
            hash_algo=hash_algo,
            name=name,
            size=size,
            namespace=namespace,
            media_type=media_type,
            media_subtype=media_subtype,
            created=self.db.clock() if created is None else created,
            modified=modified,
            owner=owner,
            access=access,
            extra=extra,
            profile_id=profile_id,
        )
        async with self.db.transaction() as session:
            session.add(row)
        return file_id

    async def get_files(
        self,
        profile: str | None,
        *,
        file_id: str | None = None,
        version: str | None = None,
        parent: str | None = None,
        type_: FileType | str | None = None,
        file_hash: str | None = None,
        hash_algo: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        media_type: str | None = None,
        media_subtype: str | None = None,
        owner: JID | None = None,
        limit: int | None = None,
    ) -> list[File]:
        """Files matching every given filter (None: no filter), oldest first.

        Args:
            profile: whose files; None for every profile's.
            owner: files owned by this entity (compared as given: bare or full JID).
        """
        stmt = sa.select(File)
        if profile is not None:
            stmt = stmt.where(File.profile_id == self.profiles.id_of(profile))
        filters: dict[str, Any] = {
            "id": file_id,
            "version": version,
            "parent": parent,
            "type": FileType(type_) if type_ is not None else None,
            "file_hash": file_hash,
            "hash_algo": hash_algo,
            "name": name,
            "namespace": namespace,
            "media_type": media_type,
            "media_subtype": media_subtype,
            "owner": owner,
        }
        for column, value in filters.items():
            if value is not None:
                stmt = stmt.where(getattr(File, column) == value)
        stmt = stmt.order_by(File.created, File.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self.db.transaction(read_only=True) as session:
            return list((await session.execute(stmt)).scalars())

    async def file_update(
        self,
        file_id: str,
        column: str,
        update_cb: Callable[[dict[str, Any]], dict[str, Any] | None],
    ) -> dict[str, Any]:
        """Atomically update a JSON column (``access`` or ``extra``) of a file.

        The row is locked (a no-op UPDATE takes the write lock on SQLite and the row lock on
        PostgreSQL) before it is read, so concurrent updates are serialised and none is lost.

        Args:
            file_id: the file.
            column: ``"access"`` or ``"extra"``.
            update_cb: gets a copy of the current value (``{}`` when unset) and either changes it
                in place and returns None, or returns the new value.

        Returns:
            the new value.

        Raises:
            InvalidInput: the column is not updatable.
            NotFound: there is no such file.
        """
        if column not in UPDATABLE_JSON_COLUMNS:
            raise InvalidInput(f"cannot update column {column!r} (only {UPDATABLE_JSON_COLUMNS})")
        col = getattr(File, column)
        async with self.db.transaction() as session:
            locked = await session.execute(
                sa.update(File).where(File.id == file_id).values(id=File.id)
            )
            if locked.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"there is no file with id {file_id!r}")
            current = await session.scalar(sa.select(col).where(File.id == file_id))
            value = copy.deepcopy(current) if current else {}
            result = update_cb(value)
            new_value = value if result is None else result
            await session.execute(
                sa.update(File)
                .where(File.id == file_id)
                .values({column: new_value, "modified": self.db.clock()})
            )
        return new_value

    async def file_delete(self, file_id: str) -> None:
        """Delete the metadata of a file.

        Raises:
            NotFound: there is no such file.
        """
        async with self.db.transaction() as session:
            result = await session.execute(sa.delete(File).where(File.id == file_id))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"there is no file with id {file_id!r}")

    async def file_get_used_space(self, profile: str, owner: JID | None = None) -> int:
        """Total size in bytes of the files of a profile (of one owner's files when given).

        The owner is compared by bare JID.
        """
        profile_id = self.profiles.id_of(profile)
        stmt = sa.select(sa.func.coalesce(sa.func.sum(File.size), 0)).where(
            File.profile_id == profile_id, File.type == FileType.FILE
        )
        if owner is not None:
            bare = owner.userhostJID()
            owner_text = sa.type_coerce(File.owner, sa.Text)
            stmt = stmt.where(
                sa.or_(
                    owner_text == bare.full(),
                    owner_text.like(f"{_escape_like(bare.full())}/%", escape="\\"),
                )
            )
        async with self.db.transaction(read_only=True) as session:
            return int(await session.scalar(stmt) or 0)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
