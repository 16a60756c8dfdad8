"""The one ownership rule: an actor sees only rows it owns; everything else is 404 (never 403, so
that other people's ids are not revealed). Owned tables carry `user_id` and `anon_key` columns."""

from __future__ import annotations

import dataset

from common.auth.actors import Actor
from common.db import fetch_one
from common.errors import NotFound

OWNED_TABLES = {"chat_sessions", "usage_records", "shares"}


def owner_clause(actor: Actor, alias: str = "") -> tuple[str, dict]:
    """A SQL condition (and its parameters) matching the rows `actor` owns."""
    prefix = f"{alias}." if alias else ""
    if actor.is_user:
        return f"{prefix}user_id = :owner_user_id", {"owner_user_id": actor.user_id}
    return f"({prefix}user_id IS NULL AND {prefix}anon_key = :owner_anon_key)", {"owner_anon_key": actor.anon_key}


def owner_values(actor: Actor) -> dict:
    """The owner columns for a new row created by `actor`."""
    if actor.is_user:
        return {"user_id": actor.user_id, "anon_key": None}
    return {"user_id": None, "anon_key": actor.anon_key}


def owned_row(db: dataset.Database, table: str, row_id: int, actor: Actor, what: str) -> dict:
    """The row `row_id` of an owned table, or 404 `<what> not found` when it is missing or not the actor's."""
    if table not in OWNED_TABLES:
        raise ValueError(f"{table} is not an owned table")
    clause, params = owner_clause(actor)
    row = fetch_one(db, f"SELECT * FROM {table} WHERE id = :row_id AND {clause}", row_id=row_id, **params)
    if row is None:
        raise NotFound(f"{what} not found", code=f"{what.lower().replace(' ', '_')}_not_found")
    return row


def owned_session(db: dataset.Database, actor: Actor, session_id: int) -> dict:
    """The actor's chat session, or 404."""
    return owned_row(db, "chat_sessions", session_id, actor, "Session")


def owned_message(db: dataset.Database, actor: Actor, message_id: int, session_id: int | None = None) -> dict:
    """A message in one of the actor's sessions (optionally a given one), or 404."""
    clause, params = owner_clause(actor, "s")
    row = fetch_one(
        db,
        "SELECT m.* FROM messages m JOIN chat_sessions s ON s.id = m.session_id "
        f"WHERE m.id = :mid AND {clause}" + (" AND m.session_id = :sid" if session_id is not None else ""),
        mid=message_id,
        sid=session_id,
        **params,
    )
    if row is None:
        raise NotFound("Message not found", code="message_not_found")
    return row
