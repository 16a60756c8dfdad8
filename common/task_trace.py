"""Task trace: the lifecycle of each chat generation as a short list of timestamped events.

When the setting `task_trace_enabled` is on, `service.start` gives each generation a `TraceRecorder`
instead of the log-only trace. The runner calls it as `trace(kind, **detail)` from the generation's
greenlet. Events are buffered in memory and written in short transactions of their own: at the first
chunk, on the rare retry / fallback path, and at the end (`final_persist`). The trace row itself is
inserted by the first write, so a normal answer costs two small transactions.

Bounded: at most MAX_EVENTS events per trace (the final one always fits), details of at most
MAX_DETAIL_KEYS keys, strings cut to MAX_STRING chars, anything that looks like an API key or a
bearer token masked. Message text never goes beyond a PREVIEW_CHARS preview.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import dataset
from flask import Flask

from common.auth.actors import Actor
from common.db import as_datetime, execute, fetch_all, fetch_one, insert, iso, release, utcnow

log = logging.getLogger("parley.task_trace")

MAX_EVENTS = 200
MAX_DETAIL_KEYS = 20
MAX_STRING = 300
MAX_DETAIL_CHARS = 2000
PREVIEW_CHARS = 80
FLUSH_KINDS = {"first_chunk", "retry", "fallback_request", "fallback_error", "final_persist"}
STATUSES = ("running", "done", "error", "cancelled", "interrupted")
STALE_RUNNING = timedelta(hours=1)  # a trace still "running" after this long is left by a dead process
DELETE_BATCH = 500
SECRET_PATTERNS = [
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{6,}"), r"\1-***"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{6,}"), "Bearer ***"),
    (re.compile(r"(?i)\b(api[_-]?key|key|token|secret|password)=([^&\s\"']{4,})"), r"\1=***"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza***"),
]


def actor_label(actor: Actor) -> str:
    """The actor as traces record it: `user:<id>`, or `anon:` and a hash prefix (the anon_key cookie is a
    credential, so admins reading traces never see it)."""
    if actor.is_user:
        return actor.identifier
    return "anon:" + hashlib.sha256((actor.anon_key or "").encode()).hexdigest()[:12]


def redact(text: str) -> str:
    """`text` with anything that looks like a key or token masked, cut to MAX_STRING characters."""
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= MAX_STRING else text[: MAX_STRING - 1] + "…"


def clean_detail(data: dict[str, Any]) -> dict[str, Any]:
    """A small, JSON-safe, secret-free copy of an event's detail."""
    out: dict[str, Any] = {}
    for key, value in list(data.items())[:MAX_DETAIL_KEYS]:
        if value is None or isinstance(value, bool | int | float):
            out[str(key)[:40]] = value
        else:
            out[str(key)[:40]] = redact(str(value))
    if len(json.dumps(out, ensure_ascii=False)) > MAX_DETAIL_CHARS:
        out = {"truncated": True, "keys": redact(", ".join(out))}
    return out


