"""Secrets at rest: encrypted parameters, profile passwords never stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from libervia.backend.core.exceptions import DecryptionError, PasswordError
from libervia.backend.memory import secrets
from libervia.backend.memory.sqla import Storage
from libervia.backend.memory.sqla_mapping import Base
from tests.conftest import aio

XMPP_PASSWORD = "xmpp-Pässwörd-7c1f0e"
PROFILE_PASSWORD = "profile-secret-94b2d1"


async def all_stored_text(storage: Storage) -> str:
    """Every value of every table, as text."""
    chunks = []
    async with storage.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


@aio
async def test_secret_param_roundtrip(storage: Storage) -> None:
    """A secret parameter is stored encrypted and read back with the personal key."""
    await storage.create_profile("alice")
    key = await secrets.init_profile(storage, "alice", PROFILE_PASSWORD)
    await secrets.set_secret_param(storage, key, "Connection", "Password", XMPP_PASSWORD, "alice")
    stored = await storage.get_ind_param("Connection", "Password", "alice")
    assert stored is not None and stored.startswith("v1$") and XMPP_PASSWORD not in stored
    unlocked = await secrets.unlock(storage, "alice", PROFILE_PASSWORD)
    assert unlocked == key
    value = await secrets.get_secret_param(storage, unlocked, "Connection", "Password", "alice")
    assert value == XMPP_PASSWORD
    assert await secrets.get_secret_param(storage, key, "Connection", "Other", "alice") is None
    text = await all_stored_text(storage)
    assert XMPP_PASSWORD not in text and PROFILE_PASSWORD not in text


@aio
async def test_raw_sqlite_file_has_no_clear_password(tmp_path: Path) -> None:
    """The bytes of the database file (and its WAL) never contain a password in clear."""
    path = tmp_path / "libervia.db"
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    await storage.initialise()
    await storage.create_profile("alice")
    key = await secrets.init_profile(storage, "alice", PROFILE_PASSWORD)
    await secrets.set_secret_param(storage, key, "Connection", "Password", XMPP_PASSWORD, "alice")
    # a canary stored in clear proves the scan reads what was written
    await storage.set_ind_param("Connection", "JabberID", "canary-alice@example.org", "alice")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("libervia.db"))
    await storage.close()
    raw += path.read_bytes()  # after the final checkpoint too
    assert b"canary-alice@example.org" in raw
    for secret in (XMPP_PASSWORD, PROFILE_PASSWORD):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(encoding) not in raw


@aio
async def test_wrong_profile_password(storage: Storage) -> None:
    """A wrong profile password is a PasswordError, never a decryption traceback."""
    await storage.create_profile("alice")
    await secrets.init_profile(storage, "alice", PROFILE_PASSWORD)
    with pytest.raises(PasswordError, match="alice"):
        await secrets.unlock(storage, "alice", "wrong")
    with pytest.raises(PasswordError):
        await secrets.unlock(storage, "alice", "")


@aio
async def test_change_password_keeps_secrets(storage: Storage) -> None:
    """Changing the profile password keeps the secrets readable with the new one only."""
    await storage.create_profile("alice")
    key = await secrets.init_profile(storage, "alice", PROFILE_PASSWORD)
    await secrets.set_secret_param(storage, key, "Connection", "Password", XMPP_PASSWORD, "alice")
    with pytest.raises(PasswordError):
        await secrets.change_password(storage, "alice", "wrong", "new")
    await secrets.change_password(storage, "alice", PROFILE_PASSWORD, "new password")
    with pytest.raises(PasswordError):
        await secrets.unlock(storage, "alice", PROFILE_PASSWORD)
    key2 = await secrets.unlock(storage, "alice", "new password")
    assert key2 == key
    assert (
        await secrets.get_secret_param(storage, key2, "Connection", "Password", "alice")
        == XMPP_PASSWORD
    )


@aio
async def test_tampered_or_moved_secret_is_detected(storage: Storage) -> None:
    """A modified ciphertext, or one copied under another name, is refused."""
    await storage.create_profile("alice")
    key = await secrets.init_profile(storage, "alice", "")
    await secrets.set_secret_param(storage, key, "Connection", "Password", XMPP_PASSWORD, "alice")
    token = await storage.get_ind_param("Connection", "Password", "alice")
    assert token is not None
    await storage.set_ind_param("Other", "Password", token, "alice")
    with pytest.raises(DecryptionError):
        await secrets.get_secret_param(storage, key, "Other", "Password", "alice")
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    await storage.set_ind_param("Connection", "Password", flipped, "alice")
    with pytest.raises(DecryptionError):
        await secrets.get_secret_param(storage, key, "Connection", "Password", "alice")
    await storage.set_ind_param("Connection", "Password", "clear text", "alice")
    with pytest.raises(DecryptionError):
        await secrets.get_secret_param(storage, key, "Connection", "Password", "alice")


@aio
async def test_profile_without_personal_key(storage: Storage) -> None:
    """Unlocking a profile that has no personal key is a clear error."""
    await storage.create_profile("alice")
    with pytest.raises(DecryptionError, match="no personal key"):
        await secrets.unlock(storage, "alice", "x")
