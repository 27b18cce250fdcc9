"""Parameters (settings): declared with a type and a default, stored per profile or general.

Core and plugins declare their parameters with :meth:`Params.declare`; values are read and
written through :meth:`Params.get` / :meth:`Params.set`, which check the declaration, convert to
and from text, apply defaults, and encrypt ``password`` parameters with the profile's personal
key (:mod:`libervia.backend.memory.secrets`): a secret is never stored in clear.

Security limits: each parameter has a ``security`` level (0: harmless, readable by any
frontend; higher: more sensitive). A caller passes its ``security_limit``: parameters above it
are refused (-1 means no limit, for trusted callers).

The connection parameters Libervia users know (category ``Connection``): ``JabberID``,
``Password``, ``Force server``, ``Force port``, ``check_certificate``, ``autoconnect``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from libervia.backend.core.exceptions import InvalidInput, NotFound, PermissionDenied
from libervia.backend.memory import secrets
from libervia.backend.memory.sqla import Storage

NO_SECURITY_LIMIT = -1


class ParamType(StrEnum):
    STRING = "string"
    PASSWORD = "password"
    BOOL = "bool"
    INT = "int"
    LIST = "list"


@dataclass(frozen=True)
class ParamDef:
    """The declaration of a parameter."""

    category: str
    name: str
    type: ParamType
    default: Any = None
    #: per profile (True) or general (False)
    individual: bool = True
    security: int = 0
    #: allowed values of a LIST parameter
    options: tuple[str, ...] = ()
    label: str = ""

    def to_text(self, value: Any) -> str:
        """Validate a value (Python or text) and give its stored text form.

        Raises:
            InvalidInput: the value does not fit the type.
        """
        where = f"parameter {self.category}/{self.name}"
        if self.type is ParamType.BOOL:
            if isinstance(value, bool):
                return "true" if value else "false"
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return "true"
            if text in ("false", "0", "no", "off"):
                return "false"
            raise InvalidInput(f"{where} is a boolean, not {value!r}")
        if self.type is ParamType.INT:
            try:
                return str(int(str(value).strip()))
            except ValueError:
                raise InvalidInput(f"{where} is an integer, not {value!r}") from None
        if not isinstance(value, str):
            raise InvalidInput(f"{where} is text, not {type(value).__name__}")
        if self.type is ParamType.LIST and value not in self.options:
            raise InvalidInput(f"{where} must be one of {list(self.options)}, not {value!r}")
        return value

    def from_text(self, text: str | None) -> Any:
        """The Python value of stored text (the default when unset)."""
        if text is None:
            return self.default
        if self.type is ParamType.BOOL:
            return text == "true"
        if self.type is ParamType.INT:
            return int(text)
        return text


CONNECTION_PARAMS = (
    ParamDef("Connection", "JabberID", ParamType.STRING, "", security=0, label="XMPP address"),
    ParamDef("Connection", "Password", ParamType.PASSWORD, "", security=0, label="XMPP password"),
    ParamDef("Connection", "Force server", ParamType.STRING, "", security=50),
    ParamDef("Connection", "Force port", ParamType.STRING, "", security=50),
    ParamDef("Connection", "check_certificate", ParamType.BOOL, True, security=4),
    ParamDef("Connection", "autoconnect", ParamType.BOOL, False),
)


class Params:
    """Declared parameters and their values."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._defs: dict[tuple[str, str], ParamDef] = {}
        for definition in CONNECTION_PARAMS:
            self.declare(definition)

    def declare(self, definition: ParamDef) -> None:
        """Declare a parameter (plugins do it at load time).

        Raises:
            InvalidInput: already declared differently, or a bad default.
        """
        key = (definition.category, definition.name)
        existing = self._defs.get(key)
        if existing is not None and existing != definition:
            raise InvalidInput(f"parameter {key[0]}/{key[1]} is already declared differently")
        if definition.type is ParamType.PASSWORD and not definition.individual:
            raise InvalidInput("password parameters are per profile (encrypted with its key)")
        if definition.default is not None and definition.type is not ParamType.PASSWORD:
            definition.to_text(definition.default)
        self._defs[key] = definition

    def definition(self, category: str, name: str) -> ParamDef:
        """Raises NotFound for an undeclared parameter."""
        try:
            return self._defs[(category, name)]
        except KeyError:
            raise NotFound(f"there is no parameter {category}/{name}") from None

    def definitions(self) -> list[ParamDef]:
        return list(self._defs.values())

    def _check(
        self, category: str, name: str, security_limit: int, profile: str | None
    ) -> ParamDef:
        definition = self.definition(category, name)
        if security_limit != NO_SECURITY_LIMIT and definition.security > security_limit:
            raise PermissionDenied(
                f"parameter {category}/{name} needs security limit {definition.security} "
                f"(caller has {security_limit})"
            )
        if definition.individual and profile is None:
            raise InvalidInput(f"parameter {category}/{name} is per profile: give the profile")
        return definition

    async def set(
        self,
        category: str,
        name: str,
        value: Any,
        profile: str | None = None,
        *,
        security_limit: int = NO_SECURITY_LIMIT,
        personal_key: bytes | None = None,
    ) -> None:
        """Validate and store a value.

        Args:
            personal_key: the profile's unlocked key, needed for ``password`` parameters.

        Raises:
            NotFound: undeclared parameter.
            PermissionDenied: above the caller's security limit.
            InvalidInput: the value does not fit, or no key for a password.
            ProfileUnknownError: no such profile.
        """
        definition = self._check(category, name, security_limit, profile)
        text = definition.to_text(value)
        if definition.type is ParamType.PASSWORD:
            if personal_key is None:
                raise InvalidInput(f"storing {category}/{name} needs the profile's session")
            assert profile is not None
            await secrets.set_secret_param(
                self.storage, personal_key, category, name, text, profile
            )
        elif definition.individual:
            assert profile is not None
            await self.storage.set_ind_param(category, name, text, profile)
        else:
            await self.storage.set_gen_param(category, name, text)

    async def get(
        self,
        category: str,
        name: str,
        profile: str | None = None,
        *,
        security_limit: int = NO_SECURITY_LIMIT,
        personal_key: bytes | None = None,
    ) -> Any:
        """The value of a parameter (its default when never set).

        Password parameters are decrypted with ``personal_key``; without it, they read as
        ``"********"`` when set (frontends never need the clear text), ``""`` when not.
        """
        definition = self._check(category, name, security_limit, profile)
        if definition.type is ParamType.PASSWORD:
            assert profile is not None
            if personal_key is None:
                stored = await self.storage.get_ind_param(category, name, profile)
                return "********" if stored else ""
            value = await secrets.get_secret_param(
                self.storage, personal_key, category, name, profile
            )
            return definition.default if value is None else value
        if definition.individual:
            assert profile is not None
            text = await self.storage.get_ind_param(category, name, profile)
        else:
            text = (await self.storage.load_gen_params()).get((category, name))
        return definition.from_text(text)
