"""Profiles: one per XMPP account (or component) handled by the daemon."""

from __future__ import annotations

import sqlalchemy as sa

from libervia.backend.core.exceptions import (
    InvalidInput,
    NotFound,
    ProfileExistsError,
    ProfileUnknownError,
)
from libervia.backend.memory.sqla_mapping import Component, Profile
from libervia.backend.memory.storage.base import Database


class ProfileStore:
    """Profiles, with a name -> id cache (profiles are few and names are used everywhere)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ids: dict[str, int] = {}
        self._components: dict[int, str] = {}

    async def load(self) -> None:
        """Fill the cache from the database (called by ``Storage.initialise``)."""
        async with self.db.transaction(read_only=True) as session:
            profiles = (await session.execute(sa.select(Profile.name, Profile.id))).all()
            components = (
                await session.execute(sa.select(Component.profile_id, Component.entry_point))
            ).all()
        self._ids = dict(profiles)
        self._components = dict(components)

    def id_of(self, profile: str) -> int:
        """Return the database id of a profile.

        Raises:
            ProfileUnknownError: there is no such profile.
        """
        try:
            return self._ids[profile]
        except KeyError:
            raise ProfileUnknownError(f"there is no profile named {profile!r}") from None

    def name_of(self, profile_id: int) -> str:
        """The name of the profile with this database id.

        Raises:
            ProfileUnknownError: there is no such profile.
        """
        for name, known_id in self._ids.items():
            if known_id == profile_id:
                return name
        raise ProfileUnknownError(f"there is no profile with id {profile_id}")

    def get_profiles_list(self) -> list[str]:
        """Names of every profile, sorted."""
        return sorted(self._ids)

    def has_profile(self, profile: str) -> bool:
        """Whether a profile with this exact name exists."""
        return profile in self._ids

    def profile_is_component(self, profile: str) -> bool:
        """Whether the profile is a component (rather than a client).

        Raises:
            ProfileUnknownError: there is no such profile.
        """
        return self.id_of(profile) in self._components

    def get_entry_point(self, profile: str) -> str:
        """Entry point (plugin import name) of a component profile.

        Raises:
            ProfileUnknownError: there is no such profile.
            NotFound: the profile is not a component.
        """
        try:
            return self._components[self.id_of(profile)]
        except KeyError:
            raise NotFound(f"profile {profile!r} is not a component") from None

    async def create_profile(self, name: str, component_ep: str | None = None) -> int:
        """Create a profile (a component when ``component_ep`` is given); return its id.

        Raises:
            ProfileExistsError: the name is taken.
            InvalidInput: the name is empty, starts with "@" (reserved), or has control
                characters or surrounding spaces.
        """
        if not name or name != name.strip() or name.startswith("@"):
            raise InvalidInput(
                f"invalid profile name {name!r}: it must not be empty, start with '@', or start "
                "or end with spaces"
            )
        if any(ord(c) < 32 for c in name):
            raise InvalidInput(f"invalid profile name {name!r}: control characters")
        if name in self._ids:
            raise ProfileExistsError(f"a profile named {name!r} already exists")
        try:
            async with self.db.transaction() as session:
                profile = Profile(name=name)
                session.add(profile)
                await session.flush()
                if component_ep is not None:
                    session.add(Component(profile_id=profile.id, entry_point=component_ep))
        except sa.exc.IntegrityError:
            raise ProfileExistsError(f"a profile named {name!r} already exists") from None
        self._ids[name] = profile.id
        if component_ep is not None:
            self._components[profile.id] = component_ep
        return profile.id

    async def delete_profile(self, name: str) -> None:
        """Delete a profile and everything stored for it (history, params, files, cache...).

        Raises:
            ProfileUnknownError: there is no such profile.
        """
        profile_id = self.id_of(name)
        async with self.db.transaction() as session:
            await session.execute(sa.delete(Profile).where(Profile.id == profile_id))
        del self._ids[name]
        self._components.pop(profile_id, None)
