"""Profiles: creation, deletion, the default profile, and sessions.

A profile's session holds its *personal key* (:mod:`libervia.backend.memory.secrets`), needed
to read and write its secrets (the XMPP password). Starting the session means unlocking that key
with the profile password; a profile created with an empty password is unprotected, its session
starts on demand. A protected profile cannot be connected, nor its secrets read or written,
until its session is started with the right password.

The default profile (what ``@DEFAULT@`` names): the one chosen with :meth:`set_default`, else
the ``default_profile`` option of ``libervia.conf``, else the first profile by name.
"""

from __future__ import annotations

from libervia.backend.core.config import Config
from libervia.backend.core.exceptions import (
    InvalidInput,
    PasswordError,
    ProfileUnknownError,
)
from libervia.backend.core.log import get_logger
from libervia.backend.memory import secrets
from libervia.backend.memory.params import ParamDef, Params, ParamType
from libervia.backend.memory.sqla import Storage

log = get_logger(__name__)

DEFAULT_KEY = "@DEFAULT@"
DEFAULT_PARAM = ParamDef(
    "General", "default_profile", ParamType.STRING, "", individual=False, security=0
)


class ProfileManager:
    def __init__(self, storage: Storage, params: Params, config: Config) -> None:
        self.storage = storage
        self.params = params
        self.config = config
        params.declare(DEFAULT_PARAM)
        #: profile -> unlocked personal key
        self._sessions: dict[str, bytes] = {}

    # --- names --------------------------------------------------------------------------------

    def list(self, clients: bool = True, components: bool = False) -> list[str]:
        """Profile names, sorted; clients and/or components."""
        return sorted(
            name
            for name in self.storage.get_profiles_list()
            if (components if self.storage.profile_is_component(name) else clients)
        )

    async def get_name(self, profile_key: str) -> str:
        """Resolve a profile key (a name, or ``@DEFAULT@``) to an existing profile name.

        Raises:
            ProfileUnknownError: no such profile (or no profile at all for ``@DEFAULT@``).
        """
        if profile_key in ("", DEFAULT_KEY):
            return await self.default()
        if not self.storage.has_profile(profile_key):
            raise ProfileUnknownError(f"there is no profile named {profile_key!r}")
        return profile_key

    async def default(self) -> str:
        chosen = await self.params.get("General", "default_profile")
        if chosen and self.storage.has_profile(chosen):
            return str(chosen)
        configured = self.config.get("default_profile")
        if configured and self.storage.has_profile(configured):
            return configured
        names = self.list(clients=True, components=False)
        if not names:
            raise ProfileUnknownError("there is no profile yet: create one (profile_create)")
        return names[0]

    async def set_default(self, profile: str) -> None:
        name = await self.get_name(profile)
        await self.params.set("General", "default_profile", name)

    # --- lifecycle ----------------------------------------------------------------------------

    async def create(self, name: str, password: str = "", component: str = "") -> None:
        """Create a profile protected by ``password`` (empty: unprotected).

        Raises:
            ProfileExistsError, InvalidInput: see Storage.create_profile.
        """
        if not isinstance(password, str):
            raise InvalidInput("the profile password must be text")
        await self.storage.create_profile(name, component or None)
        try:
            # the session is not started: a protected profile needs its password before use
            await secrets.init_profile(self.storage, name, password)
        except BaseException:
            await self.storage.delete_profile(name)
            raise
        log.info("profile %r created", name)

    async def delete(self, name: str) -> None:
        """Delete a profile and everything stored for it (the caller disconnects it first)."""
        await self.storage.delete_profile(name)
        self._sessions.pop(name, None)
        log.info("profile %r deleted", name)

    # --- sessions -----------------------------------------------------------------------------

    def is_session_started(self, name: str) -> bool:
        return name in self._sessions

    async def start_session(self, name: str, password: str) -> bool:
        """Unlock a profile's personal key; False when the session was already started (the
        password is checked all the same).

        Raises:
            PasswordError: wrong profile password (clear message, nothing changes).
            ProfileUnknownError: no such profile.
        """
        if not self.storage.has_profile(name):
            raise ProfileUnknownError(f"there is no profile named {name!r}")
        # the password is checked even when the session is already started
        key = await secrets.unlock(self.storage, name, password)
        if name in self._sessions:
            return False
        self._sessions[name] = key
        return True

    async def personal_key(self, name: str) -> bytes:
        """The personal key of a profile whose session is started (or unprotected).

        Raises:
            PasswordError: the profile is protected and its session is not started.
        """
        key = self._sessions.get(name)
        if key is not None:
            return key
        try:
            await self.start_session(name, "")
        except PasswordError:
            raise PasswordError(
                f"profile {name!r} is protected by a password: start its session first "
                "(profile_start_session, or connect with the profile password)"
            ) from None
        return self._sessions[name]

    async def change_password(self, name: str, old: str, new: str) -> None:
        """Protect a profile with another password (empty: unprotected).

        Raises:
            PasswordError: ``old`` is wrong (nothing changes).
        """
        if not isinstance(new, str):
            raise InvalidInput("the profile password must be text")
        await secrets.change_password(self.storage, name, old, new)
        log.info("profile %r: password changed", name)

    def end_session(self, name: str) -> None:
        self._sessions.pop(name, None)
