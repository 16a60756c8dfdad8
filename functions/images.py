"""Serving stored images: `/chat-images/<path>` (owner or signed URL) and `/avatars/<path>` (public).

Only generated names (`<yyyy>/<mm>/<32 hex>.<ext>`) are looked up, so `..`, absolute paths and
encoded tricks never reach the file system: they are 404 like any image the caller may not see.
Every response carries the type sniffed at upload, `X-Content-Type-Options: nosniff` and a CSP
that forbids everything (an image opened directly can never run script).
"""

from __future__ import annotations

from flask import Blueprint, Response, request, send_file

from common import images
from common.auth.actors import Actor, optional_actor
from common.auth.ownership import owner_clause
from common.db import fetch_one, get_db
from common.errors import ApiError, NotFound

bp = Blueprint("images", __name__)

CHAT_CACHE = "private, max-age=86400"
AVATAR_CACHE = "public, max-age=86400"  # an avatar's name changes with every upload


def _not_found() -> NotFound:
    return NotFound("Image not found", code="image_not_found")


def _caller() -> Actor | None:
    """The request's actor, or None (a stale token or a disabled account just sees nothing)."""
    try:
        return optional_actor()
    except ApiError:
        return None


def _owned_chat_image(path: str, actor: Actor) -> dict | None:
    """The image if `actor` uploaded it or owns the session of its message (claimed sessions)."""
    mine, params = owner_clause(actor, "i")
    session_mine, _ = owner_clause(actor, "s")
    return fetch_one(
        get_db(),
        "SELECT i.* FROM images i LEFT JOIN messages m ON m.id = i.message_id "
        "LEFT JOIN chat_sessions s ON s.id = m.session_id "
        f"WHERE i.kind = :kind AND i.path = :path AND ({mine} OR {session_mine})",
        kind=images.CHAT,
        path=path,
        **params,
    )


def _send(kind: str, row: dict, cache: str) -> Response:
    target = images.file_path(kind, row["path"])
    if target is None or not target.is_file():
        raise _not_found()
    response = send_file(target, mimetype=row["mime"], conditional=True, etag=True, max_age=None)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = "inline"
    response.headers["Cache-Control"] = cache
    return response


@bp.get("/chat-images/<path:path>", merge_slashes=False)  # "//etc/passwd" is a 404, not a redirect
def chat_image(path: str):
    if not images.PATH_PATTERN.fullmatch(path):
        raise _not_found()
    row = None
    if images.verify_signature(path, request.args.get("exp"), request.args.get("sig")):
        row = fetch_one(get_db(), "SELECT * FROM images WHERE kind = :k AND path = :p", k=images.CHAT, p=path)
    if row is None:
        actor = _caller()
        row = _owned_chat_image(path, actor) if actor is not None else None
    if row is None:
        raise _not_found()
    return _send(images.CHAT, row, CHAT_CACHE)


@bp.get("/avatars/<path:path>", merge_slashes=False)
def avatar(path: str):
    if not images.PATH_PATTERN.fullmatch(path):
        raise _not_found()
    row = fetch_one(
        get_db(), "SELECT * FROM images WHERE kind = :k AND path = :p AND user_id IS NOT NULL", k=images.AVATAR, p=path
    )
    if row is None:
        raise _not_found()
    return _send(images.AVATAR, row, AVATAR_CACHE)
