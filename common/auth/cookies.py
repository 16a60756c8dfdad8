"""The auth and anonymous-visitor cookies: httpOnly, SameSite=Lax, path=/, Secure when configured."""

from __future__ import annotations

from datetime import datetime

from flask import Response, current_app

from common.auth.actors import ANON_COOKIE, TOKEN_COOKIE


def _secure() -> bool:
    return bool(current_app.config["PARLEY"].cookie_secure)


def set_token_cookie(response: Response, token: str, expires: datetime) -> None:
    """Store the login token in the httpOnly cookie."""
    response.set_cookie(TOKEN_COOKIE, token, expires=expires, httponly=True, samesite="Lax", secure=_secure(), path="/")


def clear_token_cookie(response: Response) -> None:
    """Remove the login cookie."""
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="Lax", secure=_secure())


def set_anon_cookie(response: Response, key: str, retention_days: int) -> None:
    """(Re)issue the anonymous visitor cookie, sliding its expiry to the retention period."""
    max_age = retention_days * 86400 if retention_days > 0 else None
    response.set_cookie(ANON_COOKIE, key, max_age=max_age, httponly=True, samesite="Lax", secure=_secure(), path="/")


def clear_anon_cookie(response: Response) -> None:
    """Remove the anonymous visitor cookie (after its sessions were claimed by an account)."""
    response.delete_cookie(ANON_COOKIE, path="/", httponly=True, samesite="Lax", secure=_secure())
