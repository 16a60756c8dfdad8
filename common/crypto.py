"""Secrets at rest: AES-256-GCM with a key derived (HKDF-SHA256) from the server's ENCRYPTION_KEY.

Token format: ``"v1:" + urlsafe_base64(nonce(12 bytes) + ciphertext + tag(16 bytes))``. A fresh random
nonce is used for every encryption, so the same secret never encrypts to the same token. A token
that was tampered with, or that was made with another ENCRYPTION_KEY, fails to decrypt with
:class:`SecretDecryptError` (never with a wrong plaintext).

Nothing here logs anything. No Flask imports: the jobs process and the CLI use this too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION_PREFIX = "v1:"
NONCE_BYTES = 12
_HKDF_SALT = b"parley/secrets/salt/v1"
_HKDF_INFO = b"parley connection secrets v1"
_AAD = b"parley-secret-v1"


class SecretDecryptError(ValueError):
    """The token is malformed, was tampered with, or was encrypted with another key."""


@functools.lru_cache(maxsize=8)
def _derive_key(key_material: str) -> bytes:
    if not isinstance(key_material, str) or not key_material:
        raise ValueError("an encryption key is required (ENCRYPTION_KEY)")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return hkdf.derive(key_material.encode("utf-8"))


def encrypt_secret(plaintext: str, key_material: str) -> str:
    """Encrypt ``plaintext`` with a key derived from ``key_material``; returns a ``v1:`` token."""
    if not isinstance(plaintext, str):
        raise TypeError("plaintext must be a string")
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_derive_key(key_material)).encrypt(nonce, plaintext.encode("utf-8"), _AAD)
    return VERSION_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt_secret(token: str, key_material: str) -> str:
    """Decrypt a token made by :func:`encrypt_secret`; raises :class:`SecretDecryptError` on any failure."""
    if not isinstance(token, str) or not token.startswith(VERSION_PREFIX):
        raise SecretDecryptError("unknown secret format")
    try:
        raw = base64.urlsafe_b64decode(token[len(VERSION_PREFIX) :].encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SecretDecryptError("malformed secret") from None
    if len(raw) < NONCE_BYTES + 16:
        raise SecretDecryptError("malformed secret")
    try:
        plain = AESGCM(_derive_key(key_material)).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD)
    except InvalidTag:
        raise SecretDecryptError("the secret cannot be decrypted (tampered, or another ENCRYPTION_KEY)") from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretDecryptError("malformed secret") from None


def secret_prefix(plaintext: str) -> str:
    """The short, non-secret vendor prefix shown in masks (``sk-``, ``sk-ant-`` -> ``sk-``), or ``""``."""
    if len(plaintext) < 12:
        return ""
    head, dash, _rest = plaintext.partition("-")
    if dash and 0 < len(head) <= 3 and head.isalnum():
        return head + "-"
    return ""


def secret_last4(plaintext: str) -> str:
    """The last four characters shown in masks (nothing for short secrets)."""
    return plaintext[-4:] if len(plaintext) >= 12 else ""


def mask_parts(prefix: str | None, last4: str | None) -> str:
    """A mask from the stored prefix and last four characters (``sk-...3f9a``, or ``****``)."""
    if not last4:
        return "****"
    return f"{prefix or ''}...{last4}"


def mask_secret(plaintext: str) -> str:
    """A display mask such as ``sk-...3f9a``. Secrets shorter than 12 characters show nothing (``****``)."""
    return mask_parts(secret_prefix(plaintext), secret_last4(plaintext))
