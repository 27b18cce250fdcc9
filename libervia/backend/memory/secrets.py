"""Profile secrets: XMPP passwords and other secret parameters, encrypted at rest.

Each profile has a random *personal key*. It is stored encrypted with a key derived (scrypt)
from the profile password, so:

- the profile password itself is stored nowhere; checking it means decrypting the personal key
  (AES-GCM authenticates: a wrong password is detected);
- changing the profile password re-encrypts only the personal key;
- secret parameters are encrypted with the personal key, bound to their category and name.

A profile without a password uses the empty password: its secrets are not in clear text in the
database, but anyone with the file can decrypt them. Users who care set a profile password.
"""

from __future__ import annotations

import asyncio
import base64
import json

from libervia.backend.core.exceptions import DecryptionError, PasswordError
from libervia.backend.memory import crypto
from libervia.backend.memory.sqla import Storage

#: private namespace holding the encrypted personal key of each profile
NAMESPACE = "libervia.core.secrets"
PERSONAL_KEY = "personal_key"


async def init_profile(storage: Storage, profile: str, password: str) -> bytes:
    """Create the personal key of a new profile, stored encrypted; return the clear key."""
    personal_key = crypto.new_key()
    await _store_personal_key(storage, profile, password, personal_key)
    return personal_key


async def _store_personal_key(
    storage: Storage, profile: str, password: str, personal_key: bytes
) -> None:
    salt = crypto.new_salt()
    wrapping_key = await _derive(password, salt)
    record = {
        "salt": base64.b64encode(salt).decode("ascii"),
        "key": crypto.encrypt(wrapping_key, personal_key, profile.encode("utf-8")),
    }
    await storage.set_private_value(NAMESPACE, PERSONAL_KEY, record, profile=profile)


async def _derive(password: str, salt: bytes) -> bytes:
    # scrypt takes ~0.1 s of CPU: keep the event loop free
    return await asyncio.to_thread(crypto.derive_key, password, salt)


async def unlock(storage: Storage, profile: str, password: str) -> bytes:
    """Return the personal key of a profile.

    Raises:
        PasswordError: wrong profile password.
        ProfileUnknownError: there is no such profile.
        DecryptionError: the profile has no personal key (not initialised).
    """
    privates = await storage.get_privates(NAMESPACE, [PERSONAL_KEY], profile=profile)
    record = privates.get(PERSONAL_KEY)
    if not record:
        raise DecryptionError(f"profile {profile!r} has no personal key")
    wrapping_key = await _derive(password, base64.b64decode(record["salt"]))
    try:
        return crypto.decrypt(wrapping_key, record["key"], profile.encode("utf-8"))
    except DecryptionError:
        raise PasswordError(f"wrong password for profile {profile!r}") from None


async def change_password(storage: Storage, profile: str, old: str, new: str) -> None:
    """Re-encrypt the personal key with a new profile password.

    Raises:
        PasswordError: ``old`` is wrong.
    """
    personal_key = await unlock(storage, profile, old)
    await _store_personal_key(storage, profile, new, personal_key)


def _associated_data(category: str, name: str) -> bytes:
    return json.dumps([category, name]).encode("utf-8")


async def set_secret_param(
    storage: Storage, personal_key: bytes, category: str, name: str, value: str, profile: str
) -> None:
    """Store a secret parameter of a profile, encrypted with its personal key."""
    token = crypto.encrypt(personal_key, value.encode("utf-8"), _associated_data(category, name))
    await storage.set_ind_param(category, name, token, profile)


async def get_secret_param(
    storage: Storage, personal_key: bytes, category: str, name: str, profile: str
) -> str | None:
    """Read a secret parameter (None when unset).

    Raises:
        DecryptionError: the stored value is damaged or was not encrypted with this key.
    """
    token = await storage.get_ind_param(category, name, profile)
    if token is None:
        return None
    return crypto.decrypt(personal_key, token, _associated_data(category, name)).decode("utf-8")
