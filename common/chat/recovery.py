"""Crash recovery: answers left `streaming` by a process that died become `interrupted`, keeping
their partial text (checkpointed at least every 500 ms), and followers get a closing error event.

Run when a gunicorn master starts, when it reaps a dead worker, when a worker app starts, and by the
jobs process (for other machines' workers whose heartbeat went stale).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import as_datetime, utcnow

log = logging.getLogger("parley.chat")
STALE_AFTER_SECONDS = 30
INTERRUPTED_TEXT = "The server stopped before the answer finished"


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine is running (a zombie left unreaped by PID 1 counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _dead(worker: str, heartbeat_at, created_at, now, keep: set[str]) -> bool:
    if worker in keep:
        return False
    host, _, rest = worker.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host == socket.gethostname() and pid_text.isdigit() and not pid_alive(int(pid_text)):
        return True
    last_sign = as_datetime(heartbeat_at) or as_datetime(created_at)
    return last_sign < now - timedelta(seconds=STALE_AFTER_SECONDS)


def recover_orphans(engine: Engine, keep_workers: set[str] | None = None) -> int:
    """Mark the orphaned generations interrupted; returns how many. `keep_workers` are known alive."""
    keep = keep_workers or set()
    now = utcnow()
    with engine.begin() as conn:
        running = conn.execute(sa.text(
            "SELECT g.message_id, g.worker, g.created_at, w.heartbeat_at, (SELECT MAX(e.last_seq) FROM "
            "generation_events e WHERE e.message_id = g.message_id) AS last_seq FROM generations g "
            "LEFT JOIN workers w ON w.id = g.worker WHERE g.state = 'running'"
        )).mappings().all()
        orphans = [r for r in running if _dead(r["worker"], r["heartbeat_at"], r["created_at"], now, keep)]
        for row in orphans:
            _interrupt(conn, row["message_id"], row["last_seq"] or 0, now)
        strays = conn.execute(sa.text(
            "SELECT id FROM messages WHERE stream_status = 'streaming' AND id NOT IN "
            "(SELECT message_id FROM generations WHERE state = 'running')"
        )).scalars().all()
        for message_id in strays:
            _interrupt(conn, message_id, None, now)
    total = len(orphans) + len(strays)
    if total:
        log.warning("marked %d orphaned generation(s) interrupted", total)
    return total


def _interrupt(conn, message_id: int, last_seq: int | None, now) -> None:
    conn.execute(sa.text(
        "UPDATE messages SET stream_status = 'interrupted', stream_error = :e, updated_at = :now "
        "WHERE id = :m AND stream_status = 'streaming'"
    ), {"e": INTERRUPTED_TEXT, "now": now, "m": message_id})
    conn.execute(sa.text(
        "UPDATE generations SET state = 'interrupted', finished_at = :now WHERE message_id = :m"
    ), {"now": now, "m": message_id})
    if last_seq is not None:
        seq = last_seq + 1
        event = {"type": "error", "error": INTERRUPTED_TEXT, "code": "interrupted"}
        conn.execute(sa.text(
            "INSERT INTO generation_events (message_id, first_seq, last_seq, events, created_at) "
            "VALUES (:m, :s, :s, :ev, :now)"
        ), {"m": message_id, "s": seq, "ev": json.dumps([[seq, event]]), "now": now})
