"""The pubsub cache's storage: nodes, subscriptions and items (raw XML + optional parsed JSON).

The cache logic itself (analysers, synchronisation, triggers) is in
``plugins/plugin_pubsub_cache.py``; this store only reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.memory.sqla_mapping import PubsubItem, PubsubNode, SyncState
from libervia.backend.memory.storage import pubsub_search
from libervia.backend.memory.storage.base import Database
from libervia.backend.memory.storage.profiles import ProfileStore
from libervia.backend.tools import xml as xml_tools

log = get_logger(__name__)

ORDER_COLUMNS = {"creation": PubsubItem.created, "modification": PubsubItem.updated}


@dataclass(frozen=True)
class RSMResult:
    """Result Set Management metadata of a page of items (XEP-0059)."""

    #: number of items in the whole set
    count: int
    #: position of the first returned item in the whole set (None for an empty page)
    index: int | None
    first: str | None
    last: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PubsubStore:
    def __init__(self, db: Database, profiles: ProfileStore) -> None:
        self.db = db
        self.profiles = profiles

    # --- nodes --------------------------------------------------------------------------------

    async def get_pubsub_node(
        self,
        profile: str,
        service: JID,
        name: str,
        *,
        with_items: bool = False,
        with_subscriptions: bool = False,
        create: bool = False,
        create_kwargs: dict[str, Any] | None = None,
    ) -> PubsubNode | None:
        """Get a cached node (None when unknown, unless ``create`` is set).

        Args:
            with_items: load ``node.items`` too.
            with_subscriptions: load ``node.subscriptions`` too.
            create: create the node when it is not known yet.
            create_kwargs: arguments of :meth:`set_pubsub_node` when creating.
        """
        profile_id = self.profiles.id_of(profile)
        stmt = sa.select(PubsubNode).where(
            PubsubNode.profile_id == profile_id,
            PubsubNode.service == service,
            PubsubNode.name == name,
        )
        if with_items:
            stmt = stmt.options(selectinload(PubsubNode.items))
        if with_subscriptions:
            stmt = stmt.options(selectinload(PubsubNode.subscriptions))
        async with self.db.transaction(read_only=True) as session:
            node = await session.scalar(stmt)
        if node is None and create:
            if with_items or with_subscriptions:
                raise InvalidInput("a node being created has no items or subscriptions to load")
            node = await self.set_pubsub_node(profile, service, name, **(create_kwargs or {}))
        return node

    async def set_pubsub_node(
        self,
        profile: str,
        service: JID,
        name: str,
        *,
        analyser: str | None = None,
        type_: str | None = None,
        subtype: str | None = None,
        subscribed: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> PubsubNode:
        """Create (or update, when it exists) a cached node and return it."""
        profile_id = self.profiles.id_of(profile)
        table = PubsubNode.__table__
        # column names (the "type" column is the ``type_`` attribute)
        values = {
            "analyser": analyser,
            "type": type_,
            "subtype": subtype,
            "subscribed": subscribed,
            "extra": extra,
        }
        stmt = (
            self.db.insert(table)
            .values(
                profile_id=profile_id,
                service=service,
                name=name,
                sync_state=None,
                sync_state_updated=self.db.clock(),
                **values,
            )
            .on_conflict_do_update(
                index_elements=[table.c.profile_id, table.c.service, table.c.name], set_=values
            )
            .returning(table.c.id)
        )
        async with self.db.transaction() as session:
            node_id = (await session.execute(stmt)).scalar_one()
            node = await session.get_one(PubsubNode, node_id, populate_existing=True)
        return node

    async def get_pubsub_nodes(
        self, profile: str, sync_states: Sequence[SyncState | None] | None = None
    ) -> list[PubsubNode]:
        """The cached nodes of a profile (only those in ``sync_states`` when given)."""
        stmt = sa.select(PubsubNode).where(PubsubNode.profile_id == self.profiles.id_of(profile))
        if sync_states is not None:
            states = [s for s in sync_states if s is not None]
            condition = PubsubNode.sync_state.in_(states)
            if None in sync_states:
                condition = sa.or_(condition, PubsubNode.sync_state.is_(None))
            stmt = stmt.where(condition)
        async with self.db.transaction(read_only=True) as session:
            return list((await session.execute(stmt.order_by(PubsubNode.id))).scalars())

    async def update_pubsub_node_sync_state(self, node: PubsubNode, state: SyncState) -> None:
        """Set the synchronisation state of a node (and when it changed)."""
        now = self.db.clock()
        async with self.db.transaction() as session:
            await session.execute(
                sa.update(PubsubNode)
                .where(PubsubNode.id == node.id)
                .values(sync_state=state, sync_state_updated=now)
            )
        node.sync_state = state
        node.sync_state_updated = now

    async def delete_pubsub_node(
        self,
        profiles: Sequence[str] | None = None,
        services: Sequence[JID] | None = None,
        names: Sequence[str] | None = None,
    ) -> int:
        """Delete cached nodes (with their items and subscriptions) matching every filter.

        Returns:
            the number of nodes deleted.
        """
        stmt = sa.delete(PubsubNode)
        if profiles is not None:
            stmt = stmt.where(PubsubNode.profile_id.in_([self.profiles.id_of(p) for p in profiles]))
        if services is not None:
            stmt = stmt.where(PubsubNode.service.in_(list(services)))
        if names is not None:
            stmt = stmt.where(PubsubNode.name.in_(list(names)))
        async with self.db.transaction() as session:
            result = await session.execute(stmt)
            return result.rowcount  # type: ignore[attr-defined,no-any-return]

    # --- items --------------------------------------------------------------------------------

    async def cache_pubsub_items(
        self,
        node: PubsubNode,
        items: Sequence[domish.Element],
        parsed_items: Sequence[dict[str, Any] | None] | None = None,
    ) -> int:
        """Insert or update items (by item id) in one transaction.

        A new item gets ``created = updated = now``; an updated one keeps its ``created``. The raw
        XML is always stored; ``parsed_items`` (same order as ``items``) adds the parsed data.
        Items without an ``id`` cannot be cached and are skipped (logged).

        Returns:
            the number of items written.
        """
        if parsed_items is not None and len(parsed_items) != len(items):
            raise InvalidInput("items and parsed_items must have the same length")
        now = self.db.clock()
        rows: dict[str, dict[str, Any]] = {}
        for idx, item in enumerate(items):
            name = item.getAttribute("id")
            if not name:
                log.warning("pubsub item without id on node %r: not cached", node.name)
                continue
            rows[name] = {  # the last version of an item wins
                "node_id": node.id,
                "name": name,
                "data": xml_tools.serialise(item),
                "created": now,
                "updated": now,
                "parsed": parsed_items[idx] if parsed_items is not None else None,
            }
        if not rows:
            return 0
        stmt = self.db.insert(PubsubItem)
        stmt = stmt.on_conflict_do_update(
            index_elements=[PubsubItem.node_id, PubsubItem.name],
            set_={
                "data": stmt.excluded.data,
                "updated": stmt.excluded.updated,
                "parsed": stmt.excluded.parsed,
            },
        )
        values = list(rows.values())
        async with self.db.transaction() as session:
            for start in range(0, len(values), 500):
                await session.execute(stmt, values[start : start + 500])
        return len(values)

    async def delete_pubsub_items(
        self, node: PubsubNode, item_names: Sequence[str] | None = None
    ) -> int:
        """Delete some items of a node (all of them when ``item_names`` is None)."""
        stmt = sa.delete(PubsubItem).where(PubsubItem.node_id == node.id)
        if item_names is not None:
            stmt = stmt.where(PubsubItem.name.in_(list(item_names)))
        async with self.db.transaction() as session:
            result = await session.execute(stmt)
            return result.rowcount  # type: ignore[attr-defined,no-any-return]

    async def purge_pubsub_items(
        self,
        *,
        profiles: Sequence[str] | None = None,
        services: Sequence[JID] | None = None,
        names: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        subtypes: Sequence[str] | None = None,
        created_before: float | None = None,
        updated_before: float | None = None,
    ) -> int:
        """Delete cached items in bulk, on nodes and dates matching every given filter.

        Returns:
            the number of items deleted.
        """
        nodes = sa.select(PubsubNode.id)
        if profiles is not None:
            nodes = nodes.where(
                PubsubNode.profile_id.in_([self.profiles.id_of(p) for p in profiles])
            )
        if services is not None:
            nodes = nodes.where(PubsubNode.service.in_(list(services)))
        if names is not None:
            nodes = nodes.where(PubsubNode.name.in_(list(names)))
        if types is not None:
            nodes = nodes.where(PubsubNode.type_.in_(list(types)))
        if subtypes is not None:
            nodes = nodes.where(PubsubNode.subtype.in_(list(subtypes)))
        stmt = sa.delete(PubsubItem).where(PubsubItem.node_id.in_(nodes))
        if created_before is not None:
            stmt = stmt.where(PubsubItem.created < created_before)
        if updated_before is not None:
            stmt = stmt.where(PubsubItem.updated < updated_before)
        async with self.db.transaction() as session:
            result = await session.execute(stmt)
            return result.rowcount  # type: ignore[attr-defined,no-any-return]

    async def get_items(
        self,
        node: PubsubNode,
        *,
        max_items: int | None = None,
        item_ids: Sequence[str] | None = None,
        before: str | None = None,
        after: str | None = None,
        from_index: int | None = None,
        order_by: str = "creation",
        desc: bool = True,
    ) -> tuple[list[PubsubItem], RSMResult]:
        """A page of the items of a node, with RSM metadata.

        The set is the node's items (only ``item_ids`` when given) sorted by ``order_by``
        (``"creation"`` or ``"modification"``), newest first unless ``desc`` is False. Paging
        follows XEP-0059 on that sorted set:

        - ``after=NAME``: the ``max_items`` items following NAME;
        - ``before=NAME``: the ``max_items`` items preceding NAME; ``before=""``: the last page;
        - ``from_index=N``: ``max_items`` items from position N;
        - nothing: the first ``max_items`` items (the newest, by default).

        Raises:
            InvalidInput: unknown ``order_by``, negative ``max_items`` or index, or several of
                ``before``/``after``/``from_index``.
            NotFound: the ``before``/``after`` item is not in the set.
        """
        if order_by not in ORDER_COLUMNS:
            raise InvalidInput(f"order_by must be one of {sorted(ORDER_COLUMNS)}, not {order_by!r}")
        if sum(x is not None for x in (before, after, from_index)) > 1:
            raise InvalidInput("use only one of before, after and from_index")
        if (max_items is not None and max_items < 0) or (from_index is not None and from_index < 0):
            raise InvalidInput("max_items and from_index must not be negative")
        key = ORDER_COLUMNS[order_by]
        where: list[Any] = [PubsubItem.node_id == node.id]
        if item_ids is not None:
            where.append(PubsubItem.name.in_(list(item_ids)))
        # sort order of the set, and its reverse
        forward = [key.desc(), PubsubItem.id.desc()] if desc else [key.asc(), PubsubItem.id.asc()]
        backward = [key.asc(), PubsubItem.id.asc()] if desc else [key.desc(), PubsubItem.id.desc()]
        row_key = sa.tuple_(key, PubsubItem.id)

        def preceding(pivot: tuple[float, int]) -> Any:
            """Items before ``pivot`` in the set's order."""
            return row_key > pivot if desc else row_key < pivot

        def following(pivot: tuple[float, int]) -> Any:
            return row_key < pivot if desc else row_key > pivot

        async with self.db.transaction(read_only=True) as session:
            count = await session.scalar(sa.select(sa.func.count()).where(*where)) or 0

            async def pivot_of(name: str) -> tuple[float, int]:
                row = (
                    await session.execute(
                        sa.select(key, PubsubItem.id).where(*where, PubsubItem.name == name)
                    )
                ).first()
                if row is None:
                    raise NotFound(f"item {name!r} is not in node {node.name!r}")
                return row[0], row[1]

            stmt = sa.select(PubsubItem).where(*where)
            reverse = False
            if after is not None:
                stmt = stmt.where(following(await pivot_of(after))).order_by(*forward)
            elif before is not None:
                if before != "":
                    stmt = stmt.where(preceding(await pivot_of(before)))
                stmt = stmt.order_by(*backward)
                reverse = True
            else:
                stmt = stmt.order_by(*forward)
                if from_index:
                    stmt = stmt.offset(from_index)
            if max_items is not None:
                stmt = stmt.limit(max_items)
            items = list((await session.execute(stmt)).scalars())
            if reverse:
                items.reverse()
            index = None
            if items:
                first = items[0]
                first_key = (getattr(first, key.key), first.id)
                index = (
                    await session.scalar(
                        sa.select(sa.func.count()).where(*where, preceding(first_key))
                    )
                    or 0
                )
        return items, RSMResult(
            count=count,
            index=index,
            first=items[0].name if items else None,
            last=items[-1].name if items else None,
        )

    async def search_pubsub_items(self, query: dict[str, Any]) -> list[PubsubItem]:
        """Search the cached items (see :mod:`.pubsub_search` for the query format).

        The items come with their ``node`` loaded.

        Raises:
            InvalidInput: the query is malformed (unknown key or operator, wrong value type).
            ProfileUnknownError: a profile of ``profiles`` does not exist.
        """
        if not isinstance(query, dict):
            raise InvalidInput("a search query is a dict")
        profile_ids = None
        if query.get("profiles") is not None:
            if not isinstance(query["profiles"], list | tuple):
                raise InvalidInput("'profiles' must be a list")
            profile_ids = [self.profiles.id_of(p) for p in query["profiles"]]
        stmt = pubsub_search.build_query(self.db, query, profile_ids)
        stmt = stmt.options(joinedload(PubsubItem.node))
        async with self.db.transaction(read_only=True) as session:
            return list((await session.execute(stmt)).scalars())
