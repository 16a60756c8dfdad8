"""Secrets at rest (security.md item 3): AES-GCM with an HKDF-derived key, and display masks."""

from __future__ import annotations

import base64

import pytest

from common.crypto import SecretDecryptError, decrypt_secret, encrypt_secret, mask_secret

KEY = "server-encryption-key-for-tests-0123456789"


def test_round_trip():
    token = encrypt_secret("sk-test-SECRET-123456", KEY)
    assert token.startswith("v1:")
    assert "SECRET" not in token
    assert decrypt_secret(token, KEY) == "sk-test-SECRET-123456"


def test_round_trip_of_unicode_and_empty_text():
    for text in ("", "ключ-🔑-ß", "x" * 5000):
        assert decrypt_secret(encrypt_secret(text, KEY), KEY) == text


def test_nonce_differs_each_time():
    tokens = {encrypt_secret("same secret", KEY) for _ in range(20)}
    assert len(tokens) == 20
    nonces = {base64.urlsafe_b64decode(t[3:])[:12] for t in tokens}
    assert len(nonces) == 20


def test_tampering_is_detected():
    token = encrypt_secret("sk-test-SECRET-123456", KEY)
    raw = bytearray(base64.urlsafe_b64decode(token[3:]))
    for index in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        changed = bytearray(raw)
        changed[index] ^= 0x01
        with pytest.raises(SecretDecryptError):
            decrypt_secret("v1:" + base64.urlsafe_b64encode(bytes(changed)).decode(), KEY)


def test_wrong_key_fails():
    token = encrypt_secret("sk-test-SECRET-123456", KEY)
    with pytest.raises(SecretDecryptError):
        decrypt_secret(token, KEY + "x")


@pytest.mark.parametrize("token", ["", "sk-plain", "v2:abcd", "v1:", "v1:!!!!", "v1:" + "A" * 8, None, 12])
def test_malformed_tokens_fail_cleanly(token):
    with pytest.raises(SecretDecryptError):
        decrypt_secret(token, KEY)


def test_an_encryption_key_is_required():
    with pytest.raises(ValueError):
        encrypt_secret("secret", "")


@pytest.mark.parametrize(
    ("secret", "mask"),
    [
        ("sk-test-SECRET-123456", "sk-...3456"),
        ("sk-proj-abcdefghijklmnop3f9a", "sk-...3f9a"),
        ("AIzaSyA-very-long-gemini-key-x9Z1", "...x9Z1"),
        ("0123456789abcdef", "...cdef"),
        ("short", "****"),
        ("", "****"),
    ],
)
def test_masks_show_at_most_a_vendor_prefix_and_four_characters(secret, mask):
    assert mask_secret(secret) == mask
