"""Encryption of secrets at rest.

- :func:`derive_key`: a 256-bit key from a password, with scrypt (memory-hard: 32 MiB, ~0.1 s).
- :func:`encrypt` / :func:`decrypt`: AES-256-GCM (authenticated: a wrong key or a modified
  ciphertext is detected, never decrypted to garbage), with optional associated data binding the
  ciphertext to its context (e.g. the parameter's name, so ciphertexts cannot be swapped).

Ciphertexts are text: ``v1$<base64(nonce | ciphertext+tag)>``.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from libervia.backend.core.exceptions import DecryptionError

KEY_SIZE = 32
SALT_SIZE = 16
NONCE_SIZE = 12
#: scrypt cost parameters: N=2**15, r=8 -> 32 MiB of memory per derivation
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
PREFIX = "v1$"


def new_key() -> bytes:
    """A new random 256-bit key."""
    return AESGCM.generate_key(bit_length=KEY_SIZE * 8)


def new_salt() -> bytes:
    return os.urandom(SALT_SIZE)


def derive_key(password: str, salt: bytes) -> bytes:
    """Derive a 256-bit key from a password (scrypt)."""
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(password.encode("utf-8"))


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes | None = None) -> str:
    """Encrypt and authenticate ``plaintext``; return text safe to store."""
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, associated_data)
    return PREFIX + base64.b64encode(nonce + ciphertext).decode("ascii")


def decrypt(key: bytes, token: str, associated_data: bytes | None = None) -> bytes:
    """Decrypt what :func:`encrypt` returned.

    Raises:
        DecryptionError: wrong key or associated data, or a damaged/modified ciphertext.
    """
    if not token.startswith(PREFIX):
        raise DecryptionError("not an encrypted value (unknown format)")
    try:
        raw = base64.b64decode(token[len(PREFIX) :], validate=True)
    except ValueError as e:
        raise DecryptionError(f"damaged encrypted value: {e}") from e
    if len(raw) <= NONCE_SIZE:
        raise DecryptionError("damaged encrypted value: too short")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], associated_data)
    except InvalidTag:
        raise DecryptionError("wrong key, or the encrypted value was modified") from None
