"""Providers: connections and their API keys, the cached model catalog and per-model overrides.

Also seeds, once (migrations run once), the system `demo` connection so that a fresh install can
chat before any real provider is configured. Its two models are allowed for anonymous visitors by
seeded overrides (users are allowed by the default `model_access_default_user` = allow). An admin
may disable or delete it; because this runs only once, it never comes back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

#: The demo adapter's model ids at the time of this migration (frozen here on purpose).
DEMO_MODEL_IDS = ("demo-chat", "demo-reasoner")


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    ]


def upgrade(conn: Connection) -> None:
    meta = sa.MetaData()
    sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True))
    connections = sa.Table(
        "connections",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("base_url", sa.Text, nullable=False, server_default=""),
        sa.Column("auth_type", sa.String(10), nullable=False, server_default="bearer"),
        sa.Column("headers", sa.Text, nullable=False, server_default="{}"),
        sa.Column("azure_api_version", sa.String(40)),
        sa.Column("prefix_id", sa.String(40)),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("default_capabilities", sa.Text, nullable=False, server_default="{}"),
        sa.Column("enable", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("owner_user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE")),
        *_timestamps(),
    )
    sa.Index("ix_connections_owner", connections.c.owner_user_id)
    keys = sa.Table(
        "connection_keys",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("connection_id", sa.Integer, sa.ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(200)),
        sa.Column("secret_encrypted", sa.Text),
        sa.Column("secret_prefix", sa.String(8)),
        sa.Column("secret_last4", sa.String(8)),
        sa.Column("bound_base_url", sa.Text),
        sa.Column("model_ids", sa.Text, nullable=False, server_default="[]"),
        sa.Column("enable", sa.Boolean, nullable=False, server_default=sa.true()),
        *_timestamps(),
    )
    sa.Index("ix_connection_keys_connection", keys.c.connection_id, keys.c.id)
    models = sa.Table(
        "catalog_models",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("connection_id", sa.Integer, sa.ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("connection_keys.id", ondelete="SET NULL")),
        sa.Column("raw_id", sa.String(300), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("context_window", sa.Integer),
        sa.Column("max_output_tokens", sa.Integer),
        sa.Column("capabilities", sa.Text, nullable=False, server_default="{}"),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("connection_id", "raw_id", name="ux_catalog_models_connection_raw"),
    )
    sa.Index("ix_catalog_models_raw", models.c.raw_id)
    sa.Table(
        "catalog_state",
        meta,
        sa.Column(
            "connection_id",
            sa.Integer,
            sa.ForeignKey("connections.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("last_fetched_at", sa.DateTime),
        sa.Column("expires_at", sa.DateTime),
        sa.Column("last_error", sa.Text),
    )
    overrides = sa.Table(
        "model_overrides",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("connection_id", sa.Integer, sa.ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("raw_id", sa.String(300), nullable=False),
        sa.Column("tags", sa.Text),
        sa.Column("capabilities", sa.Text),
        sa.Column("context_window", sa.Integer),
        sa.Column("max_output_tokens", sa.Integer),
        sa.Column("temperature", sa.Float),
        sa.Column("access_anonymous", sa.String(8), nullable=False, server_default="inherit"),
        sa.Column("access_user", sa.String(8), nullable=False, server_default="inherit"),
        *_timestamps(),
        sa.UniqueConstraint("connection_id", "raw_id", name="ux_model_overrides_connection_raw"),
    )
    meta.create_all(conn, tables=[t for name, t in meta.tables.items() if name != "users"])
    _seed_demo(conn, connections, overrides)


def _seed_demo(conn: Connection, connections: sa.Table, overrides: sa.Table) -> None:
    """The demo connection and the overrides that open its models to anonymous visitors."""
    now = datetime.now(UTC).replace(tzinfo=None)
    result = conn.execute(
        connections.insert().values(
            display_name="Demo",
            provider="demo",
            base_url="",
            auth_type="none",
            headers="{}",
            tags=json.dumps([]),
            default_capabilities=json.dumps({}),
            enable=True,
            owner_user_id=None,
            created_at=now,
            updated_at=now,
        )
    )
    demo_id = result.inserted_primary_key[0]
    for raw_id in DEMO_MODEL_IDS:
        conn.execute(
            overrides.insert().values(
                connection_id=demo_id,
                raw_id=raw_id,
                access_anonymous="allow",
                access_user="inherit",
                created_at=now,
                updated_at=now,
            )
        )
