"""Image retention: deletes chat images (files, then rows) older than `chat_image_retention_days`.

An old image is kept while a message that uses it is still inside the window: its own message, or
an answer to that message (a regeneration), created or updated since the cutoff, and always while
one of those answers is still streaming. Also removed (after a grace period, so a request that is
storing its images right now is never touched):
- chat images linked to no message (their session was deleted, or the request failed) - unless a
  message lists their path, in which case the link is repaired instead;
- avatars that are no longer their user's avatar (replaced, or the user was deleted).
Deleted images are also dropped from `messages.images`. Safe to run again at any time (idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import dataset
from flask import Flask

from common import images
from common.db import execute, fetch_all, utcnow
from jobs.registry import Job

GRACE = timedelta(hours=1)
BATCH = 500

EXPIRED = (
    "SELECT i.id, i.kind, i.path, i.message_id FROM images i WHERE i.kind = 'chat' AND i.id > :after "
    "AND i.message_id IS NOT NULL AND i.created_at < :cutoff AND NOT EXISTS (SELECT 1 FROM messages m "
    "WHERE (m.id = i.message_id OR m.parent_message_id = i.message_id) "
    "AND (m.created_at >= :cutoff OR m.updated_at >= :cutoff OR m.stream_status = 'streaming')) "
    "ORDER BY i.id LIMIT :n"
)
UNLINKED = (
    "SELECT id, kind, path, message_id FROM images WHERE kind = 'chat' AND id > :after AND message_id IS NULL "
    "AND created_at < :grace ORDER BY id LIMIT :n"
)
STALE_AVATARS = (
    "SELECT i.id, i.kind, i.path, i.message_id FROM images i LEFT JOIN users u ON u.id = i.user_id "
    "WHERE i.kind = 'avatar' AND i.id > :after AND i.created_at < :grace "
    "AND (u.id IS NULL OR u.avatar_url IS NULL OR u.avatar_url <> '/avatars/' || i.path) ORDER BY i.id LIMIT :n"
)


def _batches(db: dataset.Database, sql: str, **params: object) -> Iterator[list[dict]]:
    after = 0
    while rows := fetch_all(db, sql, after=after, n=BATCH, **params):
        yield rows
        after = rows[-1]["id"]


def _delete(db: dataset.Database, rows: list[dict]) -> int:
    """Delete the images (files first) and drop them from the messages that listed them."""
    files = images.delete_files(rows)
    gone = {row["path"] for row in rows}
    ids = ",".join(str(int(row["id"])) for row in rows)
    message_ids = sorted({int(row["message_id"]) for row in rows if row.get("message_id")})
    with db as tx:
        execute(tx, f"DELETE FROM images WHERE id IN ({ids})")
        if message_ids:
            listed = ",".join(map(str, message_ids))
            for message in fetch_all(tx, f"SELECT id, images FROM messages WHERE id IN ({listed})"):
                kept = [p for p in images.stored_paths(message["images"]) if p not in gone]
                execute(tx, "UPDATE messages SET images = :i WHERE id = :id", i=json.dumps(kept), id=message["id"])
    return files


def _listed_paths(db: dataset.Database) -> dict[str, int]:
    """Every stored path a user message lists, with that message's id."""
    rows = fetch_all(db, "SELECT id, images FROM messages WHERE role = 'user' AND images <> '[]'")
    return {path: row["id"] for row in rows for path in images.stored_paths(row["images"])}


def run(app: Flask) -> dict:
    db = app.extensions["parley.db"]
    days = int(app.extensions["parley.settings"].get("chat_image_retention_days"))
    now = utcnow()
    cutoff, grace = now - timedelta(days=days), now - GRACE
    summary = {"retention_days": days, "expired": 0, "unlinked": 0, "relinked": 0, "avatars": 0, "files": 0}
    for rows in _batches(db, EXPIRED, cutoff=cutoff):
        summary["files"] += _delete(db, rows)
        summary["expired"] += len(rows)
    listed: dict[str, int] | None = None
    for rows in _batches(db, UNLINKED, grace=grace):
        listed = _listed_paths(db) if listed is None else listed
        relink = [row for row in rows if row["path"] in listed]
        for row in relink:
            images.attach(db, [row], listed[row["path"]])
        orphans = [row for row in rows if row["path"] not in listed]
        if orphans:
            summary["files"] += _delete(db, orphans)
        summary["relinked"] += len(relink)
        summary["unlinked"] += len(orphans)
    for rows in _batches(db, STALE_AVATARS, grace=grace):
        summary["files"] += _delete(db, rows)
        summary["avatars"] += len(rows)
    return summary


JOB = Job("image_retention", 3600, run, offset_seconds=1500,
          description="deletes chat images past chat_image_retention_days, unlinked images and old avatars")
