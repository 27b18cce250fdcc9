"""memory.crypto: key derivation and authenticated encryption."""

import pytest

from libervia.backend.core.exceptions import DecryptionError
from libervia.backend.memory import crypto


def test_roundtrip_and_randomised() -> None:
    """Encrypting twice gives different texts that both decrypt to the plaintext."""
    key = crypto.new_key()
    a = crypto.encrypt(key, b"secret", b"ctx")
    b = crypto.encrypt(key, b"secret", b"ctx")
    assert a != b and b"secret" not in a.encode()
    assert crypto.decrypt(key, a, b"ctx") == crypto.decrypt(key, b, b"ctx") == b"secret"


def test_wrong_key_or_context() -> None:
    """Another key or other associated data cannot decrypt."""
    key = crypto.new_key()
    token = crypto.encrypt(key, b"secret", b"ctx")
    with pytest.raises(DecryptionError):
        crypto.decrypt(crypto.new_key(), token, b"ctx")
    with pytest.raises(DecryptionError):
        crypto.decrypt(key, token, b"other")


@pytest.mark.parametrize("token", ["", "v1$", "v1$not base64!", "v1$AAAA", "v2$AAAA", "plain"])
def test_damaged_tokens(token: str) -> None:
    """Malformed tokens are DecryptionErrors, not crashes."""
    with pytest.raises(DecryptionError):
        crypto.decrypt(crypto.new_key(), token)


def test_derive_key_is_deterministic_per_salt() -> None:
    """Same password and salt, same key; another salt or password, another key."""
    salt = crypto.new_salt()
    key = crypto.derive_key("pässword", salt)
    assert len(key) == crypto.KEY_SIZE
    assert crypto.derive_key("pässword", salt) == key
    assert crypto.derive_key("pässword", crypto.new_salt()) != key
    assert crypto.derive_key("password", salt) != key
