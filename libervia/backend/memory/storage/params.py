"""Parameters (settings): general ones, and per-profile ones.

Values are stored as text; typing and defaults are the business of ``memory/params.py``. Secret
values arrive here already encrypted (see :mod:`libervia.backend.memory.secrets`).
"""

from __future__ import annotations

import sqlalchemy as sa

from libervia.backend.memory.sqla_mapping import ParamGen, ParamInd, Profile
from libervia.backend.memory.storage.base import Database
from libervia.backend.memory.storage.profiles import ProfileStore


class ParamStore:
    def __init__(self, db: Database, profiles: ProfileStore) -> None:
        self.db = db
        self.profiles = profiles

    async def load_gen_params(self) -> dict[tuple[str, str], str | None]:
        """Every general parameter, keyed by ``(category, name)``."""
        async with self.db.transaction(read_only=True) as session:
            rows = (await session.execute(sa.select(ParamGen))).scalars()
            return {(p.category, p.name): p.value for p in rows}

    async def load_ind_params(self, profile: str) -> dict[tuple[str, str], str | None]:
        """Every parameter of one profile, keyed by ``(category, name)``.

        Raises:
            ProfileUnknownError: there is no such profile.
        """
        profile_id = self.profiles.id_of(profile)
        async with self.db.transaction(read_only=True) as session:
            rows = (
                await session.execute(sa.select(ParamInd).where(ParamInd.profile_id == profile_id))
            ).scalars()
            return {(p.category, p.name): p.value for p in rows}

    async def get_ind_param(self, category: str, name: str, profile: str) -> str | None:
        """One parameter of a profile, or None when it was never set."""
        profile_id = self.profiles.id_of(profile)
        async with self.db.transaction(read_only=True) as session:
            return await session.scalar(
                sa.select(ParamInd.value).where(
                    ParamInd.category == category,
                    ParamInd.name == name,
                    ParamInd.profile_id == profile_id,
                )
            )

    async def get_ind_param_values(self, category: str, name: str) -> dict[str, str | None]:
        """The value of one parameter for every profile that has set it, keyed by profile name."""
        async with self.db.transaction(read_only=True) as session:
            rows = await session.execute(
                sa.select(Profile.name, ParamInd.value)
                .join(Profile, Profile.id == ParamInd.profile_id)
                .where(ParamInd.category == category, ParamInd.name == name)
            )
            return dict(rows.all())

    async def set_gen_param(self, category: str, name: str, value: str | None) -> None:
        """Set (insert or replace) a general parameter."""
        stmt = self.db.insert(ParamGen).values(category=category, name=name, value=value)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ParamGen.category, ParamGen.name], set_={"value": value}
        )
        async with self.db.transaction() as session:
            await session.execute(stmt)

    async def set_ind_param(
        self, category: str, name: str, value: str | None, profile: str
    ) -> None:
        """Set (insert or replace) a parameter of a profile."""
        profile_id = self.profiles.id_of(profile)
        stmt = self.db.insert(ParamInd).values(
            category=category, name=name, profile_id=profile_id, value=value
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[ParamInd.category, ParamInd.name, ParamInd.profile_id],
            set_={"value": value},
        )
        async with self.db.transaction() as session:
            await session.execute(stmt)
