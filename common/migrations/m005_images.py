"""Images: chat images and avatars stored under DATA_DIR (see common/images.py).

Owner and message links are SET NULL on delete (not CASCADE): the row outlives its user or message
so that the `image_retention` job can still find and delete the file, then the row.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    meta = sa.MetaData()
    sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("messages", meta, sa.Column("id", sa.Integer, primary_key=True))
    images = sa.Table(
        "images",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),  # "chat" | "avatar"
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("anon_key", sa.String(128)),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL")),
        sa.Column("path", sa.String(100), nullable=False),  # <yyyy>/<mm>/<32 hex>.<ext>, generated
        sa.Column("mime", sa.String(40), nullable=False),  # sniffed from the content
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Index("ux_images_path", images.c.path, unique=True)
    sa.Index("ix_images_message", images.c.message_id)
    sa.Index("ix_images_kind_created", images.c.kind, images.c.created_at)
    sa.Index("ix_images_user", images.c.user_id)
    meta.create_all(conn, tables=[images])
    # The retention job looks up the answers of a message (regenerations keep its images alive).
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_messages_parent ON messages (parent_message_id)"))
