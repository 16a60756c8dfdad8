"""Partial indexes where most rows have nothing to look up, so that the writes of every chat turn
touch fewer index pages.

A session, usage row or visitor belongs to a user or to an anonymous visitor, never both: the
`(user_id, ...)` and `(anon_key, ...)` indexes each held an entry with NULL for every row of the other
kind, moved on every update of `updated_at`. Only answers still streaming are looked up by status,
and only running generations by owner or worker. Each query on these columns names a value (`= :x`)
and so implies the partial condition, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PARTIAL_INDEXES = [
    ("ix_sessions_user", "chat_sessions", "user_id, updated_at", "user_id IS NOT NULL"),
    ("ix_sessions_anon", "chat_sessions", "anon_key, updated_at", "anon_key IS NOT NULL"),
    ("ix_usage_user_day", "usage_records", "user_id, day", "user_id IS NOT NULL"),
    ("ix_usage_anon", "usage_records", "anon_key", "anon_key IS NOT NULL"),
    ("ix_messages_streaming", "messages", "stream_status", "stream_status = 'streaming'"),
    ("ix_generations_owner_state", "generations", "owner, state", "state = 'running'"),
    ("ix_generations_worker_state", "generations", "worker, state", "state = 'running'"),
]


def upgrade(conn: Connection) -> None:
    for name, table, columns, condition in PARTIAL_INDEXES:
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE INDEX {name} ON {table} ({columns}) WHERE {condition}"))