class TraceRecorder:
    """Records one generation's events; called as `recorder(kind, **detail)`. Never raises."""

    def __init__(self, app: Flask, *, message_id: int, session_id: int, actor: str, model: str | None,
                 provider: str | None, request_detail: dict[str, Any]) -> None:
        self.app = app
        self.message_id = message_id
        self.session_id = session_id
        self.actor = actor
        self.model = model
        self.provider = provider
        self.started_at = utcnow()
        self.trace_id: int | None = None
        self.status = "running"
        self.finished_at: datetime | None = None
        self.buffer: list[tuple[int, str, datetime, str]] = []
        self.count = 0
        self.dropped = 0
        self.disabled = False
        self("request_received", **request_detail)

    def __call__(self, kind: str, **data: Any) -> None:
        if self.disabled:
            return
        if kind == "final_persist":
            self.status = data.get("status") if data.get("status") in STATUSES else "error"
            self.finished_at = utcnow()
            if self.dropped:
                data = data | {"dropped_events": self.dropped}
        elif self.count >= MAX_EVENTS - 1:  # the last place is kept for final_persist
            self.dropped += 1
            return
        self.count += 1
        detail = json.dumps(clean_detail(data), ensure_ascii=False, separators=(",", ":"))
        self.buffer.append((self.count, kind[:40], utcnow(), detail))
        if kind in FLUSH_KINDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered events (and create or update the trace row) in one short transaction."""
        if self.disabled or not self.buffer:
            return
        db = self.app.extensions["parley.db"]
        try:
            with db as tx:
                self._write(tx)
            self.buffer = []
        except Exception:  # tracing must never break the answer it watches
            log.warning("task trace of message %s could not be written", self.message_id, exc_info=True)
            release(db)
            self.disabled = True

    def _write(self, tx: dataset.Database) -> None:
        columns = {"status": self.status, "finished_at": self.finished_at, "event_count": self.count}
        if self.trace_id is None:
            exists = fetch_one(tx, "SELECT id FROM messages WHERE id = :m", m=self.message_id)
            self.trace_id = insert(tx, "task_traces", columns | {
                "message_id": self.message_id if exists else None, "session_id": self.session_id,
                "actor": self.actor[:200], "model": (self.model or "")[:400] or None,
                "provider": (self.provider or "")[:40] or None, "started_at": self.started_at,
            })
        else:
            updated = execute(tx, "UPDATE task_traces SET status = :status, finished_at = :finished_at, "
                              "event_count = :event_count WHERE id = :id", id=self.trace_id, **columns)
            if updated != 1:  # an admin deleted it meanwhile: stop recording
                self.disabled = True
                return
        for seq, kind, at, detail in self.buffer:
            execute(tx, "INSERT INTO task_trace_events (trace_id, seq, kind, at, detail) "
                    "VALUES (:t, :seq, :kind, :at, :detail)", t=self.trace_id, seq=seq, kind=kind, at=at,
                    detail=detail)


def start_recorder(app: Flask, *, message_id: int, session_id: int, actor: Actor, model: str | None,
                   provider: str | None, content: str | None, reply_to: int | None) -> TraceRecorder:
    """A recorder for a new generation, with its `request_received` event (nothing is written yet)."""
    detail: dict[str, Any] = {"sessionId": session_id, "messageId": message_id, "model": model,
                              "provider": provider, "actor": actor_label(actor)}
    if reply_to is not None:
        detail["replyToMessageId"] = reply_to
    if content:
        detail["preview"] = content[:PREVIEW_CHARS]
        detail["chars"] = len(content)
    return TraceRecorder(app, message_id=message_id, session_id=session_id, actor=actor_label(actor),
                         model=model, provider=provider, request_detail=detail)


def for_generation(app: Flask, settings: dict, actor: Actor, admission: Any, message_id: int,
                   otherwise: Callable[[int], Callable[..., None]]) -> Callable[..., None]:
    """The trace `service.start` gives a generation: a recorder (with its `request_received` event) when
    `task_trace_enabled`, else `otherwise(message_id)` (the log-only trace)."""
    if not settings.get("task_trace_enabled"):
        return otherwise(message_id)
    reply_to = admission.reply_to["id"] if admission.reply_to is not None else None
    return start_recorder(app, message_id=message_id, session_id=admission.session["id"], actor=actor,
                          model=admission.model.model_id, provider=admission.model.provider,
                          content=admission.content, reply_to=reply_to)


# --------------------------------------------------------------------------------------------------
# Reading and pruning (the admin API and the prune job)


def trace_shape(row: dict) -> dict:
    """A trace for the admin API."""
    started, finished = row["started_at"], row.get("finished_at")
    duration = None
    if started is not None and finished is not None:
        duration = round((as_datetime(finished) - as_datetime(started)).total_seconds() * 1000)
    return {
        "id": row["id"], "messageId": row.get("message_id"), "sessionId": row.get("session_id"),
        "actor": row["actor"], "model": row.get("model"), "provider": row.get("provider"),
        "status": row["status"], "startedAt": iso(started), "finishedAt": iso(finished), "durationMs": duration,
        "eventCount": row.get("event_count") or 0,
    }


def event_shape(row: dict) -> dict:
    """One event for the admin API."""
    try:
        detail = json.loads(row.get("detail") or "{}")
    except ValueError:
        detail = {}
    return {"seq": row["seq"], "kind": row["kind"], "at": iso(row["at"]), "detail": detail}


def get_trace(db: dataset.Database, trace_id: int) -> dict | None:
    """The trace row, or None."""
    return fetch_one(db, "SELECT * FROM task_traces WHERE id = :id", id=trace_id)


def trace_events(db: dataset.Database, trace_id: int) -> list[dict]:
    """The trace's events, in order."""
    return fetch_all(db, "SELECT * FROM task_trace_events WHERE trace_id = :id ORDER BY seq", id=trace_id)


