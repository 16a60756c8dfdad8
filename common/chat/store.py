"""Every database write of a chat turn, each one short transaction (never across network I/O)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import dataset

from common.chat.live import Event
from common.db import execute, fetch_all, fetch_one, insert, utcnow
from common.errors import TooManyRequests

PREVIEW_CHARS = 120


class ConcurrencyLimitReached(TooManyRequests):
    code = "too_many_streams"


@dataclass(frozen=True)
class Turn:
    """The rows one chat request created (or found, for a regeneration)."""

    user_message: dict
    assistant_message: dict


def create_turn(
    db: dataset.Database,
    *,
    session: dict,
    owner: str,
    worker: str,
    content: str | None,
    client_message_id: str | None,
    reply_to: dict | None,
    assistant_client_id: str,
    model_label: str,
    images: list[str],
    max_concurrent: int,
    variants_kept: int,
) -> Turn:
    """Write the user message (unless regenerating) and the assistant placeholder, and register the
    generation, in one transaction. The concurrency limit is re-checked inside it, atomically."""
    now = utcnow()
    with db as tx:
        if db.is_postgres:  # serialise the count-then-insert per owner (SQLite's write lock already does)
            tx.query("SELECT pg_advisory_xact_lock(hashtext(:o))", o=owner)
        if reply_to is None:
            user = {
                "session_id": session["id"], "role": "user", "content": content or "",
                "client_message_id": client_message_id, "images": json.dumps(images), "stream_cursor": 0,
                "created_at": now, "updated_at": now,
            }
            user["id"] = insert(tx, "messages", user)
            variant = 1  # a new question has no answers yet
        else:
            user = reply_to
            variant = fetch_one(
                tx, "SELECT COALESCE(MAX(variant_index), 0) + 1 AS v FROM messages WHERE parent_message_id = :p",
                p=user["id"],
            )["v"]
        assistant = {
            "session_id": session["id"], "role": "assistant", "content": "", "parent_message_id": user["id"],
            "variant_index": variant, "client_message_id": assistant_client_id, "stream_status": "streaming",
            "stream_cursor": 0, "images": "[]", "model": model_label, "created_at": now, "updated_at": now,
        }
        assistant["id"] = insert(tx, "messages", assistant)
        registered = execute(
            tx,
            # Typed parameters: PostgreSQL cannot infer a type for a bare parameter in a SELECT list.
            "INSERT INTO generations (message_id, session_id, owner, worker, state, cancel_requested, last_seq, "
            "created_at) SELECT CAST(:mid AS INTEGER), CAST(:sid AS INTEGER), CAST(:owner AS VARCHAR(200)), "
            "CAST(:worker AS VARCHAR(200)), 'running', CAST(:no AS BOOLEAN), 0, CAST(:now AS TIMESTAMP) "
            "WHERE (SELECT COUNT(*) FROM generations WHERE owner = CAST(:owner AS VARCHAR(200)) "
            "AND state = 'running') < CAST(:limit AS INTEGER)",
            mid=assistant["id"], sid=session["id"], owner=owner, worker=worker, no=False, now=now,
            limit=max_concurrent,
        )
        if registered != 1:
            raise ConcurrencyLimitReached(
                f"Too many answers are being generated at once (limit {max_concurrent}); wait for one to finish",
                data={"limit": max_concurrent},
            )
        pruned = _prune_variants(tx, user["id"], variants_kept) if variant > variants_kept else 0
        added = (2 if reply_to is None else 1) - pruned
        _touch_session(tx, session["id"], content if reply_to is None else None, added, now)
    return Turn(user, assistant)


def _prune_variants(tx: dataset.Database, parent_id: int, keep: int) -> int:
    """Delete the oldest finished answers to a user message beyond the history limit; returns how many."""
    variants = fetch_all(
        tx, "SELECT id, stream_status FROM messages WHERE parent_message_id = :p ORDER BY variant_index DESC",
        p=parent_id,
    )
    deleted = 0
    for row in variants[keep:]:
        if row["stream_status"] != "streaming":
            deleted += execute(tx, "DELETE FROM messages WHERE id = :id", id=row["id"])
    return deleted


def _touch_session(tx: dataset.Database, session_id: int, preview: str | None, added: int, now) -> None:
    execute(
        tx,
        "UPDATE chat_sessions SET updated_at = :now, last_message_at = :now, message_count = message_count + :n, "
        "last_message_preview = COALESCE(:p, last_message_preview) WHERE id = :s",
        now=now, p=preview[:PREVIEW_CHARS] if preview is not None else None, n=added, s=session_id,
    )


def _write_events(tx: dataset.Database, message_id: int, events: list[Event]) -> None:
    if events:
        insert(tx, "generation_events", {
            "message_id": message_id, "first_seq": events[0][0], "last_seq": events[-1][0],
            "events": json.dumps(events, ensure_ascii=False, separators=(",", ":")), "created_at": utcnow(),
        })


def checkpoint(db: dataset.Database, message_id: int, content: str, reasoning: str, events: list[Event]) -> bool:
    """Save the partial answer and the (non-empty) events since the last checkpoint.
    False if the message is gone (its session was deleted)."""
    with db as tx:
        changed = execute(
            tx,
            "UPDATE messages SET content = :c, reasoning = :r, stream_cursor = :cur, updated_at = :now WHERE id = :id",
            c=content, r=reasoning or None, cur=events[-1][0], now=utcnow(), id=message_id,
        )
        if changed:
            _write_events(tx, message_id, events)
    return bool(changed)


def cancel_requested(db: dataset.Database, message_id: int) -> bool:
    """Whether a cancel for this generation was recorded (by any worker)."""
    row = fetch_one(db, "SELECT cancel_requested FROM generations WHERE message_id = :m", m=message_id)
    return bool(row and row["cancel_requested"])


def finalize(
    db: dataset.Database,
    message_id: int,
    session_id: int,
    *,
    status: str,
    content: str,
    reasoning: str,
    reasoning_seconds: float | None,
    error: str | None,
    metrics: dict | None,
    events: list[Event],
    usage: dict[str, Any] | None,
) -> bool:
    """Write the final answer, status, metrics, usage and last events together. False if the message
    was deleted meanwhile (its session was deleted: nothing is left to write)."""
    now = utcnow()
    with db as tx:
        saved = execute(
            tx,
            "UPDATE messages SET content = :c, reasoning = :r, reasoning_duration_seconds = :rs, stream_status = :st,"
            " stream_error = :e, metrics = :mx, stream_cursor = :cur, updated_at = :now WHERE id = :id",
            c=content, r=reasoning or None, rs=reasoning_seconds, st=status, e=error,
            mx=json.dumps(metrics) if metrics else None, cur=events[-1][0] if events else 0, now=now, id=message_id,
        )
        if not saved:  # the message went with its session
            execute(tx, "DELETE FROM generations WHERE message_id = :m", m=message_id)
            return False
        _write_events(tx, message_id, events)
        execute(
            tx, "UPDATE generations SET state = :st, finished_at = :now WHERE message_id = :m",
            st=status, now=now, m=message_id,
        )
        if usage is not None:
            insert(tx, "usage_records", usage | {"message_id": message_id, "session_id": session_id,
                                                  "day": now.strftime("%Y-%m-%d"), "created_at": now})
        execute(tx, "UPDATE chat_sessions SET updated_at = :now WHERE id = :s", now=now, s=session_id)
    return True


def request_cancel(db: dataset.Database, message_ids: list[int]) -> list[dict]:
    """Record a cancel for these generations (still running ones); returns their rows (with worker)."""
    if not message_ids:
        return []
    ids = ",".join(str(int(i)) for i in message_ids)
    with db as tx:
        execute(
            tx, f"UPDATE generations SET cancel_requested = :yes WHERE message_id IN ({ids}) AND state = 'running'",
            yes=True,
        )
        return fetch_all(tx, f"SELECT * FROM generations WHERE message_id IN ({ids}) AND state = 'running'")


def stored_events(db: dataset.Database, message_id: int) -> bool:
    """Whether the event log of this message is still kept in the database."""
    return fetch_one(db, "SELECT 1 AS x FROM generation_events WHERE message_id = :m LIMIT 1", m=message_id) is not None
