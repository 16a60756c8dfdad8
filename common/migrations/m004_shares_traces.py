"""Share links (snapshots of a session's messages) and task traces (the lifecycle of each generation)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    meta = sa.MetaData()
    sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("chat_sessions", meta, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("messages", meta, sa.Column("id", sa.Integer, primary_key=True))
    shares = sa.Table(
        "shares",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        # Owned like chat_sessions: exactly one of user_id / anon_key.
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("anon_key", sa.String(128)),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),  # sha256 hex of the token: what lookups use
        sa.Column("token_sealed", sa.Text, nullable=False),  # the token, AES-GCM sealed, shown to its owner only
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("message_ids", sa.Text, nullable=False),  # JSON list, conversation order
        sa.Column("snapshot", sa.Text, nullable=False),  # JSON list of public message copies
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime),
        sa.Column("revoked_at", sa.DateTime),
    )
    sa.Index("ux_shares_token_hash", shares.c.token_hash, unique=True)
    sa.Index("ix_shares_user", shares.c.user_id, shares.c.id)
    sa.Index("ix_shares_anon", shares.c.anon_key, shares.c.id)
    sa.Index("ix_shares_session", shares.c.session_id)
    traces = sa.Table(
        "task_traces",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL")),
        sa.Column("session_id", sa.Integer),  # kept after the session is deleted: traces are logs
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("model", sa.String(400)),
        sa.Column("provider", sa.String(40)),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("event_count", sa.Integer, nullable=False, server_default="0"),
    )
    sa.Index("ix_task_traces_started", traces.c.started_at)
    sa.Index("ix_task_traces_session", traces.c.session_id, traces.c.id)
    sa.Index("ix_task_traces_status", traces.c.status, traces.c.id)
    sa.Index("ix_task_traces_message", traces.c.message_id)
    events = sa.Table(
        "task_trace_events",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trace_id", sa.Integer, sa.ForeignKey("task_traces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    )
    sa.Index("ux_task_trace_events_seq", events.c.trace_id, events.c.seq, unique=True)
    meta.create_all(conn, tables=[shares, traces, events])
