"""Chat: sessions, messages, live generations and their event log, usage, quotas, worker liveness."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def _owner_columns() -> list[sa.Column]:
    """Exactly one of user_id / anon_key owns a row (anonymous visitors own data like users)."""
    return [
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("anon_key", sa.String(128)),
    ]


def upgrade(conn: Connection) -> None:
    meta = sa.MetaData()
    sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("connections", meta, sa.Column("id", sa.Integer, primary_key=True))
    sessions = sa.Table(
        "chat_sessions",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        *_owner_columns(),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("connection_id", sa.Integer, sa.ForeignKey("connections.id", ondelete="SET NULL")),
        sa.Column("model_raw_id", sa.String(300)),
        sa.Column("model_label", sa.String(400)),
        sa.Column("pinned_at", sa.DateTime),
        sa.Column("system_prompt", sa.Text),
        sa.Column("reasoning_enabled", sa.Boolean),
        sa.Column("reasoning_effort", sa.String(20)),
        sa.Column("ollama_think", sa.Boolean),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("last_message_preview", sa.String(200)),
        sa.Column("last_message_at", sa.DateTime),
        sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    sa.Index("ix_sessions_user", sessions.c.user_id, sessions.c.updated_at)
    sa.Index("ix_sessions_anon", sessions.c.anon_key, sessions.c.updated_at)
    messages = sa.Table(
        "messages",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("content", sa.Text, nullable=False, server_default=""),
        sa.Column("parent_message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="CASCADE")),
        sa.Column("variant_index", sa.Integer),
        sa.Column("client_message_id", sa.String(160)),
        sa.Column("reasoning", sa.Text),
        sa.Column("reasoning_duration_seconds", sa.Float),
        sa.Column("stream_status", sa.String(12)),
        sa.Column("stream_cursor", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stream_error", sa.Text),
        sa.Column("images", sa.Text, nullable=False, server_default="[]"),
        sa.Column("metrics", sa.Text),
        sa.Column("model", sa.String(400)),
        sa.Column("sender_name", sa.String(100)),
        sa.Column("bot_id", sa.String(100)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    sa.Index("ix_messages_session", messages.c.session_id, messages.c.id)
    sa.Index("ux_messages_client_id", messages.c.session_id, messages.c.client_message_id, unique=True)
    sa.Index("ix_messages_streaming", messages.c.stream_status)
    generations = sa.Table(
        "generations",
        meta,
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("session_id", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    sa.Index("ix_generations_owner_state", generations.c.owner, generations.c.state)
    sa.Index("ix_generations_worker_state", generations.c.worker, generations.c.state)
    events = sa.Table(
        "generation_events",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("first_seq", sa.Integer, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Index("ix_generation_events_message", events.c.message_id, events.c.first_seq)
    usage = sa.Table(
        "usage_records",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        *_owner_columns(),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("chat_sessions.id", ondelete="SET NULL")),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL")),
        sa.Column("connection_id", sa.Integer),
        sa.Column("model", sa.String(400)),
        sa.Column("provider", sa.String(40)),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("total_tokens", sa.Integer, nullable=False),
        sa.Column("context_limit", sa.Integer),
        sa.Column("usage_source", sa.String(12), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Index("ix_usage_session", usage.c.session_id, usage.c.id)
    sa.Index("ix_usage_user_day", usage.c.user_id, usage.c.day)
    sa.Table(
        "quota_counters",
        meta,
        sa.Column("scope", sa.String(10), primary_key=True),
        sa.Column("identifier", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("last_reset_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "workers",
        meta,
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )
    meta.create_all(conn, tables=[t for name, t in meta.tables.items() if name not in {"users", "connections"}])
