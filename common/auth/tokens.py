"""JWT access tokens (HS256) and their revocation.

A token carries the user id (`sub`), a unique id (`jti`) and the user's `token_version`. Logout
revokes one token by its jti; a password change, disable or delete bumps the user's token_version,
which revokes every token issued before.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import dataset
import jwt

from common.db import execute, utcnow

ALGORITHM = "HS256"
VERIFIED_TOKENS_KEPT = 4096


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    jti: str
    token_version: int
    expires_at: datetime


class InvalidToken(Exception):
    """The token is malformed, expired, badly signed or revoked."""


def issue_token(user: dict, secret: str, hours: int) -> tuple[str, datetime]:
    """A signed token for `user`; returns the token and its expiry (naive UTC)."""
    now = utcnow()
    expires = now + timedelta(hours=hours)
    claims = {
        "sub": str(user["id"]),
        "jti": secrets.token_urlsafe(16),
        "tv": int(user["token_version"]),
        "iat": _epoch(now),
        "exp": _epoch(expires),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


def _epoch(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1)).total_seconds())


def decode_token(token: str, secret: str) -> TokenClaims:
    """Verify signature, expiry and shape; raise InvalidToken otherwise.

    A token that verified once is remembered (bounded, per process): clients send the same token
    with every request, and PyJWT's full decode costs more than the rest of authentication. Expiry
    is checked again on every call; revocation is the caller's check, against the database."""
    claims = _verified_claims(token, secret)
    if claims.expires_at <= utcnow():
        raise InvalidToken("Signature has expired")
    return claims


@functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def _verified_claims(token: str, secret: str) -> TokenClaims:
    # Only successful verifications are cached (lru_cache does not keep exceptions).
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "jti", "exp", "tv"]})
        return TokenClaims(
            user_id=int(claims["sub"]),
            jti=str(claims["jti"]),
            token_version=int(claims["tv"]),
            expires_at=datetime(1970, 1, 1) + timedelta(seconds=int(claims["exp"])),
        )
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidToken(str(exc)) from exc


def revoke(db: dataset.Database, claims: TokenClaims) -> None:
    """Revoke one token until it would have expired anyway."""
    with db as tx:
        tx["revoked_tokens"].upsert({"jti": claims.jti, "expires_at": claims.expires_at}, ["jti"])


def prune_revoked(db: dataset.Database) -> int:
    """Forget revocations of tokens that have expired anyway; returns how many."""
    with db as tx:
        return execute(tx, "DELETE FROM revoked_tokens WHERE expires_at < :now", now=utcnow())
