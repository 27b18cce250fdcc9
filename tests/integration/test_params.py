"""memory.params: declared parameters, types, defaults, security limits, encrypted passwords."""

from __future__ import annotations

import pytest

from libervia.backend.core.exceptions import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    ProfileUnknownError,
)
from libervia.backend.memory import secrets
from libervia.backend.memory.params import ParamDef, Params, ParamType
from libervia.backend.memory.sqla import Storage
from tests.conftest import aio


@aio
async def test_connection_params(storage: Storage) -> None:
    """The Connection parameters users know exist, with defaults, types and round trips."""
    await storage.create_profile("alice")
    params = Params(storage)
    assert await params.get("Connection", "JabberID", "alice") == ""
    assert await params.get("Connection", "check_certificate", "alice") is True
    await params.set("Connection", "JabberID", "alice@example.org", "alice")
    await params.set("Connection", "check_certificate", "false", "alice")
    await params.set("Connection", "autoconnect", True, "alice")
    assert await params.get("Connection", "JabberID", "alice") == "alice@example.org"
    assert await params.get("Connection", "check_certificate", "alice") is False
    assert await params.get("Connection", "autoconnect", "alice") is True
    with pytest.raises(InvalidInput, match="boolean"):
        await params.set("Connection", "autoconnect", "maybe", "alice")
    with pytest.raises(NotFound):
        await params.get("Connection", "Nope", "alice")
    with pytest.raises(InvalidInput, match="per profile"):
        await params.get("Connection", "JabberID")
    with pytest.raises(ProfileUnknownError):
        await params.get("Connection", "JabberID", "bob")


@aio
async def test_password_param_is_encrypted(storage: Storage) -> None:
    """Password parameters need the unlocked key, are stored encrypted, and read masked
    without the key."""
    await storage.create_profile("alice")
    key = await secrets.init_profile(storage, "alice", "profile pass")
    params = Params(storage)
    assert await params.get("Connection", "Password", "alice") == ""
    with pytest.raises(InvalidInput, match="session"):
        await params.set("Connection", "Password", "xmpp-secret", "alice")
    await params.set("Connection", "Password", "xmpp-secret", "alice", personal_key=key)
    raw = await storage.get_ind_param("Connection", "Password", "alice")
    assert raw is not None and "xmpp-secret" not in raw
    assert await params.get("Connection", "Password", "alice") == "********"
    assert await params.get("Connection", "Password", "alice", personal_key=key) == "xmpp-secret"


@aio
async def test_security_limit_and_general_params(storage: Storage) -> None:
    """Parameters above the caller's security limit are refused; general ones need no
    profile; list parameters only take their options; declarations cannot conflict."""
    await storage.create_profile("alice")
    params = Params(storage)
    with pytest.raises(PermissionDenied):
        await params.get("Connection", "Force server", "alice", security_limit=0)
    assert await params.get("Connection", "Force server", "alice", security_limit=50) == ""
    params.declare(
        ParamDef("General", "lang", ParamType.LIST, "en", individual=False, options=("en", "fr"))
    )
    params.declare(ParamDef("General", "size", ParamType.INT, 3, individual=False))
    assert await params.get("General", "lang") == "en"
    await params.set("General", "lang", "fr")
    await params.set("General", "size", "12")
    assert await params.get("General", "lang") == "fr"
    assert await params.get("General", "size") == 12
    with pytest.raises(InvalidInput):
        await params.set("General", "lang", "de")
    with pytest.raises(InvalidInput):
        await params.set("General", "size", "twelve")
    with pytest.raises(InvalidInput, match="differently"):
        params.declare(ParamDef("General", "size", ParamType.STRING))
    with pytest.raises(InvalidInput):
        params.declare(ParamDef("General", "secret", ParamType.PASSWORD, individual=False))