def export_text(trace: dict, events: list[dict]) -> str:
    """The trace as plain text: a header, then one readable line per event."""
    shaped = trace_shape(trace)
    lines = [
        f"Task trace #{shaped['id']}",
        f"status: {shaped['status']}   model: {shaped['model'] or '-'} ({shaped['provider'] or '-'})",
        f"session: {shaped['sessionId']}   message: {shaped['messageId']}   actor: {shaped['actor']}",
        f"started: {shaped['startedAt']}   finished: {shaped['finishedAt'] or '-'}   "
        f"duration: {shaped['durationMs'] if shaped['durationMs'] is not None else '-'} ms   "
        f"events: {shaped['eventCount']}",
        "",
    ]
    start = as_datetime(trace["started_at"])
    for row in events:
        event = event_shape(row)
        offset = round((as_datetime(row["at"]) - start).total_seconds() * 1000) if start else 0
        pairs = " ".join(f"{key}={_value_text(value)}" for key, value in event["detail"].items())
        lines.append(f"{event['at']}  +{offset}ms  #{event['seq']:<3} {event['kind']:<17} {pairs}".rstrip())
    return "\n".join(lines) + "\n"


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if not value or any(c.isspace() for c in value) else value
    return json.dumps(value)


def delete_older_than(db: dataset.Database, days: int, *, now: datetime | None = None) -> int:
    """Delete traces started more than `days` days ago (a trace still running is kept unless it is stale),
    in short batches; returns how many were deleted."""
    now = now or utcnow()
    cutoff, stale = now - timedelta(days=days), now - STALE_RUNNING
    deleted = 0
    while True:
        rows = fetch_all(db, "SELECT id FROM task_traces WHERE started_at < :cutoff AND "
                         "(status <> 'running' OR started_at < :stale) ORDER BY id LIMIT :n",
                         cutoff=cutoff, stale=stale, n=DELETE_BATCH)
        if not rows:
            return deleted
        ids = [row["id"] for row in rows]
        with db as tx:
            for start in range(0, len(ids), 100):
                chunk = {f"i{n}": value for n, value in enumerate(ids[start:start + 100])}
                execute(tx, f"DELETE FROM task_traces WHERE id IN ({', '.join(':' + k for k in chunk)})", **chunk)
        deleted += len(ids)


def mark_interrupted(db: dataset.Database, *, now: datetime | None = None) -> int:
    """Traces left `running` by a process that died (their answer is no longer streaming, or is gone)
    become `interrupted`; returns how many."""
    now = now or utcnow()
    with db as tx:
        return execute(
            tx,
            "UPDATE task_traces SET status = 'interrupted', finished_at = :now WHERE status = 'running' "
            "AND started_at < :grace AND (message_id IS NULL OR NOT EXISTS (SELECT 1 FROM messages m "
            "WHERE m.id = task_traces.message_id AND m.stream_status = 'streaming'))",
            now=now, grace=now - timedelta(minutes=10),
        )
