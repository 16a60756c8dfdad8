"""Accounts, tokens, login throttling, settings and job slots."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    meta = sa.MetaData()
    users = sa.Table(
        "users",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("password_hash", sa.String(100), nullable=False),
        sa.Column("role", sa.String(10), nullable=False, server_default="USER"),
        sa.Column("status", sa.String(10), nullable=False, server_default="PENDING"),
        sa.Column("rejection_reason", sa.Text),
        sa.Column("avatar_url", sa.Text),
        sa.Column("preferred_model", sa.Text),
        sa.Column("personal_prompt", sa.Text),
        sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("daily_quota", sa.Integer),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("approved_at", sa.DateTime),
        sa.Column("last_login_at", sa.DateTime),
    )
    sa.Index("ux_users_username", sa.func.lower(users.c.username), unique=True)
    sa.Index("ux_users_email", sa.func.lower(users.c.email), unique=True)
    sa.Index("ix_users_status", users.c.status)
    sa.Table(
        "revoked_tokens",
        meta,
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime, nullable=False, index=True),
    )
    sa.Table(
        "login_throttle",
        meta,
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_started_at", sa.DateTime, nullable=False),
        sa.Column("locked_until", sa.DateTime),
    )
    sa.Table(
        "settings",
        meta,
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "job_runs",
        meta,
        sa.Column("job", sa.String(100), primary_key=True),
        sa.Column("slot", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.Text),
    )
    meta.create_all(conn)
