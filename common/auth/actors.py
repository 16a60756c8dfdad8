"""Who is making this request: a user (bearer token or cookie) or an anonymous visitor.

The actor is resolved lazily, once per request, on first use: routes that need nobody (health,
login) never fail because of a stale cookie. An invalid or expired token is always 401; there is no
silent fallback to anonymous. Role and status come from the database, never from the token.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from flask import current_app, g, request

from common.auth.tokens import InvalidToken, TokenClaims, decode_token
from common.db import fetch_one, get_db
from common.errors import Forbidden, Locked, Unauthorized
from common.users import ACTIVE, ADMIN, PENDING

ANON_COOKIE = "anon_key"
TOKEN_COOKIE = "token"
ANON_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{10,128}$")


@dataclass(frozen=True)
class Actor:
    """The party a request acts for. Exactly one of user_id / anon_key is set."""

    kind: str  # "user" | "anonymous"
    user_id: int | None = None
    anon_key: str | None = None
    username: str | None = None
    role: str | None = None
    via: str = "anonymous"  # "bearer" | "cookie" | "api_key" | "anonymous"
    claims: TokenClaims | None = None
    user: dict | None = field(default=None, compare=False, repr=False)  # the row as read for this request

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_admin(self) -> bool:
        return self.kind == "user" and self.role == ADMIN

    @property
    def identifier(self) -> str:
        """A stable id for logs, quotas and traces: `user:<id>` or `anon:<key>`."""
        return f"user:{self.user_id}" if self.is_user else f"anon:{self.anon_key}"

    def describe(self) -> dict:
        """The `actor` block of GET /api/auth/actor."""
        if self.is_user:
            return {
                "type": "user",
                "id": self.user_id,
                "username": self.username,
                "role": self.role,
                "identifier": self.identifier,
            }
        return {"type": "anonymous", "identifier": self.identifier}


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer ...` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def user_from_token(token: str) -> tuple[dict, TokenClaims]:
    """Validate a JWT against the database; 401 when invalid or revoked, 403/423 when not active."""
    config = current_app.config["PARLEY"]
    try:
        claims = decode_token(token, config.jwt_secret)
    except InvalidToken as exc:
        raise Unauthorized("Invalid or expired token", code="invalid_token") from exc
    # One query for the user and the revocation of this token: this runs on every request.
    user = fetch_one(
        get_db(),
        "SELECT u.*, EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = :jti) AS token_revoked "
        "FROM users u WHERE u.id = :id",
        jti=claims.jti,
        id=claims.user_id,
    )
    if user is None or user.pop("token_revoked") or user["token_version"] != claims.token_version:
        raise Unauthorized("Token has been revoked", code="invalid_token")
    check_user_may_act(user)
    return user, claims


def check_user_may_act(user: dict) -> None:
    """Raise 423 for a pending account and 403 for a disabled one."""
    if user["status"] == ACTIVE:
        return
    data = {"status": user["status"], "rejectionReason": user.get("rejection_reason")}
    if user["status"] == PENDING:
        raise Locked("Account is awaiting approval", code="account_pending", data=data)
    raise Forbidden("Account is disabled", code="account_disabled", data=data)


def _resolve() -> Actor | None:
    token = bearer_token()
    via = "bearer"
    if token is None:
        token = request.cookies.get(TOKEN_COOKIE) or None
        via = "cookie"
    if token is not None:
        try:
            user, claims = user_from_token(token)
        except Unauthorized:
            if via == "cookie":
                g.clear_token_cookie = True
            raise
        return Actor(
            "user", user_id=user["id"], username=user["username"], role=user["role"], via=via, claims=claims,
            user=user,
        )
    if not anonymous_enabled():
        return None
    key = request.cookies.get(ANON_COOKIE, "")
    if not ANON_KEY_PATTERN.match(key):
        key = secrets.token_urlsafe(32)
    g.anon_cookie = key  # refreshed on every response (sliding retention)
    return Actor("anonymous", anon_key=key)


def anonymous_enabled() -> bool:
    """Anonymous access is on unless the admin set the anonymous daily quota to 0."""
    return current_app.extensions["parley.settings"].get("anonymous_daily_quota") > 0


def current_actor() -> Actor:
    """The request's actor; 401 when there is none (anonymous access off and no token)."""
    if "actor" not in g:
        g.actor = _resolve()
    if g.actor is None:
        raise Unauthorized("Authentication required", code="auth_required")
    return g.actor


def require_user() -> Actor:
    """The actor, who must be a signed-in user."""
    actor = current_actor()
    if not actor.is_user:
        raise Unauthorized("Sign in to use this feature", code="auth_required")
    return actor


def require_admin() -> Actor:
    """The actor, who must be an admin."""
    actor = require_user()
    if not actor.is_admin:
        raise Forbidden("Administrator role required", code="admin_required")
    return actor


def optional_actor() -> Actor | None:
    """The actor if the request has one (never raises for a missing one; still 401 for a bad token)."""
    if "actor" not in g:
        g.actor = _resolve()
    return g.actor
