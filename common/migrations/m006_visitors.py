"""Anonymous visitors: when each was last active (their data is kept `anonymous_retention_days` after it)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    meta = sa.MetaData()
    visitors = sa.Table(
        "anonymous_visitors",
        meta,
        sa.Column("anon_key", sa.String(128), primary_key=True),
        sa.Column("first_seen_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("address", sa.String(64)),
    )
    sa.Index("ix_anonymous_visitors_last_seen", visitors.c.last_seen_at)
    meta.create_all(conn, tables=[visitors])
    # The retention cleanup and the claim look usage rows up by their anonymous owner.
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_usage_anon ON usage_records (anon_key)"))
